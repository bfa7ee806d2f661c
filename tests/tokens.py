"""Token tables whose tokens say where they come from, and a checker.

Token ``t`` of document ``d`` at position ``p`` is ``d * STRIDE + p``
(``input_ids``, int64); ``labels`` holds ``-token`` and ``mask`` holds the
token modulo 2**32 as uint32. So every packed token can be traced back to
its document and position, and any misalignment between columns shows.

:func:`check_packed` verifies a packed table against the lengths it came
from, independently of bfpack: coverage, piece boundaries, ``seq_lengths``,
``position_ids``, padding and column alignment; optionally also that the
pieces are exactly those of a :class:`bfpack.Packing`.
"""

import numpy as np
import pyarrow as pa

from naive import split_pieces

STRIDE = 100_000
COLUMNS = ("input_ids", "labels", "mask")


def token_values(lengths):
    """The ``input_ids`` tokens of documents of ``lengths``, concatenated."""
    lengths = np.asarray(lengths, dtype=np.int64)
    assert lengths.max(initial=0) < STRIDE
    doc = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(doc.shape[0], dtype=np.int64) - np.repeat(starts, lengths)
    return doc * STRIDE + pos


def derived(name, tokens):
    """Column ``name``'s values for ``input_ids`` values ``tokens``."""
    if name == "input_ids":
        return tokens.astype(np.int64)
    if name == "labels":
        return -tokens.astype(np.int64)
    if name == "mask":
        return (tokens.astype(np.int64) % (1 << 32)).astype(np.uint32)
    raise KeyError(name)


def _list_array(lengths, values, large=False, nulls=None):
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if not large:
        offsets = offsets.astype(np.int32)
    mask = None if nulls is None else pa.array(np.asarray(nulls, dtype=bool))
    cls = pa.LargeListArray if large else pa.ListArray
    return cls.from_arrays(pa.array(offsets), pa.array(values), mask=mask)


def token_table(lengths, nulls=None, columns=COLUMNS, large=False, doc_id=True, first_doc=0):
    """A table with one row per document.

    ``nulls`` (bool per document) makes those rows null lists; their length
    must be 0 in ``lengths``. ``first_doc`` numbers the documents from
    there (for shards of one dataset). A ``doc_id`` int column (not a list,
    so never packed by default) is added when asked.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if nulls is not None:
        assert not np.any(lengths[np.asarray(nulls, dtype=bool)])
    tokens = token_values(lengths) + first_doc * STRIDE
    data = {}
    if doc_id:
        data["doc_id"] = pa.array(np.arange(len(lengths)) + first_doc)
    for name in columns:
        data[name] = _list_array(lengths, derived(name, tokens), large, nulls)
    return pa.table(data)


def _flat(column):
    """(values, offsets) of a list column, slices and chunks resolved."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = arr.flatten().to_numpy(zero_copy_only=False)
    offsets = arr.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    return values, offsets


def _row_sums(values, offsets):
    cs = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def decode(out, column="input_ids"):
    """Per-piece ``(doc, start, length)`` rows of a packed table, per row.

    Returns ``(pieces, row_of_piece)``: an int64 array of shape (P, 3) and
    the row of every piece. Asserts that each piece is one run of
    consecutive positions of one document.
    """
    values, offsets = _flat(out[column])
    lens, len_offsets = _flat(out["seq_lengths"])
    lens = lens.astype(np.int64)
    fill = _row_sums(lens, len_offsets)
    # Unpadded tokens of each row.
    keep = np.zeros(values.shape[0], dtype=bool)
    for r in range(len(offsets) - 1):
        keep[offsets[r] : offsets[r] + fill[r]] = True
    tokens = values[keep].astype(np.int64)
    assert tokens.shape[0] == lens.sum()
    doc, pos = tokens // STRIDE, tokens % STRIDE
    first = np.cumsum(lens) - lens
    if len(lens):
        # One document per piece, positions consecutive from the start.
        assert np.array_equal(doc, np.repeat(doc[first], lens)), "piece mixes documents"
        within = np.arange(tokens.shape[0]) - np.repeat(first, lens)
        assert np.array_equal(pos, np.repeat(pos[first], lens) + within), (
            "positions inside a piece are not consecutive"
        )
    pieces = (
        np.stack(
            [
                doc[first] if len(lens) else np.empty(0, np.int64),
                pos[first] if len(lens) else np.empty(0, np.int64),
                lens,
            ],
            axis=1,
        )
        .astype(np.int64)
        .reshape(-1, 3)
    )
    row_of_piece = np.repeat(np.arange(len(len_offsets) - 1), np.diff(len_offsets))
    return pieces, row_of_piece


def expected_pieces(lengths, seq_len, long_docs="split"):
    """Set of ``(doc, start, length)`` the paper's cutting rule gives."""
    return set(split_pieces([int(n) for n in lengths], seq_len, long_docs))


def tiles(pieces, lengths):
    """Whether ``(doc, start, length)`` pieces cover each document exactly."""
    end = {}
    for d, s, n in sorted(pieces):
        if s != end.get(d, 0) or n < 1:
            return False
        end[d] = s + n
    return all(end.get(d, 0) == int(n) for d, n in enumerate(lengths))


def check_packed(
    out,
    lengths,
    seq_len,
    *,
    columns=COLUMNS,
    long_docs="split",
    pad=None,
    position_ids=False,
    plan=None,
    rows=None,
    value_types=None,
    large=None,
    first_doc=0,
    complete=True,
):
    """Assert that ``out`` is a correct packing of documents ``lengths``.

    ``long_docs``: "split", "truncate", or "concat" (cuts anywhere, every
    token kept). ``pad``: None, an int, or a dict per column. ``plan``: a
    :class:`bfpack.Packing` whose sequences the rows must be (in order
    ``rows``, default the identity; pass ``rows="any"`` to only compare
    the multisets of rows). ``value_types``: expected value type per column.
    ``complete=False``: ``out`` is part of a packing (a stream step), so its
    pieces are some of the documents' pieces, not all. Returns the decoded
    pieces.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    expected_names = list(columns) + ["seq_lengths"] + (["position_ids"] if position_ids else [])
    assert out.column_names == expected_names
    assert out.schema.field("seq_lengths").type == pa.list_(pa.int32())
    if position_ids:
        assert out.schema.field("position_ids").type == pa.list_(pa.int32())
    if value_types is not None:
        for name in columns:
            assert out.schema.field(name).type.value_type == value_types[name], name
    if large is not None:
        for name in columns:
            assert pa.types.is_large_list(out.schema.field(name).type) == large

    lens, len_offsets = _flat(out["seq_lengths"])
    lens = lens.astype(np.int64)
    assert np.all(lens >= 1) and np.all(lens <= seq_len)
    fill = _row_sums(lens, len_offsets)
    assert np.all(fill >= 1) and np.all(fill <= seq_len)

    ids_values, ids_offsets = _flat(out[columns[0]])
    row_len = np.diff(ids_offsets)
    if pad is None:
        assert np.array_equal(row_len, fill), "rows are not their pieces' length"
    else:
        assert np.all(row_len == seq_len), "padded rows must be seq_len long"
    pad_mask = np.ones(ids_values.shape[0], dtype=bool)
    for r in range(out.num_rows):
        pad_mask[ids_offsets[r] : ids_offsets[r] + fill[r]] = False

    # Every column aligned with input_ids, token by token, padding included.
    ref = ids_values.astype(np.int64)
    if columns[0] != "input_ids":
        ref = None
    for name in columns:
        values, offsets = _flat(out[name])
        assert np.array_equal(offsets, ids_offsets), f"{name} rows differ in length"
        if ref is not None:
            body = values[~pad_mask]
            assert np.array_equal(body, derived(name, ref[~pad_mask])), (
                f"{name} not aligned with input_ids"
            )
        if pad is not None:
            p = pad[name] if isinstance(pad, dict) else pad
            assert np.all(values[pad_mask] == p), f"{name} padding is not {p}"

    if position_ids:
        pos_values, pos_offsets = _flat(out["position_ids"])
        assert np.array_equal(pos_offsets, ids_offsets)
        want = np.zeros(ids_values.shape[0], dtype=np.int64)
        starts = np.cumsum(lens) - lens
        body = np.arange(lens.sum()) - np.repeat(starts, lens)
        want[~pad_mask] = body
        assert np.array_equal(pos_values, want), "position_ids wrong"

    pieces, row_of_piece = decode(out, columns[0])
    pieces = pieces.copy()
    pieces[:, 0] -= first_doc
    # Coverage: exactly the pieces of the cutting rule, each once.
    got = list(map(tuple, pieces.tolist()))
    assert len(got) == len(set(got)), "a piece appears twice"
    if not complete:
        if long_docs != "concat":
            assert set(got) <= expected_pieces(lengths, seq_len, long_docs)
    elif long_docs == "concat":
        # Cuts may fall anywhere: the pieces of each document tile it.
        assert tiles(got, lengths), "pieces do not cover each document once"
    else:
        assert set(got) == expected_pieces(lengths, seq_len, long_docs)

    if plan is not None:
        plan_rows = [
            tuple(zip(*(a.tolist() for a in plan.sequence(j)))) for j in range(plan.num_sequences)
        ]
        out_rows = [[] for _ in range(out.num_rows)]
        for (d, s, n), r in zip(got, row_of_piece.tolist()):
            out_rows[r].append((d, s, n))
        out_rows = [tuple(r) for r in out_rows]
        assert len(out_rows) == len(plan_rows)
        if isinstance(rows, str) and rows == "any":
            assert sorted(out_rows) == sorted(plan_rows)
        else:
            order = range(len(plan_rows)) if rows is None else rows
            assert out_rows == [plan_rows[j] for j in order]
    return pieces


def rebuild(out, column="input_ids"):
    """The documents of a packed table, rebuilt from its pieces by their
    provenance: ``{doc_index: tokens}``, each document's pieces concatenated
    in ``doc_offset`` order; asserts that they tile it from offset 0, with
    no gap or overlap."""
    pieces = {}
    d = out.select([column, "seq_lengths", "doc_index", "doc_offset"]).to_pydict()
    for tokens, lens, docs, offs in zip(
        d[column], d["seq_lengths"], d["doc_index"], d["doc_offset"]
    ):
        assert len(lens) == len(docs) == len(offs)
        pos = 0
        for n, doc, off in zip(lens, docs, offs):
            pieces.setdefault(doc, []).append((off, tokens[pos : pos + n]))
            pos += n
    docs = {}
    for doc, parts in pieces.items():
        parts.sort(key=lambda p: p[0])
        at = 0
        for off, piece in parts:
            assert off == at, f"document {doc}: a piece at {off}, expected {at}"
            at += len(piece)
        docs[doc] = [t for _, piece in parts for t in piece]
    return docs
