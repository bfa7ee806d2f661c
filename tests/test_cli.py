"""The command line's conventions: a tqdm progress bar on a
terminal only, help for every option, ``stats --format``, ``-v``/``-q``
through :mod:`logging`, ``--pad-value`` for float columns; and the
progress hooks and log records of the library under them.

Most runs call :func:`bfpack.cli.main` in this process (stderr a
``StringIO`` that may claim to be a terminal); a few run ``python -m
bfpack`` with stderr on a pseudo-terminal or a pipe.
"""

import argparse
import csv
import io
import json
import logging
import os
import pty
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.cli import main
from bfpack.cli._app import build_parser as _parser
from bfpack.cli._args import short as _short
from bfpack.cli._console import Console
from bfpack.parquet import pack_parquet
from bfpack.parquet._source import ParquetSource

from tokens import check_packed, token_table

PARTS = [[5, 3, 0, 12], [4, 9, 30], [7]]
LENGTHS = np.concatenate([np.array(p) for p in PARTS])
SEQ_LEN = 8


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """Three shards of token tables, 8 documents in all."""
    folder = tmp_path_factory.mktemp("cli") / "src"
    folder.mkdir()
    first = 0
    for k, lengths in enumerate(PARTS):
        pq.write_table(token_table(lengths, first_doc=first), folder / f"part-{k}.parquet")
        first += len(lengths)
    return folder


class Terminal(io.StringIO):
    """stderr that says it is a terminal (of no known width)."""

    def isatty(self):
        return True


def run(argv, monkeypatch, terminal=False):
    """``main(argv)`` with stdout and stderr captured: ``(status, out, err)``."""
    out, err = io.StringIO(), Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def screen(text):
    """What a terminal shows of text with carriage returns: the last state of each line."""
    return [line.split("\r")[-1] for line in text.split("\n")]


# --------------------------------------------------------------------------
# Help
# --------------------------------------------------------------------------


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_every_option_has_help_with_its_default():
    parser = _parser()
    missing = []
    for name, sub in [("bfpack", parser), *_subparsers(parser).items()]:
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            text = action.help or ""
            if not text.strip() or text == argparse.SUPPRESS:
                missing.append(f"{label}: no help")
            elif action.option_strings and not isinstance(action, argparse._VersionAction):
                # An option says what happens without it, or that it is required.
                if action.required:
                    if "required" not in text:
                        missing.append(f"{label}: required, and its help does not say so")
                elif "default" not in text:
                    missing.append(f"{label}: its help gives no default")
    assert not missing, "\n".join(missing)
    assert set(_subparsers(parser)) == {"pack", "stats", "verify", "balance", "demo"}


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["pack", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: bfd)",
        "(default: split)",
        "(default: 16,777,216)",
        "[COLUMN=]VALUE",
        "-v, --verbose",
        "-q, --quiet",
    ):
        assert shown in text, shown
    with pytest.raises(SystemExit):
        _parser().parse_args(["stats", "--help"])
    assert "(default: table)" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------
# stats --format
# --------------------------------------------------------------------------


def test_stats_json_holds_every_figure_of_compare(src, monkeypatch):
    status, out, err = run(["stats", src, "--seq-len", 8, 16, "--format", "json"], monkeypatch)
    assert status == 0 and err == ""
    data = json.loads(out)
    assert data["source"] == str(src)
    assert data["documents"] == len(LENGTHS) and data["tokens"] == LENGTHS.sum()
    assert data["nonempty_documents"] == np.count_nonzero(LENGTHS)
    records = data["results"]
    assert [(r["seq_len"], r["method"]) for r in records] == [
        (L, m) for L in (8, 16) for m in ("concat", "bfd", "ffd")
    ]
    for L in (8, 16):
        expected = bfpack.compare(LENGTHS, L).to_pylist()
        got = [r for r in records if r["seq_len"] == L]
        for e, g in zip(expected, got):
            for key, value in e.items():
                if key != "seconds":  # timed anew
                    assert g[key] == value, (L, key)
            assert g["fewest_possible"] == (
                e["documents_truncated"] == e["min_documents_truncated"]
                and e["truncation_cuts"] == e["min_truncation_cuts"]
            )
    # concat cuts documents it need not cut; best fit cuts only the long ones.
    assert [r["fewest_possible"] for r in records] == [False, True, True] * 2
    assert data["fewest_everywhere"] == ["bfd", "ffd"]


def test_stats_csv_has_a_header_and_one_row_per_method(src, monkeypatch):
    status, out, _ = run(["stats", src, "--seq-len", 8, "--format", "csv"], monkeypatch)
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0].startswith("seq_len,method,sequences,")
    assert [r["method"] for r in rows] == ["concat", "bfd", "ffd"]
    for row, e in zip(rows, bfpack.compare(LENGTHS, 8).to_pylist()):
        assert int(row["seq_len"]) == 8
        assert int(row["sequences"]) == e["sequences"]
        assert float(row["fill"]) == e["fill"]
        assert int(row["min_truncation_cuts"]) == e["min_truncation_cuts"]
    assert [r["fewest_possible"] for r in rows] == ["false", "true", "true"]


def test_stats_table_is_the_default(src, monkeypatch):
    _, default, _ = run(["stats", src, "--seq-len", 8], monkeypatch)
    _, table, _ = run(["stats", src, "--seq-len", 8, "--format", "table"], monkeypatch)
    assert default == table
    assert default.startswith(f"src: {len(LENGTHS)} documents, {LENGTHS.sum()} tokens\n")
    assert "seq_len  method  sequences" in default


def test_stats_format_errors(src, monkeypatch):
    status, _, err = run(["stats", src, "--seq-len", 8, "--format", "xml"], monkeypatch)
    assert status == 2 and len(err.splitlines()) == 1
    assert "argument --format: invalid choice: 'xml'" in err
    from bfpack.cli._comparison import write_comparison

    with pytest.raises(ValueError, match="format must be one of table, json, csv"):
        write_comparison(LENGTHS, [8], "xml", source="x")


# --------------------------------------------------------------------------
# Progress: library hooks
# --------------------------------------------------------------------------


def test_pack_parquet_progress_knows_the_total(src, tmp_path):
    seen = []
    pack_parquet(src, tmp_path / "o", SEQ_LEN, window_tokens=10, progress=seen.append)
    assert len(seen) > 2
    assert all(p["total_documents"] == len(LENGTHS) for p in seen)
    assert [p["windows"] for p in seen] == list(range(1, len(seen) + 1))
    assert seen[-1]["documents"] == len(LENGTHS) and seen[-1]["tokens"] == LENGTHS.sum()


def test_lengths_progress(src):
    source = ParquetSource.open(src)
    seen = []
    lengths = source.lengths(source.spec(), progress=seen.append)
    np.testing.assert_array_equal(lengths, LENGTHS)
    assert seen[0] == {"documents": 0, "tokens": 0, "total_documents": len(LENGTHS)}
    assert seen[-1] == {
        "documents": len(LENGTHS),
        "tokens": int(LENGTHS.sum()),
        "total_documents": len(LENGTHS),
    }
    assert len(seen) == 1 + len(PARTS)  # one batch per (small) file
    done = [p["documents"] for p in seen]
    assert done == sorted(done)


def test_verify_progress_in_two_stages(src, tmp_path):
    m = pack_parquet(src, tmp_path / "o", SEQ_LEN, window_tokens=10)
    seen = []
    assert bfpack.verify(tmp_path / "o", source=src, progress=seen.append).ok
    stages = [p["stage"] for p in seen]
    first_source = stages.index("source")
    assert set(stages[:first_source]) == {"output"} and set(stages[first_source:]) == {"source"}
    rows = m["stats"]["sequences"]
    assert seen[0] == {"stage": "output", "rows": 0, "total_rows": rows, "tokens": 0}
    assert seen[first_source - 1] == {
        "stage": "output",
        "rows": rows,
        "total_rows": rows,
        "tokens": int(LENGTHS.sum()),
    }
    assert seen[first_source]["documents"] == 0
    assert seen[-1] == {
        "stage": "source",
        "documents": len(LENGTHS),
        "total_documents": len(LENGTHS),
        "tokens": int(LENGTHS.sum()),
    }
    seen.clear()
    assert bfpack.verify(tmp_path / "o", progress=seen.append).ok
    assert {p["stage"] for p in seen} == {"output"}
    with pytest.raises(TypeError, match="progress"):
        bfpack.verify(tmp_path / "o", progress=3)


# --------------------------------------------------------------------------
# Progress: the bar
# --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pack", "stats", "verify"])
def test_bar_on_a_terminal(src, tmp_path, monkeypatch, command):
    dst = tmp_path / "o"
    if command == "verify":
        pack_parquet(src, dst, SEQ_LEN, window_tokens=10)
    argv = {
        "pack": ["pack", src, dst, "--seq-len", SEQ_LEN, "--window-tokens", 10],
        "stats": ["stats", src, "--seq-len", SEQ_LEN],
        "verify": ["verify", dst, "--source", src],
    }[command]
    status, out, err = run(argv, monkeypatch, terminal=True)
    assert status == 0, err
    shown = [line for line in screen(err) if line]
    labels = {"pack": ["pack"], "stats": ["stats"], "verify": ["verify output", "verify source"]}
    assert [line.split(":")[0] for line in shown] == labels[command]
    for line in shown:
        # Complete, with the total from the footers or the manifest, the rate and the ETA.
        assert "100%|" in line and "/s" in line and "<00:00" in line, line
        assert len(line) <= 80  # a terminal of no known width gets 80 columns
    assert "verify" not in command or "rows/s" in shown[0] and "docs/s" in shown[1]
    assert out  # stdout holds the summary, the table, the report: never the bar
    assert "%|" not in out


@pytest.mark.parametrize("command", ["pack", "stats", "verify"])
def test_no_bar_in_a_pipe_or_when_quiet(src, tmp_path, monkeypatch, command):
    dst = tmp_path / "o"
    pack_parquet(src, tmp_path / "packed", SEQ_LEN)
    argv = {
        "pack": ["pack", src, dst, "--seq-len", SEQ_LEN],
        "stats": ["stats", src, "--seq-len", SEQ_LEN],
        "verify": ["verify", tmp_path / "packed"],
    }[command]
    status, _, err = run(argv, monkeypatch)  # stderr not a terminal
    assert status == 0 and err == ""
    again = ["--overwrite"] if command == "pack" else []
    status, out, err = run([*argv, *again, "--quiet"], monkeypatch, terminal=True)
    assert status == 0 and err == ""
    assert out == ("" if command != "stats" else run(argv, monkeypatch)[1])


def test_the_bar_of_pack_shows_before_the_first_window(monkeypatch):
    console = Console(Terminal())
    with console.progress(lambda t: ("x", " docs", t["n"], 10), start=("x", " docs", "reading")):
        assert screen(console.stream.getvalue())[-1] == "x: reading"
    assert screen(console.stream.getvalue())[-2] == "x: reading"  # closed: left on screen


def test_bar_draws_stages_counts_and_lines_above_it():
    console = Console(Terminal(), verbosity=1)
    with console.progress(lambda t: (t["stage"], " rows", t["n"], t["total"])) as show:
        show({"stage": "one", "n": 0, "total": 0})  # an empty input: a count, no percentage
        show({"stage": "one", "n": 5, "total": 10})
        console.warning("careful")
        show({"stage": "two", "n": 10, "total": 10})
    lines = [line for line in screen(console.stream.getvalue()) if line]
    assert lines[0] == "bfpack: warning: careful"  # written above the bar
    assert lines[1].startswith("one:  50%|")
    assert lines[2].startswith("two: 100%|")


def test_no_bars_without_a_terminal():
    console = Console(io.StringIO())
    with console.progress(lambda t: 1 / 0) as show:  # the view is never called
        show({})
    assert console.stream.getvalue() == "" and not console.bars
    assert not Console(Terminal(), verbosity=-1).bars
    assert Console(io.StringIO(), bars=True).bars


def test_short_counts():
    assert [_short(n) for n in (0, 999, 1000, 12_345, 412_000_000, 3 * 10**9)] == [
        "0",
        "999",
        "1k",
        "12.3k",
        "412M",
        "3G",
    ]


def _on_a_pty(argv, columns=80):
    """Run ``python -m bfpack`` with stderr on a pseudo-terminal of ``columns``:
    ``(status, stdout, what the terminal received)``."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    p = subprocess.Popen(
        [sys.executable, "-m", "bfpack", *map(str, argv)], stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    received = b""
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        received += data
    os.close(master)
    out = p.stdout.read().decode()
    p.stdout.close()
    return p.wait(), out, received.decode().replace("\r\n", "\n")


def test_a_real_terminal(src):
    status, out, term = _on_a_pty(["stats", src, "--seq-len", SEQ_LEN], columns=60)
    assert status == 0, term
    shown = [line for line in screen(term) if line]
    assert len(shown) == 1 and shown[0].startswith("stats: 100%|"), term
    assert len(shown[0]) <= 60  # fits the terminal
    assert out.startswith("src: 8 documents")


def test_a_pipe_gets_no_bar_and_tqdm_is_not_imported(src):
    code = (
        "import sys; from bfpack.cli import main\n"
        f"status = main(['stats', {str(src)!r}, '--seq-len', '8', '--format', 'json'])\n"
        "print('tqdm' in sys.modules, status, file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stderr == "False 0\n"
    json.loads(r.stdout)


def test_a_reader_that_leaves_ends_the_run_quietly(src):
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write to stdout fails (EPIPE)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "bfpack", "stats", str(src), "--seq-len", "8"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write)
    assert r.returncode == 128 + signal.SIGPIPE and r.stderr == ""


# --------------------------------------------------------------------------
# Logging: -v, -vv, --quiet
# --------------------------------------------------------------------------


def test_verbose_logs_what_is_read_and_written(src, tmp_path, monkeypatch):
    argv = ["pack", src, tmp_path / "o", "--seq-len", SEQ_LEN, "--window-tokens", 10]
    status, out, err = run(argv, monkeypatch)
    assert status == 0 and err == ""  # by default: no log lines
    status, _, err = run(["-v", *argv, "--overwrite"], monkeypatch)
    lines = err.splitlines()
    assert status == 0 and lines and all(line.startswith("bfpack: ") for line in lines)
    assert f"bfpack: {src}: 3 Parquet file(s), 8 rows" in lines
    assert any(
        line.startswith("bfpack: packing 8 documents with bfd at seq_len 8") for line in lines
    )
    assert f"bfpack: wrote {len(os.listdir(tmp_path / 'o')) - 1} shard(s)" in err
    assert "debug:" not in err
    # -vv, before or after the command: every file, window and shard, timed.
    for vv in (["-vv", *argv, "--overwrite"], [*argv, "--overwrite", "-v", "-v"]):
        status, _, err = run(vv, monkeypatch)
        debug = [line for line in err.splitlines() if "debug:" in line]
        assert status == 0
        assert any("reading" in line and "part-2.parquet" in line for line in debug)
        assert any("window 1:" in line for line in debug)
        assert any("wrote part-00000.parquet" in line for line in debug)
        assert all(line.startswith("bfpack: [") and "s] " in line for line in err.splitlines())


def test_verbose_stats_and_verify(src, tmp_path, monkeypatch):
    pack_parquet(src, tmp_path / "o", SEQ_LEN)
    _, out, err = run(["stats", "-v", src, "--seq-len", 8, "--format", "json"], monkeypatch)
    assert err == f"bfpack: {src}: 3 Parquet file(s), 8 rows\n"
    json.loads(out)  # the log goes to stderr only
    _, _, err = run(["verify", "-v", tmp_path / "o", "--source", src], monkeypatch)
    assert "checking 1 shard(s)" in err and "reading 8 documents to compare" in err


def test_quiet(src, tmp_path, monkeypatch):
    argv = ["pack", src, tmp_path / "o", "--seq-len", SEQ_LEN]
    status, out, err = run(["-q", *argv], monkeypatch, terminal=True)
    assert (status, out, err) == (0, "", "")
    # verify -q: nothing when the output checks out, the problems when it does not.
    assert run(["verify", "-q", tmp_path / "o"], monkeypatch) == (0, "", "")
    shard = tmp_path / "o" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-1] + b"!")
    status, out, err = run(["verify", "-q", tmp_path / "o"], monkeypatch)
    assert status == 1 and "MISMATCH" in out and "SHA-256" in out


def test_quiet_keeps_warnings(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    folder.mkdir()
    pq.write_table(token_table([3, 4]), folder / "a.parquet")
    pq.write_table(token_table([3, 4]), folder / "_b.parquet")
    status, _, err = run(["stats", "-q", folder, "--seq-len", 8], monkeypatch)
    assert status == 0
    assert err.count("\n") == 1 and err.startswith("bfpack: warning: ") and "_b.parquet" in err


@pytest.mark.parametrize(
    "argv",
    [["-q", "stats", "-v"], ["stats", "-q", "-v"], ["-v", "-q", "stats"]],
)
def test_quiet_and_verbose_contradict(src, monkeypatch, argv):
    status, out, err = run([*argv, src, "--seq-len", 8], monkeypatch)
    assert status == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("bfpack: error: argument ") and "not allowed with" in err


def test_main_leaves_logging_as_it_found_it(src, monkeypatch):
    logger = logging.getLogger("bfpack")
    mine = logging.NullHandler()
    logger.addHandler(mine)
    logger.setLevel(logging.CRITICAL)
    try:
        run(["-vv", "stats", src, "--seq-len", 8], monkeypatch)
        assert logger.handlers == [mine] and logger.level == logging.CRITICAL
        assert logger.propagate
        assert not logging.getLogger("bfpack.parquet._source").isEnabledFor(
            logging.DEBUG
        )  # no stale cache
    finally:
        logger.removeHandler(mine)
        logger.setLevel(logging.NOTSET)


def test_the_library_configures_no_logging(src, tmp_path):
    # Records go to whatever the program set up; with nothing set up, nothing
    # shows (the library logs at INFO and DEBUG only).
    code = (
        "import logging, bfpack, sys\n"
        f"bfpack.pack_parquet({str(src)!r}, {str(tmp_path / 'o')!r}, 8)\n"
        f"bfpack.verify({str(tmp_path / 'o')!r}, source={str(src)!r})\n"
        "print(logging.getLogger('bfpack').handlers, logging.getLogger().handlers)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "[] []\n", "")
    code = (
        "import logging, bfpack\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(levelname)s %(message)s')\n"
        f"bfpack.pack_parquet({str(src)!r}, {str(tmp_path / 'p')!r}, 8)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0
    assert (
        "bfpack.parquet._source INFO" in r.stderr
        and "bfpack.parquet._pack DEBUG window 1:" in r.stderr
    )


def test_log_lines_are_one_line_each():
    console = Console(io.StringIO(), verbosity=2)
    with console.logging():
        logging.getLogger("bfpack.x").warning("two\nlines")
        logging.getLogger("bfpack.x").error("bad")
        logging.getLogger("elsewhere").error("not ours")
    lines = console.stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("] warning: two lines") and lines[1].endswith("] error: bad")


# --------------------------------------------------------------------------
# --pad-value
# --------------------------------------------------------------------------


def float_source(folder):
    folder.mkdir()
    lengths = [5, 3, 6]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.arange(offsets[-1], dtype=np.float32) / 4
    ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.arange(offsets[-1])))
    weights = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    pq.write_table(pa.table({"input_ids": ids, "weight": weights}), folder / "a.parquet")
    return folder


def test_pad_value_float_for_a_float_column(tmp_path, monkeypatch):
    src = float_source(tmp_path / "src")
    argv = ["pack", src, tmp_path / "o", "--seq-len", 8, "--column", "weight"]
    status, _, err = run([*argv, "--pad-value", "0.5"], monkeypatch)
    assert status == 0, err
    out = pq.read_table(tmp_path / "o")
    rows = out["weight"].to_pylist()
    fills = [sum(r) for r in out["seq_lengths"].to_pylist()]
    assert all(len(r) == 8 for r in rows)
    assert all(r[f:] == [0.5] * (8 - f) for r, f in zip(rows, fills))
    # The padded output verifies (the manifest's pad value is a float).
    assert run(["verify", tmp_path / "o", "--source", src], monkeypatch)[0] == 0


def test_pad_value_per_column(tmp_path, monkeypatch):
    src = float_source(tmp_path / "src")
    argv = ["pack", src, tmp_path / "o", "--seq-len", 8]
    status, _, err = run(
        [*argv, "--pad-value", "input_ids=-1", "--pad-value", "weight=-2.5"], monkeypatch
    )
    assert status == 0, err
    with open(tmp_path / "o" / ".bfpack.json") as f:
        assert json.load(f)["options"]["pad_value"] == {"input_ids": -1, "weight": -2.5}
    out = pq.read_table(tmp_path / "o")
    assert out["input_ids"].to_pylist()[0][-1] == -1
    assert out["weight"].to_pylist()[0][-1] == -2.5
    assert run(["verify", tmp_path / "o", "--source", src], monkeypatch)[0] == 0


@pytest.mark.parametrize(
    "pads,text",
    [
        (["0.5"], "pad_value for 'input_ids' must be an integer"),
        (["abc"], "argument --pad-value: 'abc' is not a number"),
        (["=3"], "argument --pad-value: '=3' names no column"),
        (["input_ids=0", "weight=nan"], "pad with a finite number"),
        (["1", "2"], "give one VALUE for every packed column, or COLUMN=VALUE"),
        (["1", "weight=2"], "give one VALUE for every packed column, or COLUMN=VALUE"),
        (["weight=2"], "pad_value has no value for column(s) ['input_ids']"),
        (["weight=2", "input_ids=0", "weight=3"], "column 'weight' is given twice"),
    ],
)
def test_pad_value_errors(tmp_path, monkeypatch, pads, text):
    src = float_source(tmp_path / "src")
    argv = ["pack", src, tmp_path / "o", "--seq-len", 8]
    for pad in pads:
        argv += ["--pad-value", pad]
    status, out, err = run(argv, monkeypatch)
    assert status == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("bfpack: error: ") and text in err
    assert not os.path.exists(tmp_path / "o")


def test_pad_value_float_output_is_checked(tmp_path):
    src = float_source(tmp_path / "src")
    m = pack_parquet(src, tmp_path / "o", 8, columns=["weight"], pad_value=0.25)
    assert m["options"]["pad_value"] == 0.25
    assert bfpack.verify(tmp_path / "o", source=src).ok


def test_pack_through_the_cli_packs_like_the_library(src, tmp_path, monkeypatch):
    status, out, _ = run(
        ["pack", src, tmp_path / "o", "--seq-len", SEQ_LEN, "--pad-value", "0", "-q"], monkeypatch
    )
    assert status == 0 and out == ""
    check_packed(pq.read_table(tmp_path / "o"), LENGTHS, SEQ_LEN, pad=0)


def test_streams_that_are_no_terminals():
    class Closed(io.StringIO):
        def isatty(self):
            raise ValueError("I/O operation on closed file")

    assert not Console(Closed()).bars
    assert not Console(object()).bars  # no isatty at all


def test_a_failing_stream_never_fails_the_run(monkeypatch):
    class Broken(io.StringIO):
        def write(self, text):
            raise OSError("disk full")

    reported = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda _, record: reported.append(record))
    console = Console(Broken(), verbosity=1)
    with console.logging():
        logging.getLogger("bfpack.x").info("lost")  # logging's rule: no exception from a handler
    assert [r.getMessage() for r in reported] == ["lost"]


@pytest.mark.parametrize(
    ("long_docs", "words"),
    [
        ("split", "3 documents split across sequences, no token dropped"),
        ("truncate", "3 documents truncated, 27 tokens dropped"),
    ],
)
def test_the_pack_summary_says_split_or_truncated(src, tmp_path, monkeypatch, long_docs, words):
    # 12, 9 and 30 tokens are longer than 8: split into pieces, or cut to 8 (4 + 1 + 22 dropped).
    args = ["pack", src, tmp_path / "o", "--seq-len", SEQ_LEN, "--long-docs", long_docs]
    status, out, _ = run(args, monkeypatch)
    assert status == 0
    assert f", {words}) in 1 shard(s)" in out
    assert ("truncated" in out) == (long_docs == "truncate")
