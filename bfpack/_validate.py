"""Every check and conversion of user input, in one place.

Each public function passes its arguments through these once, at the
boundary, and hands the kernels arrays of the types :mod:`bfpack._jit`
names. Wrong types raise TypeError, wrong values ValueError; both say what
to pass instead. Integers may be Python ints or numpy integers (never
bools).
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from ._arrow import INT32_MAX, is_list_type
from ._jit import readonly
from ._memory import check_seq_len_fits
from ._warnings import warn_user

LONG_DOCS = ("split", "truncate")
INT64_MAX = int(np.iinfo(np.int64).max)
# Compared as uint64: numpy 1.x compares uint64 with a Python int in float64,
# where 2**63 - 1 rounds up to 2**63.
_UINT64_LIMIT = np.uint64(INT64_MAX)
SEQ_LEN_MAX = INT32_MAX
#: A per-document mask that packing must not carry by default (see :func:`as_columns`).
ATTENTION_MASK = "attention_mask"


# ---------------------------------------------------------------------------
# Scalars


def as_int(
    value: Any,
    name: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    unit: str = "",
    example: str = "",
) -> int:
    """``value`` as a Python int in ``[lo, hi]``.

    TypeError for anything that is not an integer (bools and floats
    included), ValueError for an integer out of range. ``unit`` names what
    is counted ("tokens"), ``example`` shows a good value in the message.
    """
    what = f"an integer number of {unit}" if unit else "an integer"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {what}, got a bool ({value!r})")
    try:
        number = operator.index(value)
    except TypeError:
        hint = f"; e.g. {example}" if example else ""
        raise TypeError(
            f"{name} must be {what}, got {type(value).__name__} {value!r}{hint}"
        ) from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        if hi is None:
            bounds = f">= {lo}"
        elif lo is None:
            bounds = f"<= {hi}"
        else:
            bounds = f"between {lo} and {hi}"
        raise ValueError(f"{name} must be {bounds}{' ' + unit if unit else ''}, got {number}")
    return number


def as_optional_int(value: Any, name: str, **bounds: Any) -> int | None:
    """``None``, or ``value`` checked by :func:`as_int`."""
    return None if value is None else as_int(value, name, **bounds)


def as_seq_len(seq_len: Any) -> int:
    """``seq_len`` as a Python int in ``[1, 2**31 - 1]`` whose working
    memory fits this machine (:func:`bfpack._memory.check_seq_len_fits`)."""
    number = as_int(seq_len, "seq_len", lo=1, hi=SEQ_LEN_MAX, unit="tokens", example="seq_len=2048")
    check_seq_len_fits(number)
    return number


def as_seed(seed: Any) -> int | None:
    """``None``, or a seed for :func:`numpy.random.default_rng` (an int >= 0)."""
    return as_optional_int(seed, "seed", lo=0)


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; only ``True``/``False`` (or numpy bools) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ValueError."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def as_long_docs(long_docs: Any) -> str:
    """``"split"`` or ``"truncate"``."""
    return as_choice(long_docs, "long_docs", LONG_DOCS)


def as_callable(value: Any, name: str) -> Callable | None:
    """``None`` or a callable."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")
    return value


# ---------------------------------------------------------------------------
# Lengths


def as_lengths(lengths: Any, name: str = "lengths") -> np.ndarray:
    """``lengths`` as a read-only contiguous 1-D int64 array.

    No copy when it already is one. Accepts numpy arrays of any integer
    dtype, floats without a fraction, Python sequences, and pyarrow Arrays
    or ChunkedArrays. Negative values are found later, in the pass that
    counts pieces, and reported by :func:`raise_bad_length`.
    """
    if _is_arrow(lengths):
        lengths = _arrow_to_numpy(lengths, name)
    arr = as_array(lengths, name, "token counts")
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one length per document), got an array of "
            f"shape {arr.shape}; flatten it with np.ravel() if that is meant"
        )
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(
            f"{name} has dtype bool; pass token counts as integers, e.g. {name}.astype(np.int64)"
        )
    if kind not in "iuf":
        raise TypeError(
            f"{name} must hold integer token counts, got dtype {arr.dtype}; "
            f"convert it with .astype(np.int64)"
        )
    if kind == "f":
        _check_float_lengths(arr, name)
    elif kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() > _UINT64_LIMIT:
        bad = int(np.argmax(arr > _UINT64_LIMIT))
        raise ValueError(
            f"{name}[{bad}] = {arr[bad]} does not fit in int64; it cannot be a token count"
        )
    return readonly(np.ascontiguousarray(arr, dtype=np.int64))


def as_indices(indices: Any, size: int, name: str) -> np.ndarray:
    """``indices`` into an axis of ``size`` as a read-only 1-D int64 array."""
    arr = as_array(indices, name, "indices")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = int(np.flatnonzero((arr < 0) | (arr >= size))[0])
        raise ValueError(f"{name}[{bad}] = {arr[bad]} is outside [0, {size})")
    return readonly(arr)


def as_array(values: Any, name: str, what: str) -> np.ndarray:
    """``values`` (array-like) as a numpy array, refusing what ``np.asarray``
    would turn into a 0-d object array or read past.

    A masked array with masked entries is refused like Arrow nulls (its
    mask would be ignored); an unmasked one gives its data. Iterators,
    generators, sets and mappings have no order or length numpy can use:
    TypeError, with how to make an array of them.
    """
    if isinstance(values, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(values))
        if masked:
            raise ValueError(
                f"{name} has {masked} masked values; fill them (e.g. {name}.filled(0)) "
                f"or drop them ({name}.compressed())"
            )
        return np.asarray(values.data)
    arr = np.asarray(values)
    if isinstance(values, (Set, Mapping, str, bytes)) or (arr.ndim == 0 and arr.dtype == object):
        hint = (
            f"; make an array of it first, e.g. np.fromiter({name}, dtype=np.int64)"
            if isinstance(values, Iterator)
            else ""
        )
        raise TypeError(
            f"{name} must be a list or 1-D array of {what}, got {type(values).__name__}{hint}"
        )
    return arr


def as_costs(costs: Any) -> np.ndarray:
    """Per-row costs (:mod:`bfpack.balance`): 1-D, finite, ``>= 0``, as
    read-only float64."""
    arr = as_array(costs, "costs", "per-row costs")
    if arr.ndim != 1:
        raise ValueError(f"costs must be 1-D (one cost per row), got shape {arr.shape}")
    if arr.dtype.kind not in "iuf" or arr.dtype == np.bool_:
        raise TypeError(
            f"costs must hold numbers, got dtype {arr.dtype}; convert with .astype(np.float64)"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"costs[{i}] = {arr[i]} is not a finite number >= 0")
    return readonly(arr)


def as_attention_weight(value: Any) -> float:
    """``attention_weight`` of :func:`bfpack.balance.row_costs`: a finite number ``>= 0``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"attention_weight must be a number, got {type(value).__name__}")
    weight = float(value)
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"attention_weight must be a finite number >= 0, got {value!r}")
    return weight


def check_nonnegative(arr: np.ndarray, name: str) -> None:
    """ValueError naming the first negative value of ``arr``."""
    if arr.size and arr.min() < 0:
        bad = int(np.argmax(arr < 0))
        raise ValueError(f"{name}[{bad}] = {arr[bad]} is negative; lengths are token counts (>= 0)")


def _check_float_lengths(arr: np.ndarray, name: str) -> None:
    if not arr.size:
        return
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(
            f"{name}[{bad}] is {arr[bad]}; every length must be a finite integer number of tokens"
        )
    frac = np.flatnonzero(arr != np.floor(arr))
    if len(frac):
        bad = int(frac[0])
        raise ValueError(
            f"{name}[{bad}] = {arr[bad]} is not a whole number of tokens; "
            f"round it first (e.g. np.rint({name}).astype(np.int64))"
        )
    # Compared in float64: 2**63 - 1 rounds up to 2**63 there, and a
    # narrower float type would overflow on the bound itself.
    if np.float64(arr.max()) >= 2.0**63:
        raise ValueError(
            f"{name} holds values above the int64 range (max {arr.max()}); "
            f"they cannot be token counts"
        )
    # Negative lengths are reported here, where the value is still exact:
    # cast to int64, one past the int64 range would become garbage.
    if arr.min() < 0:
        raise_bad_length(arr, int(np.argmax(arr < 0)))


def as_bin_edges(bins: Any) -> np.ndarray:
    """Increasing bin edges of document lengths as int64 (bin ``i`` holds
    ``edges[i] <= length < edges[i + 1]``).

    Float edges are rounded up, which keeps the bins of integer lengths
    the same; ``inf`` stands for no bound. NaN, masked and non-numeric
    edges are refused.
    """
    edges = as_array(bins, "bins", "bin edges")
    if edges.dtype == object:  # integers past int64
        edges = np.asarray(bins, dtype=np.float64)
    if edges.dtype.kind == "b" or edges.dtype.kind not in "iuf":
        raise TypeError(f"bins must be a count or numbers (bin edges), got dtype {edges.dtype}")
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError(
            f"bins must be a count or increasing bin edges (at least two), got shape {edges.shape}"
        )
    if edges.dtype.kind == "f" and np.isnan(edges).any():
        raise ValueError("bins holds NaN; bin edges must be numbers")
    if (np.diff(edges) <= 0).any():
        raise ValueError(f"bins must be a count or increasing bin edges, got {edges}")
    if edges.dtype.kind == "f":
        # Lengths are integers below 2**63: rounding up keeps every bin's
        # lengths, and an edge past int64 (inf included) bounds nothing.
        top = 2.0**63 - 1024  # the largest float64 below 2**63
        edges = np.ceil(np.clip(edges.astype(np.float64), -(2.0**63), top))
        return np.where(edges >= top, INT64_MAX, edges.astype(np.int64))
    if edges.dtype.kind == "u":
        edges = np.minimum(edges, _UINT64_LIMIT)
    return edges.astype(np.int64)


def raise_bad_length(lengths: np.ndarray, index: int) -> None:
    """Raise the ValueError for ``lengths[index]``, which the piece count
    found negative or taking the token total past int64."""
    value = lengths[index]
    # Whole floats read as integers: -1, -1e+300.
    shown = f"{value:g}" if isinstance(value, np.floating) else value
    if value < 0:
        raise ValueError(f"lengths[{index}] = {shown} is negative; lengths are token counts (>= 0)")
    raise ValueError(
        f"the token total passes the int64 range at lengths[{index}] = "
        f"{shown}; lengths must be token counts"
    )


def _is_arrow(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyarrow")


def _arrow_to_numpy(arr: Any, name: str) -> np.ndarray:
    if isinstance(arr, (pa.Array, pa.ChunkedArray)):
        if arr.null_count:
            raise ValueError(
                f"{name} has {arr.null_count} null values; fill them "
                f"(e.g. pyarrow.compute.fill_null({name}, 0)) or drop them"
            )
        if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
            raise TypeError(
                f"{name} must hold integer token counts, got Arrow type "
                f"{arr.type}; cast it with .cast(pyarrow.int64())"
            )
        if isinstance(arr, pa.ChunkedArray):
            return arr.to_numpy()
        return arr.to_numpy(zero_copy_only=False)
    raise TypeError(f"{name} must be a 1-D array of integers, got {type(arr).__name__}")


# ---------------------------------------------------------------------------
# Tables


def as_table(table: Any) -> pa.Table:
    """``table`` as a :class:`pyarrow.Table` (a RecordBatch is wrapped, not copied)."""
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    if type(table).__module__.split(".")[0] == "datasets":
        # A datasets.Dataset, or its .data: packing the storage table would
        # ignore select/shuffle/filter (the indices mapping).
        raise TypeError(
            f"table must be a pyarrow.Table, got a {type(table).__name__} of Hugging Face "
            f"datasets; pack it with bfpack.hf.pack_dataset(dataset, seq_len), which "
            f"honours select, shuffle and filter (pip install 'bfpack[hf]')"
        )
    if not isinstance(table, pa.Table):
        raise TypeError(
            f"table must be a pyarrow.Table or RecordBatch, got "
            f"{type(table).__name__}; e.g. pyarrow.Table.from_pydict(...)"
        )
    return table


def as_columns(
    schema: pa.Schema, columns: Any, reserved: Sequence[str], *, warn_skipped: bool = True
) -> tuple[str, ...]:
    """Names of the list columns to pack, checked against ``schema``.

    ``columns=None`` picks every list column except ``attention_mask``: a
    per-document mask of ones, packed along, would let every token of a
    packed row attend to the other documents of the row. It is left out
    with a warning (unless ``warn_skipped`` is False) and packed only when
    ``columns`` names it. ``reserved`` names the columns bfpack adds to its
    output, which an input column may not take.
    """
    skipped = False
    if columns is None:
        names = [f.name for f in schema if is_list_type(f.type)]
        skipped = ATTENTION_MASK in names
        names = [n for n in names if n != ATTENTION_MASK]
        if not names:
            also = f" (and {ATTENTION_MASK!r}, never packed by default)" if skipped else ""
            raise ValueError(f"the table has no list column to pack{also}; columns: {schema.names}")
    else:
        names = _as_names(columns, "columns")
        if not names:
            raise ValueError("columns is empty; name at least one list column")
    check_unique_columns(schema, names)
    for name in names:
        if name not in schema.names:
            raise ValueError(f"column {name!r} is not in the table; its columns are {schema.names}")
        try:
            check_token_type(name, schema.field(name).type)
        except TypeError as exc:
            if columns is None:  # picked by default: naming the token columns is the fix
                _not_by_default(schema, names, name, exc)
            raise
        if name in reserved:
            raise ValueError(
                f"column {name!r} would clash with the column bfpack adds; rename it first"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"columns lists a column twice: {names}")
    if skipped and warn_skipped:
        warn_user(
            f"column {ATTENTION_MASK!r} is not packed: a per-document mask packed along "
            f"would let tokens attend across the documents of a row (each piece is kept "
            f"apart by seq_lengths and position_ids); name it in columns= (--column) to "
            f"pack it anyway"
        )
    return tuple(names)


def as_carry(
    schema: pa.Schema, carry: Any, packed: Sequence[str], reserved: Sequence[str]
) -> tuple[str, ...]:
    """Names of the per-document columns to carry, checked against ``schema``:
    present, once, not packed, not a list column, not named like an added column."""
    if carry is None:
        return ()
    names = _as_names(carry, "carry")
    if len(set(names)) != len(names):
        raise ValueError(f"carry lists a column twice: {names}")
    check_unique_columns(schema, names)
    for name in names:
        if name not in schema.names:
            raise ValueError(
                f"carry: column {name!r} is not in the table; its columns are {schema.names}"
            )
        if name in packed:
            raise ValueError(
                f"column {name!r} is packed and carried; name it in one of columns= and carry="
            )
        if is_list_type(schema.field(name).type):
            raise TypeError(
                f"carry: column {name!r} is a list column ({schema.field(name).type}); carry "
                f"per-document values, and pack list columns aligned with the tokens"
            )
        if name in reserved:
            raise ValueError(
                f"carry: column {name!r} would clash with the column bfpack adds; rename it first"
            )
    return tuple(names)


def _as_names(value: Any, what: str) -> list[str]:
    """``value`` (argument ``what``): one column name or an iterable of names."""
    if isinstance(value, str):
        return [value]
    try:
        names = list(value)
    except TypeError:
        raise TypeError(f"{what} must be a column name or a list of names, got {value!r}") from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"{what} must be names (str), got {bad[0]!r}")
    return names


def _not_by_default(schema: pa.Schema, names: Sequence[str], name: str, exc: TypeError) -> None:
    """TypeError for the default list column ``name`` that holds no tokens, naming
    the columns to pack instead; returns if there are none."""
    tokens = []
    for n in names:
        try:
            check_token_type(n, schema.field(n).type)
        except TypeError:
            continue
        tokens.append(n)
    if not tokens:
        return
    flags = " ".join(f"--column {n}" for n in tokens)
    t = schema.field(name).type.value_type
    raise TypeError(
        f"column {name!r} holds {t} values, and by default every list column is packed; "
        f"pass columns={tokens} ({flags}) to pack only the token columns"
    ) from exc


def as_column(schema: pa.Schema, column: Any) -> str:
    """The one token column ``column`` of ``schema``; None: its first list
    column other than ``attention_mask``."""
    if column is None:
        column = next(
            (f.name for f in schema if is_list_type(f.type) and f.name != ATTENTION_MASK), None
        )
        if column is None:
            raise ValueError(
                f"the data has no list column of tokens; its columns are {schema.names}"
            )
    elif not isinstance(column, str):
        raise TypeError(f"column must be a column name (str) or None, got {column!r}")
    return as_columns(schema, column, ())[0]


def check_unique_columns(schema: pa.Schema, names: Sequence[str]) -> None:
    """ValueError if a column of ``names`` is in ``schema`` more than once
    (Arrow allows it; which one to pack would be a guess)."""
    for name in names:
        count = schema.names.count(name)
        if count > 1:
            raise ValueError(
                f"the table has {count} columns named {name!r}; rename them "
                f"(Table.rename_columns) so that each packed column has its own name"
            )


def check_token_type(name: str, t: pa.DataType) -> None:
    """TypeError unless ``t`` is a list of integers or floating-point numbers."""
    if not is_list_type(t):
        raise TypeError(
            f"column {name!r} has type {t}, not a list of tokens; pack list<int> columns "
            f"only, and carry a per-document column with carry=[{name!r}] (--carry {name}): "
            f"one value per piece"
        )
    v = t.value_type
    if not (pa.types.is_integer(v) or pa.types.is_floating(v)):
        raise TypeError(
            f"column {name!r} holds {v} values; only integer or floating-point "
            f"tokens can be packed (cast the column first)"
        )


def check_same_columns(schema: pa.Schema, expected: pa.Schema, where: str) -> None:
    """Check that ``schema`` holds every column of ``expected`` as a list of
    the same token type (a column that is not a list, carried per document:
    of the same type); ``where`` names the table in the message."""
    check_unique_columns(schema, expected.names)
    for field in expected:
        if field.name not in schema.names:
            raise ValueError(
                f"{where} has no column {field.name!r} (its columns: "
                f"{schema.names}); every table must hold the packed columns"
            )
        t = schema.field(field.name).type
        if not is_list_type(field.type):
            if t != field.type:
                raise TypeError(
                    f"{where}: column {field.name!r} is {t}, but {field.type} in the "
                    f"first table; cast it to one type first"
                )
            continue
        if not is_list_type(t) or t.value_type != field.type.value_type:
            raise TypeError(
                f"{where}: column {field.name!r} is {t}, but {field.type} in the "
                f"first table; every table must hold the same token type"
            )


def as_pad_values(
    schema: pa.Schema, names: Sequence[str], pad_value: Any, *, what: str = "pad_value"
) -> tuple[float, ...] | None:
    """The pad value of each column of ``names``, or None for no padding.

    ``pad_value`` is one number for every column or a mapping from column
    name to number (it may name columns that are not packed). Integer
    columns take integers (Python or numpy) in their range; floating-point
    columns also take finite floats, within their range (a value past it
    would be stored as inf) and rounded to their precision. Values come
    back as Python ints and floats. ``what`` names the option in messages;
    a ``separator`` given as one number is a token id, so not negative.
    """
    if pad_value is None:
        return None
    if isinstance(pad_value, Mapping):
        missing = [n for n in names if n not in pad_value]
        if missing:
            raise ValueError(
                f"{what} has no value for column(s) {missing}; give one for every packed column"
            )
        given = [pad_value[n] for n in names]
    else:
        given = [pad_value] * len(names)
    values = tuple(
        _pad_value(name, value_dtype(schema.field(name).type), value, what)
        for name, value in zip(names, given)
    )
    if what == "separator" and not isinstance(pad_value, Mapping) and values[0] < 0:
        raise ValueError(
            f"separator is {values[0]}, a negative token id; pass the tokenizer's "
            f"eos_token_id (or a dict of values by column, e.g. -100 for labels)"
        )
    return values


def _pad_value(name: str, dtype: np.dtype, value: Any, what: str = "pad_value") -> float:
    """``value`` checked against the values of column ``name`` (``dtype``)."""
    is_float = dtype.kind == "f"
    number: int | float
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        number = int(value)
    elif is_float and isinstance(value, (float, np.floating)):
        number = float(value)
        if not np.isfinite(number):
            verb = "pad with" if what == "pad_value" else "use"
            raise ValueError(f"{what} for {name!r} is {number}; {verb} a finite number")
    else:
        kind = "a number" if is_float else "an integer"
        raise TypeError(
            f"{what} for {name!r} must be {kind} (the column holds {dtype}), got {value!r}"
        )
    if is_float:
        info = np.finfo(dtype)
        lo, hi = float(info.min), float(info.max)
        # Past the largest value, a float rounds to it or to inf.
        try:
            with np.errstate(all="ignore"):
                fits = bool(np.isfinite(np.array(float(number), dtype=dtype)))
        except OverflowError:  # an int past float64
            fits = False
    else:
        iinfo = np.iinfo(dtype)
        lo, hi = int(iinfo.min), int(iinfo.max)
        fits = lo <= number <= hi
    if not fits:
        raise ValueError(
            f"{what} {_number(number)} does not fit column {name!r} of type "
            f"{dtype}; pick a value in [{lo}, {hi}]"
        )
    return number


def _number(value: float) -> str:
    """A number for a message, huge integers in scientific notation."""
    text = str(value)
    return text if len(text) <= 20 else f"{Decimal(value):.3e}"


def value_dtype(list_type: pa.DataType) -> np.dtype:
    """The numpy dtype of the values of a list type."""
    # Not DataType.to_pandas_dtype(): before pyarrow 15 it imports pandas.
    v = list_type.value_type
    kind = "f" if pa.types.is_floating(v) else "u" if pa.types.is_unsigned_integer(v) else "i"
    return np.dtype(f"{kind}{v.bit_width // 8}")


# ---------------------------------------------------------------------------
# Paths


def as_path(value: Any, name: str) -> str:
    """``value`` (a str or os.PathLike) as a str."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {value!r}")
    return os.fspath(value)


def as_optional_path(value: Any, name: str) -> str | None:
    """``None``, or ``value`` checked by :func:`as_path`."""
    return None if value is None else as_path(value, name)


def as_floating_dtype(value: Any, name: str, dtype_type: type) -> Any:
    """``value`` if it is a floating-point dtype of ``dtype_type`` (e.g. ``torch.dtype``)."""
    if not isinstance(value, dtype_type) or not getattr(value, "is_floating_point", False):
        raise TypeError(
            f"{name} must be a floating-point {dtype_type.__module__}.{dtype_type.__name__} "
            f"(e.g. torch.float32, the model's dtype), got {value!r}"
        )
    return value
