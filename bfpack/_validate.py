"""Checking and converting user input at the public boundary."""

import operator

import numpy as np

METHODS = ("bfd", "ffd", "concat")
LONG_DOCS = ("split", "truncate")
_INT64_MAX = np.iinfo(np.int64).max
_SEQ_LEN_MAX = np.iinfo(np.int32).max


def as_lengths(lengths, name="lengths"):
    """Return ``lengths`` as a contiguous 1-D int64 array (no copy if it is one).

    Accepts numpy arrays of any integer dtype, floats without a fraction,
    Python sequences, and pyarrow Arrays or ChunkedArrays. Negative values
    are checked later, in the same pass that counts pieces.
    """
    if _is_arrow(lengths):
        lengths = _arrow_to_numpy(lengths, name)
    arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one length per document), got an array of "
            f"shape {arr.shape}; flatten it with np.ravel() if that is meant")
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(
            f"{name} has dtype bool; pass token counts as integers, "
            f"e.g. {name}.astype(np.int64)")
    if kind not in "iuf":
        raise TypeError(
            f"{name} must hold integer token counts, got dtype {arr.dtype}; "
            f"convert it with .astype(np.int64)")
    if kind == "f":
        if arr.size and not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(
                f"{name}[{bad}] is {arr[bad]}; every length must be a finite "
                f"integer number of tokens")
        frac = np.flatnonzero(arr != np.floor(arr)) if arr.size else []
        if len(frac):
            bad = int(frac[0])
            raise ValueError(
                f"{name}[{bad}] = {arr[bad]} is not a whole number of tokens; "
                f"round it first (e.g. np.rint({name}).astype(np.int64))")
        # Compared in float64: 2**63 - 1 rounds up to 2**63 there, and a
        # narrower float type would overflow on the bound itself.
        if arr.size and np.float64(arr.max()) >= 2.0**63:
            raise ValueError(
                f"{name} holds values above the int64 range (max "
                f"{arr.max()}); they cannot be token counts")
    elif kind == "u" and arr.dtype.itemsize == 8 and arr.size \
            and arr.max() > _INT64_MAX:
        bad = int(np.argmax(arr > _INT64_MAX))
        raise ValueError(
            f"{name}[{bad}] = {arr[bad]} does not fit in int64; it cannot be a "
            f"token count")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _is_arrow(obj):
    return type(obj).__module__.startswith("pyarrow")


def _arrow_to_numpy(arr, name):
    import pyarrow as pa

    if isinstance(arr, (pa.Array, pa.ChunkedArray)):
        if arr.null_count:
            raise ValueError(
                f"{name} has {arr.null_count} null values; fill them "
                f"(e.g. pyarrow.compute.fill_null({name}, 0)) or drop them")
        if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
            raise TypeError(
                f"{name} must hold integer token counts, got Arrow type "
                f"{arr.type}; cast it with .cast(pyarrow.int64())")
        if isinstance(arr, pa.ChunkedArray):
            return arr.to_numpy()
        return arr.to_numpy(zero_copy_only=False)
    raise TypeError(
        f"{name} must be a 1-D array of integers, got {type(arr).__name__}")


def as_seq_len(seq_len):
    """Return ``seq_len`` as a Python int in ``[1, 2**31 - 1]``."""
    if isinstance(seq_len, (bool, np.bool_)):
        raise TypeError("seq_len must be an integer number of tokens, got a bool")
    try:
        value = operator.index(seq_len)
    except TypeError:
        raise TypeError(
            f"seq_len must be an integer number of tokens, got "
            f"{type(seq_len).__name__} {seq_len!r}; e.g. seq_len=2048") from None
    if not 1 <= value <= _SEQ_LEN_MAX:
        raise ValueError(
            f"seq_len must be between 1 and {_SEQ_LEN_MAX} tokens, got {value}")
    return value


def as_choice(value, name, choices):
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}; "
            f"got {value!r}")
    return value
