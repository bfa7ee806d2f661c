"""Killed, interrupted and concurrent runs of ``bfpack pack``.

Every run here is ``python -m bfpack pack`` in a subprocess, packing a
dataset in many small windows so that there is time to strike. After each
signal: the destination holds the complete previous output or the complete
new one (never a mix, never nothing when something was there), SIGINT and
SIGTERM end with one line and status 130 or 143, and the next run leaves
no temporary directory and writes the same bytes as an undisturbed run.
"""

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bfpack.corpus import web_like_lengths
from bfpack.parquet.manifest import MANIFEST, run_id_of

from outputs import contents

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc to time the signals"
)

ARGS = ["--seq-len", 1024, "--window-tokens", 40_000, "--position-ids", "--quiet"]
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """About 1.6M uint16 tokens in 3 files with small row groups: ~40 windows."""
    root = tmp_path_factory.mktemp("kills")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(7)
    for k in range(3):
        lengths = np.minimum(web_like_lengths(600, seed=k), 8000)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        values = rng.integers(0, 65535, int(offsets[-1]), dtype=np.uint16)
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
        pq.write_table(pa.table({"input_ids": ids}), src / f"part-{k}.parquet", row_group_size=100)
    # The kernels for uint16 tokens, compiled into numba's cache once here
    # (and the reference outputs: seed 1 is the old output, seed 2 the new).
    refs = {}
    for seed in (1, 2):
        dst = root / f"ref-{seed}"
        run = subprocess.run(cli("pack", src, dst, *ARGS, "--seed", seed), capture_output=True)
        assert run.returncode == 0, run.stderr
        refs[seed] = contents(dst)
    return src, refs


def cli(*args):
    return [sys.executable, "-m", "bfpack", *map(str, args)]


def leftovers(dst):
    return sorted(glob.glob(str(dst.parent / f".{dst.name}.*")))


def handles(pid, signum):
    """Whether process ``pid`` has installed a handler for ``signum``."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except FileNotFoundError:
        pass
    return False


def wait_for(proc, condition, timeout=60):
    """Poll until ``condition()``; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    pytest.fail("timed out waiting for the moment to strike")


def staged(dst, name=None):
    """A condition: a staged directory exists beside ``dst`` (holding ``name``)."""

    def condition():
        dirs = glob.glob(str(dst.parent / f".{dst.name}.tmp-*"))
        return bool(dirs) and (name is None or any(glob.glob(os.path.join(d, name)) for d in dirs))

    return condition


def committed(dst):
    """A condition: the new output is in place (its run id is not the one there now)."""
    before = run_id_of(dst)
    return lambda: run_id_of(dst) not in (None, before)


MOMENTS = {
    # name: what to wait for, given the process and the destination
    "import": lambda p, dst: lambda: handles(p.pid, signal.SIGTERM),
    "staged": lambda p, dst: staged(dst),
    "first shard": lambda p, dst: staged(dst, "part-00000.parquet"),
    "tenth shard": lambda p, dst: staged(dst, "part-00009.parquet"),
    "manifest": lambda p, dst: staged(dst, MANIFEST),
    # Just after the swap: the old output being removed, or the interpreter
    # ending.
    "committed": lambda p, dst: committed(dst),
}


def strike(src, dst, signum, moment, seed=2):
    """Start a run to ``dst``, send ``signum`` at ``moment``; return the finished process."""
    p = subprocess.Popen(
        cli("pack", src, dst, *ARGS, "--seed", seed, "--overwrite"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A run that does not end dumps its threads' stacks on SIGABRT.
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        if wait_for(p, MOMENTS[moment](p, dst)):
            p.send_signal(signum)
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=60)
            pytest.fail(f"the run did not end within 120 s of {signum.name}; its stacks:\n{err}")
    finally:
        p.kill()
        p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def check_after(p, dst, refs, signum, before):
    """DST after the strike: the previous output or the new one, and what the run said."""
    after = contents(dst) if dst.exists() else None
    assert after in (before, refs[2]), "the destination is neither the old nor the new output"
    if p.returncode == 0:  # the run was over before the signal came
        assert after == refs[2]
        return
    assert p.returncode == STATUS[signum], p.stderr
    if signum != signal.SIGKILL:
        # Nothing left beside DST: the old output and the staged directory
        # are removed before a held signal lands.
        assert leftovers(dst) == []
        name = signal.Signals(signum).name
        assert p.stderr.splitlines() == [p.stderr.strip()], p.stderr  # one line
        assert p.stderr.startswith(f"bfpack: interrupted by {name}"), p.stderr
        assert "Traceback" not in p.stderr
        if p.stderr == f"bfpack: interrupted by {name}\n":
            assert after == before  # still importing: it had not begun
        elif after == refs[2] and after != before:
            assert "the new output" in p.stderr and "is complete" in p.stderr
        elif before is None:
            assert "nothing was written" in p.stderr
        else:
            assert "is as it was before the run" in p.stderr


def check_next_run(src, dst, refs):
    """The next run cleans up what the killed one left and writes the same bytes."""
    run = subprocess.run(
        cli("pack", src, dst, *ARGS, "--seed", 2, "--overwrite"), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert contents(dst) == refs[2]
    assert leftovers(dst) == []


# (signal, moment, whether DST holds an earlier output)
CASES = [
    (signal.SIGTERM, "import", True),
    (signal.SIGKILL, "first shard", True),
    (signal.SIGINT, "tenth shard", False),
    (signal.SIGTERM, "tenth shard", True),
    (signal.SIGINT, "manifest", True),
    (signal.SIGINT, "committed", True),
]
SLOW_CASES = [
    (signal.SIGINT, "import", False),
    (signal.SIGKILL, "import", True),
    (signal.SIGKILL, "staged", True),
    (signal.SIGTERM, "staged", False),
    (signal.SIGINT, "staged", True),
    (signal.SIGTERM, "first shard", False),
    (signal.SIGINT, "first shard", True),
    (signal.SIGKILL, "tenth shard", False),
    (signal.SIGKILL, "manifest", True),
    (signal.SIGTERM, "manifest", True),
    (signal.SIGINT, "manifest", False),
    (signal.SIGTERM, "committed", False),
    (signal.SIGKILL, "committed", True),
]


def case_id(case):
    signum, moment, previous = case
    return f"{signum.name}-{moment}-{'over-previous' if previous else 'fresh'}"


def _kill_case(src, tmp_path, signum, moment, previous):
    src, refs = src
    dst = tmp_path / "out"
    if previous:
        r = subprocess.run(cli("pack", src, dst, *ARGS, "--seed", 1), capture_output=True)
        assert r.returncode == 0, r.stderr
    before = contents(dst) if previous else None
    assert before is None or before == refs[1]
    p = strike(src, dst, signum, moment)
    check_after(p, dst, refs, signum, before)
    check_next_run(src, dst, refs)


@pytest.mark.parametrize("case", CASES, ids=map(case_id, CASES))
def test_kill(src, tmp_path, case):
    _kill_case(src, tmp_path, *case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=map(case_id, SLOW_CASES))
def test_kill_more_moments(src, tmp_path, case):
    _kill_case(src, tmp_path, *case)


def test_interrupt_while_importing_is_one_line(src, tmp_path):
    # SIGINT in the first ~0.7 s (while numba and pyarrow load) is one line,
    # not a KeyboardInterrupt traceback: the handler is in place before they load.
    src, _ = src
    for signum in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen(
            cli("stats", src, "--seq-len", 1024),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_for(p, lambda p=p: handles(p.pid, signal.SIGTERM))
        with open(f"/proc/{p.pid}/maps") as f:
            loaded = f.read()
        p.send_signal(signum)
        _, err = p.communicate(timeout=60)
        assert "numba" not in loaded and "llvmlite" not in loaded  # still importing
        assert p.returncode == STATUS[signum]
        assert err == f"bfpack: interrupted by {signal.Signals(signum).name}\n"


def test_two_runs_at_once(src, tmp_path):
    # One run writes the destination at a time: the second is refused, it
    # does not silently replace the first's output.
    src, refs = src
    dst = tmp_path / "out"
    runs = [
        subprocess.Popen(
            cli("pack", src, dst, *ARGS, "--seed", 2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in runs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    (err,) = [e for rc, e in results if rc]
    assert err.startswith("bfpack: error:")
    # The pid is named when the lock holder has written it already.
    assert "is being written by another bfpack run" in err or "already exists" in err
    assert contents(dst) == refs[2]
    assert leftovers(dst) == []


# The program run as `python -m bfpack`, with a signal sent from inside it
# at a chosen point: when a module is first imported, or in the interpreter's
# teardown. argv[1] is the module (or "teardown"), the rest the command line.
STRIKE_FROM_INSIDE = textwrap.dedent(
    """
    import os, runpy, signal, sys, types

    where = sys.argv[1]

    class Strike:
        def find_spec(self, name, path=None, target=None):
            if name == where:
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
            return None

    class Late:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    if where == "teardown":  # deleted as the interpreter clears its modules
        late = types.ModuleType("late")
        late.obj = Late()
        sys.modules["late"] = late
    else:
        sys.meta_path.insert(0, Strike())
    sys.argv = ["bfpack", *sys.argv[2:]]
    runpy.run_module("bfpack", run_name="__main__", alter_sys=True)
    """
)


@pytest.mark.parametrize("module", ["argparse", "bfpack.cli._console", "bfpack.parquet.manifest"])
def test_interrupt_while_the_program_loads_is_one_line(src, module):
    # SIGINT in the first ~50 ms printed a
    # KeyboardInterrupt traceback: the handler came with main(), after
    # argparse, logging and the console had loaded.
    src, _ = src
    p = subprocess.run(
        [sys.executable, "-c", STRIKE_FROM_INSIDE, module, "stats", str(src), "--seq-len", "1024"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (p.returncode, p.stderr) == (130, "bfpack: interrupted by SIGINT\n")
    assert p.stdout == ""


def test_a_signal_after_the_run_never_kills_it_silently(src, tmp_path):
    # a signal 150-200 ms after the manifest was
    # staged killed the process by the signal, with no line: Python had put
    # back the default handlers for its teardown (seconds of garbage
    # collection under load). The program now ends with os._exit, no teardown.
    src, refs = src
    dst = tmp_path / "out"
    argv = ["pack", src, dst, *ARGS, "--seed", 2]
    p = subprocess.run(
        [sys.executable, "-c", STRIKE_FROM_INSIDE, "teardown", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (p.returncode, p.stderr) == (0, "")
    assert contents(dst) == refs[2] and leftovers(dst) == []
