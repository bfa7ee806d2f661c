"""Tests of :class:`bfpack.stream.StreamPacker`: windows with carried-over
open sequences."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bfpack
from bfpack.corpus import web_like_lengths
from bfpack.stream import StreamPacker, Window
from tokens import expected_pieces


def run_stream(windows, seq_len, long_docs="split", max_open=4096):
    """Feed ``windows`` (lists of lengths) to a StreamPacker, checking every
    Window; return the emitted sequences as lists of global
    ``(doc, start, length)`` pieces, and the packer."""
    packer = StreamPacker(seq_len, long_docs, max_open)
    carried = []      # global pieces, in the order of the last carry_pieces
    open_seqs = []    # their sequences, as lists of global pieces
    emitted = []
    base = 0
    for i, lengths in enumerate(windows):
        last = i == len(windows) - 1
        w = packer.step(np.asarray(lengths, dtype=np.int64), last=last)
        assert isinstance(w, Window)
        assert w.num_carried == len(carried)
        num_seqs = w.seq_offsets.shape[0] - 1
        assert w.seq_offsets[0] == 0 and w.seq_offsets[-1] == w.piece_doc.shape[0]
        assert np.all(np.diff(w.seq_offsets) >= 1)
        pieces = []
        for d, s, n in zip(w.piece_doc.tolist(), w.piece_start.tolist(),
                           w.piece_len.tolist()):
            assert 1 <= n <= seq_len
            if d < w.num_carried:
                assert s == 0, "a carried piece is a document of its own"
                assert n == carried[d][2]
                pieces.append(carried[d])
            else:
                pieces.append((base + d - w.num_carried, s, n))
        seqs = [pieces[w.seq_offsets[j]:w.seq_offsets[j + 1]]
                for j in range(num_seqs)]
        fill = np.array([sum(p[2] for p in s) for s in seqs], dtype=np.int64)
        assert np.all(fill <= seq_len)
        # The open sequences come first, each with its carried pieces first.
        for j, old in enumerate(open_seqs):
            assert seqs[j][:len(old)] == old
        # Carried pieces appear exactly once, in the sequences that held them.
        doc_ids = w.piece_doc.tolist()
        assert sorted(d for d in doc_ids if d < w.num_carried) == list(range(w.num_carried))

        emit = w.emit.tolist()
        assert emit == sorted(set(emit))
        kept = [j for j in range(num_seqs) if j not in set(emit)]
        if last:
            assert kept == []
        assert len(kept) <= max_open
        assert all(fill[j] < seq_len for j in kept), "a full sequence was carried"
        # The roomiest are kept.
        left_out = [j for j in emit if fill[j] < seq_len]
        if kept and left_out:
            assert fill[kept].max() <= fill[left_out].min()
        # carry_pieces: the pieces of the kept sequences, sequence by sequence.
        want = [k for j in kept for k in range(w.seq_offsets[j], w.seq_offsets[j + 1])]
        assert w.carry_pieces.tolist() == want
        carried = [pieces[k] for k in want]
        open_seqs = [seqs[j] for j in kept]
        assert packer.num_open == len(kept)
        emitted.extend(seqs[j] for j in emit)
        base += len(lengths)
    return emitted, packer


def check_coverage(emitted, lengths, seq_len, long_docs):
    got = [p for s in emitted for p in s]
    assert len(got) == len(set(got)), "a piece was emitted twice"
    assert set(got) == expected_pieces(lengths, seq_len, long_docs)


def check_stats(packer, emitted, lengths, seq_len, long_docs):
    s = packer.stats()
    ref = bfpack.pack(lengths, seq_len, long_docs=long_docs).stats()
    for key in ("seq_len", "long_docs", "documents", "empty_documents",
                "tokens", "tokens_packed", "lower_bound",
                "documents_truncated", "truncation_cuts", "tokens_dropped"):
        assert getattr(s, key) == getattr(ref, key), key
    assert s.method == "bfd"
    assert s.sequences == len(emitted)
    assert s.excess_sequences == s.sequences - s.lower_bound
    assert s.padding_tokens == s.sequences * seq_len - s.tokens_packed
    if s.sequences:
        assert s.fill == pytest.approx(s.tokens_packed / (s.sequences * seq_len))


@st.composite
def streams(draw):
    seq_len = draw(st.sampled_from([1, 2, 3, 7, 16, 50]))
    one = st.one_of(st.integers(0, seq_len), st.integers(1, max(1, seq_len // 4)),
                    st.integers(0, 3 * seq_len + 1))
    windows = draw(st.lists(st.lists(one, max_size=25), min_size=1, max_size=6))
    max_open = draw(st.sampled_from([0, 1, 2, 5, 4096]))
    long_docs = draw(st.sampled_from(["split", "truncate"]))
    return windows, seq_len, long_docs, max_open


@settings(max_examples=150)
@given(streams())
def test_every_piece_once_across_windows(case):
    windows, seq_len, long_docs, max_open = case
    emitted, packer = run_stream(windows, seq_len, long_docs, max_open)
    lengths = np.array([n for w in windows for n in w], dtype=np.int64)
    check_coverage(emitted, lengths, seq_len, long_docs)
    check_stats(packer, emitted, lengths, seq_len, long_docs)
    assert packer.num_open == 0


@pytest.mark.parametrize("max_open,long_docs", [
    (0, "split"), (1, "truncate"), (16, "split"), (4096, "truncate")])
def test_medium_stream(max_open, long_docs):
    seq_len = 512
    lengths = web_like_lengths(20_000, seed=3) // 4
    lengths[::97] = 0
    windows = np.array_split(lengths, [3000, 3000, 3001, 9000, 15000])
    emitted, packer = run_stream(windows, seq_len, long_docs, max_open)
    check_coverage(emitted, lengths, seq_len, long_docs)
    check_stats(packer, emitted, lengths, seq_len, long_docs)


def test_single_window_is_global_bfd():
    lengths = web_like_lengths(5000, seed=4)
    for long_docs in ("split", "truncate"):
        plan = bfpack.pack(lengths, 2048, long_docs=long_docs)
        w = StreamPacker(2048, long_docs).step(lengths, last=True)
        assert w.num_carried == 0 and w.carry_pieces.shape[0] == 0
        assert w.emit.tolist() == list(range(plan.num_sequences))
        for name in ("seq_offsets", "piece_doc", "piece_start", "piece_len"):
            assert np.array_equal(getattr(w, name), getattr(plan, name)), name


def test_stats_before_the_last_window_count_written_sequences_only():
    packer = StreamPacker(10, "split", 4)
    w = packer.step([3, 4, 10, 25])
    s = packer.stats()
    assert s.sequences == w.emit.shape[0]
    open_tokens = sum(int(w.piece_len[k]) for k in w.carry_pieces)
    assert open_tokens > 0
    assert s.padding_tokens == s.sequences * 10 - (s.tokens_packed - open_tokens)
    w = packer.step([], last=True)
    assert packer.num_open == 0
    assert packer.stats().sequences == s.sequences + w.emit.shape[0]
    assert packer.stats().padding_tokens == packer.stats().sequences * 10 - 42


def test_empty_windows_keep_the_open_sequences():
    packer = StreamPacker(10, "split", 8)
    w1 = packer.step([3, 4])
    assert w1.emit.shape[0] == 0 and packer.num_open == 1
    w2 = packer.step([])
    assert w2.num_carried == 2 and w2.emit.shape[0] == 0 and packer.num_open == 1
    w3 = packer.step([], last=True)
    assert w3.emit.tolist() == [0] and w3.piece_len.tolist() == [4, 3]


def test_window_is_immutable():
    w = StreamPacker(8).step([1, 2], last=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.emit = None


@pytest.mark.parametrize("kwargs,exc", [
    (dict(seq_len=0), ValueError), (dict(seq_len="8"), TypeError),
    (dict(seq_len=8, long_docs="drop"), ValueError),
    (dict(seq_len=8, max_open=-1), ValueError),
    (dict(seq_len=8, max_open=1.5), ValueError),
    (dict(seq_len=8, max_open=True), ValueError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        StreamPacker(**kwargs)


def test_bad_lengths():
    packer = StreamPacker(8)
    with pytest.raises(ValueError, match="negative"):
        packer.step([1, -2])
    with pytest.raises(TypeError):
        packer.step(["a"])


# --------------------------------------------------------------------------
# Quality: close to one global BFD
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def web_lengths():
    return web_like_lengths(2_000_000, seed=0)


def _stream_sequences(lengths, seq_len, window, max_open):
    packer = StreamPacker(seq_len, "split", max_open)
    total = 0
    for lo in range(0, lengths.shape[0], window):
        w = packer.step(lengths[lo:lo + window],
                        last=lo + window >= lengths.shape[0])
        total += w.emit.shape[0]
    assert packer.stats().sequences == total
    return total, packer.stats()


@pytest.mark.parametrize("seq_len", [2048, 8192])
def test_quality_close_to_global_bfd(web_lengths, seq_len):
    plan = bfpack.pack(web_lengths, seq_len)
    best = plan.num_sequences
    carried, stats = _stream_sequences(web_lengths, seq_len, 100_000, 4096)
    alone, _ = _stream_sequences(web_lengths, seq_len, 100_000, 0)
    assert best <= carried <= best * 1.0001, (best, carried)
    assert best <= alone <= best * 1.0001, (best, alone)
    # Carrying open sequences recovers most of the per-window cost.
    assert carried - best <= alone - best
    assert stats.tokens == int(web_lengths.sum())
    assert stats.documents_truncated == plan.stats().documents_truncated
