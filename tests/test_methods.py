"""The method registry: every part of bfpack reads it, and a new method is
one kernel and one entry."""

import numpy as np
import pyarrow as pa
import pytest

import bfpack
from bfpack import METHODS, Method
from bfpack._kernels.results import Fit
from bfpack.cli._app import build_parser as _parser
from bfpack.methods import any_fit

from naive import OPEN_REFERENCES, REFERENCES, naive_stream, sorted_pieces
from plans import as_lists


def test_every_method_has_a_reference():
    assert set(REFERENCES) == set(METHODS)
    for name, method in METHODS.items():
        assert isinstance(method, Method) and method.name == name
        assert method.summary and callable(method.place)
        if method.streams:
            assert name in OPEN_REFERENCES, f"{name} streams but has no open reference"


def test_the_command_line_offers_every_method():
    actions = {a.dest: a for a in _parser()._subparsers._group_actions[0].choices["pack"]._actions}
    assert actions["method"].choices == list(METHODS)
    for method in METHODS.values():
        assert method.summary in actions["method"].help


def test_compare_covers_every_method_baseline_first():
    table = bfpack.compare([5, 3, 900, 70], 100)
    assert table["method"].to_pylist() == ["concat", *(m for m in METHODS if m != "concat")]


def test_an_unknown_method_names_the_registered_ones():
    listed = ", ".join(map(repr, METHODS))
    for call in (
        lambda: bfpack.pack([1], 4, method="wfd"),
        lambda: bfpack.StreamPacker(4, method="wfd"),
        lambda: bfpack.truncation_profile([1], 4, methods=["wfd"]),
    ):
        with pytest.raises(ValueError, match=f"method must be one of {listed}; got 'wfd'"):
            call()


# --------------------------------------------------------------------------
# A new method: next-fit decreasing, as a plain-Python kernel
# --------------------------------------------------------------------------


def next_fit(size_count, seq_len, open_free, piece_seq):
    """Next-fit decreasing: only the newest sequence takes pieces (any-fit
    kernel signature; open sequences other than the newest are passed over)."""
    free = [int(f) for f in open_free]
    count = [0] * len(free)
    p = 0
    for s in range(seq_len, 0, -1):
        for _ in range(size_count[s]):
            if not free or free[-1] < s:
                free.append(seq_len)
                count.append(0)
            free[-1] -= s
            count[-1] += 1
            piece_seq[p] = len(free) - 1
            p += 1
    return Fit(np.array(count, dtype=np.int64), np.array(free, dtype=np.int64))


def naive_nfd(lengths, seq_len, long_docs="split", open_sequences=()):
    sequences = [list(s) for s in open_sequences]
    room = seq_len - sum(p[2] for p in sequences[-1]) if sequences else 0
    for piece in sorted_pieces(lengths, seq_len, long_docs):
        if not sequences or room < piece[2]:
            sequences.append([])
            room = seq_len
        sequences[-1].append(piece)
        room -= piece[2]
    return sequences


@pytest.fixture
def nfd(monkeypatch):
    method = Method(
        "nfd", "next-fit decreasing", place=any_fit(next_fit), streams=True, cuts_by_long_docs=True
    )
    monkeypatch.setitem(METHODS, "nfd", method)
    monkeypatch.setitem(REFERENCES, "nfd", naive_nfd)
    monkeypatch.setitem(OPEN_REFERENCES, "nfd", naive_nfd)
    return method


def test_a_registered_method_is_used_everywhere(nfd):
    lengths = [7, 3, 9, 4, 25, 0, 6, 5]
    plan = bfpack.pack(lengths, 10, method="nfd")
    assert as_lists(plan) == naive_nfd(lengths, 10)
    assert plan.stats().method == "nfd"
    windows = [lengths[:3], lengths[3:]]
    packer = bfpack.StreamPacker(10, method="nfd", max_open=2)
    steps = [packer.step(windows[0]), packer.step(windows[1], last=True)]
    assert [as_lists(s) for s in steps] == naive_stream(windows, 10, "nfd", max_open=2)
    assert "nfd" in bfpack.compare(lengths, 10)["method"].to_pylist()
    table = bfpack.pack_table(pa.table({"x": [[1] * n for n in lengths]}), 10, method="nfd")
    assert table["seq_lengths"].to_pylist() == [[p[2] for p in s] for s in naive_nfd(lengths, 10)]
