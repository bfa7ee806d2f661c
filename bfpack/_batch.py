"""Packed rows to training batches, in numpy (``bfpack.torch`` wraps them in tensors).

A packed row holds the tokens of its pieces end to end (then padding, when
it was packed with ``pad_value``) and ``seq_lengths``, the pieces' lengths.
Everything a training step needs follows from ``seq_lengths``: positions
that restart at each piece, a label of ``IGNORE_INDEX`` at each piece's
first token (so no target crosses from one document to the next), the
piece of every token, and flash-attention's ``cu_seqlens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._arrow import INT32_MAX

#: The label that losses ignore (PyTorch's ``cross_entropy`` default).
IGNORE_INDEX = -100


class Rows(NamedTuple):
    """A list of packed rows, laid end to end, padding dropped."""

    input_ids: np.ndarray  # int64, the tokens of every piece, row after row
    labels: np.ndarray  # int64, the same slots: a row's labels, or its input_ids
    seq_lengths: np.ndarray  # int64, the pieces of every row, in order
    row_tokens: np.ndarray  # int64, tokens of each row (its pieces, no padding)
    row_pieces: np.ndarray  # int64, pieces of each row


def gather_rows(rows: Sequence[Any]) -> Rows:
    """Check the packed rows ``rows`` and lay them end to end.

    Each row is a mapping with ``input_ids`` and ``seq_lengths`` (lists,
    numpy arrays or CPU tensors) and optionally ``labels``; other keys are
    ignored. Slots after the pieces (padding) are dropped.
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not len(rows):
        raise ValueError(
            "a batch must be a non-empty list of packed rows (dicts with input_ids "
            f"and seq_lengths), got {type(rows).__name__}"
        )
    ids, labels, pieces = [], [], []
    for i, row in enumerate(rows):
        row_ids, row_labels, row_pieces = as_packed_row(row, i)
        for key, values in (("input_ids", row_ids), ("labels", row_labels)):
            _check_int64(values, i, key)
        n = int(row_pieces.sum())
        ids.append(row_ids[:n])
        labels.append(row_labels[:n])
        pieces.append(row_pieces)
    return Rows(
        input_ids=np.concatenate(ids).astype(np.int64, copy=False),
        labels=np.concatenate(labels).astype(np.int64, copy=False),
        seq_lengths=np.concatenate(pieces),
        row_tokens=np.array([x.shape[0] for x in ids], dtype=np.int64),
        row_pieces=np.array([x.shape[0] for x in pieces], dtype=np.int64),
    )


_INT64_MAX = np.iinfo(np.int64).max


def _check_int64(values: np.ndarray, index: int, key: str) -> None:
    """Refuse unsigned values that int64 cannot hold (a cast would wrap them)."""
    if values.dtype.kind == "u" and values.shape[0] and int(values.max()) > _INT64_MAX:
        raise ValueError(
            f"row {index}: {key} holds {int(values.max())}, more than an int64 holds "
            f"(2**63 - 1); token ids must fit in the int64 a model takes"
        )


def as_packed_row(row: Any, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input_ids, labels, seq_lengths)`` of packed row number ``index``.

    ``row`` is a mapping (a row of a packed dataset) whose ``input_ids``,
    optional ``labels`` (default: ``input_ids``) and ``seq_lengths`` are
    1-D integer sequences (lists, numpy arrays, CPU tensors); the pieces
    must fit in the row (slots after them are padding).
    """
    if not isinstance(row, Mapping):
        raise TypeError(
            f"row {index} is a {type(row).__name__}; a batch is a list of packed rows, "
            f"dicts with input_ids and seq_lengths (rows of bfpack.hf.pack_dataset, "
            f"bfpack.torch.PackedDataset or pack_table's output)"
        )
    for key in ("input_ids", "seq_lengths"):
        if key not in row:
            raise ValueError(
                f"row {index} has no {key!r} (its keys: {sorted(row)}). If a transformers "
                f"Trainer gave the rows, it dropped the column as the model does not take "
                f"it: pass TrainingArguments(remove_unused_columns=False). Otherwise pack "
                f"the documents with bfpack first: pieces are read from seq_lengths"
            )
    ids = _row_array(row["input_ids"], index, "input_ids")
    labels = ids if row.get("labels") is None else _row_array(row["labels"], index, "labels")
    pieces = _row_array(row["seq_lengths"], index, "seq_lengths")
    if labels.shape != ids.shape:
        raise ValueError(
            f"row {index}: labels has {labels.shape[0]} values but input_ids "
            f"{ids.shape[0]}; they must be aligned token by token"
        )
    if pieces.shape[0] and pieces.min() < 1:
        raise ValueError(f"row {index}: seq_lengths must be >= 1, got {pieces.min()}")
    if pieces.sum() > ids.shape[0]:
        raise ValueError(
            f"row {index}: its seq_lengths add up to {pieces.sum()} tokens, but it holds "
            f"{ids.shape[0]}; seq_lengths must describe the row's own tokens"
        )
    return ids, labels, pieces.astype(np.int64, copy=False)


def piece_values(rows: Sequence[Any], key: str) -> np.ndarray:
    """Column ``key`` of the rows (one integer per piece, as ``doc_index``
    and ``doc_offset`` of a packing with provenance), laid end to end (int64)."""
    out = []
    for i, row in enumerate(rows):
        if key not in row:
            raise ValueError(
                f"row {i} has no {key!r} (its keys: {sorted(row)}); pack the documents "
                f"with provenance=True (--provenance) for it"
            )
        values = _row_array(row[key], i, key)
        pieces = len(row["seq_lengths"])
        if values.shape[0] != pieces:
            raise ValueError(
                f"row {i}: {key} has {values.shape[0]} values for {pieces} pieces; it "
                f"must hold one per piece"
            )
        _check_int64(values, i, key)
        out.append(values.astype(np.int64, copy=False))
    return np.concatenate(out)


def _row_array(value: Any, index: int, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"row {index}: {key} must be 1-D, got shape {arr.shape}")
    if not arr.shape[0]:
        return np.empty(0, dtype=np.int64)  # [] reads as float64
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"row {index}: {key} must hold integers, got dtype {arr.dtype}; "
            f"cast it (e.g. .astype(np.int64))"
        )
    return arr


def cu_seqlens(seq_lengths: np.ndarray) -> np.ndarray:
    """Where each piece starts, and the end: flash-attention's varlen ``cu_seqlens``.

    ``seq_lengths`` are checked piece lengths (int64, >= 0), of one row or
    of a flattened batch. int32, shape ``(num_pieces + 1,)``, from 0;
    ValueError if the total passes int32.
    """
    out = np.zeros(seq_lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(seq_lengths, out=out[1:])
    if out[-1] > INT32_MAX:
        raise ValueError("the batch holds more than 2**31 - 1 tokens; cu_seqlens is int32")
    return out.astype(np.int32)


def max_seqlen(seq_lengths: np.ndarray) -> int:
    """The longest of the checked piece lengths ``seq_lengths`` (0 for none):
    flash-attention's varlen ``max_seqlen``."""
    return int(seq_lengths.max()) if seq_lengths.shape[0] else 0


def piece_positions(seq_lengths: np.ndarray) -> np.ndarray:
    """Position of every token inside its piece: ``0 .. n - 1`` for each piece of ``n``."""
    starts = np.cumsum(seq_lengths) - seq_lengths
    return np.arange(int(seq_lengths.sum()), dtype=np.int64) - np.repeat(starts, seq_lengths)


def piece_index(seq_lengths: np.ndarray) -> np.ndarray:
    """Index of the piece of every token (``0, 0, 0, 1, 1, ...``), int64."""
    return np.repeat(np.arange(seq_lengths.shape[0], dtype=np.int64), seq_lengths)


def piece_labels(rows: Rows) -> np.ndarray:
    """The labels, with ``IGNORE_INDEX`` at the first token of every piece."""
    labels = rows.labels.copy()
    labels[(np.cumsum(rows.seq_lengths) - rows.seq_lengths)] = IGNORE_INDEX
    return labels


def padding_free(rows: Rows) -> dict[str, Any]:
    """The rows flattened into one sequence of ``T`` tokens.

    ``input_ids``, ``labels``, ``position_ids`` and ``document_ids`` (the
    piece of each token, numbered across the batch) of shape ``(1, T)``;
    ``cu_seqlens`` (int32, from 0) and ``max_seqlen`` (int) of the pieces.
    """
    return dict(
        input_ids=rows.input_ids[None],
        labels=piece_labels(rows)[None],
        position_ids=piece_positions(rows.seq_lengths)[None],
        document_ids=piece_index(rows.seq_lengths)[None],
        cu_seqlens=cu_seqlens(rows.seq_lengths),
        max_seqlen=max_seqlen(rows.seq_lengths),
    )


def padded(rows: Rows, seq_len: int | None, pad_token_id: int) -> dict[str, np.ndarray]:
    """The rows padded to ``seq_len`` (default: the longest row), shape ``(B, L)``.

    Padding slots hold ``pad_token_id``, label ``IGNORE_INDEX``, position 0
    and document id -1; document ids number the pieces of each row from 0.
    """
    longest = int(rows.row_tokens.max())
    length = longest if seq_len is None else seq_len
    if longest > length:
        row = int(np.argmax(rows.row_tokens))
        raise ValueError(
            f"row {row} holds {longest} tokens, more than seq_len={length}; pass the "
            f"seq_len the rows were packed with"
        )
    # The batch-wide index of each row's first piece, for every token of the row.
    first_piece = np.repeat(np.cumsum(rows.row_pieces) - rows.row_pieces, rows.row_tokens)
    return dict(
        input_ids=padded_like(rows, rows.input_ids, length, pad_token_id),
        labels=padded_like(rows, piece_labels(rows), length, IGNORE_INDEX),
        position_ids=padded_like(rows, piece_positions(rows.seq_lengths), length, 0),
        document_ids=padded_like(rows, piece_index(rows.seq_lengths) - first_piece, length, -1),
    )


def piece_blocks(rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, start, length)`` of every piece, ``start`` counted within its row
    (int64 arrays): the diagonal blocks of a block-diagonal attention mask."""
    row = np.repeat(np.arange(rows.row_pieces.shape[0], dtype=np.int64), rows.row_pieces)
    ends = np.cumsum(rows.seq_lengths)
    row_first = np.cumsum(rows.row_tokens) - rows.row_tokens  # where each row starts, flat
    return row, ends - rows.seq_lengths - row_first[row], rows.seq_lengths


def num_targets(labels: np.ndarray) -> int:
    """How many labels of a batch's ``labels`` count (are not ``IGNORE_INDEX``).

    In a bfpack batch the first label of every piece, and padding, is
    ``IGNORE_INDEX``, so this is the number of next-token targets a causal
    LM's shifted loss has: transformers' ``num_items_in_batch``.
    """
    return int(np.count_nonzero(labels != IGNORE_INDEX))


def piece_weights(labels: np.ndarray, seq_lengths: np.ndarray) -> np.ndarray:
    """Per-token loss weights that give every piece equal weight (float32).

    ``labels`` are the flat labels of the pieces ``seq_lengths`` (after
    :func:`piece_labels`). A label that counts gets ``1 / n``, ``n`` the
    number of labels that count in its piece; a label that does not gets 0.
    The weights of a piece with targets add up to 1, so their sum is the
    number of such pieces.
    """
    counts = labels != IGNORE_INDEX
    piece = piece_index(seq_lengths)
    per_piece = np.bincount(piece[counts], minlength=seq_lengths.shape[0])
    weights = np.zeros(labels.shape[0], dtype=np.float32)
    weights[counts] = 1.0 / per_piece[piece[counts]]
    return weights


def padded_like(rows: Rows, flat: np.ndarray, length: int, fill: float) -> np.ndarray:
    """Flat per-token values ``flat`` (the slots of ``rows`` end to end) laid out
    as the padded batch ``(B, length)`` of :func:`padded`, ``fill`` in padding."""
    real = np.arange(length)[None, :] < rows.row_tokens[:, None]
    out = np.full(real.shape, fill, dtype=flat.dtype)
    out[real] = flat  # row-major order: row by row, as the flat arrays
    return out
