"""Built-in corpora for demonstrations: no download needed.

The standard library of the running Python is a real corpus that ships with
every interpreter. :func:`stdlib_table` tokenizes it in one of two ways:

- ``"words"`` (the default): a GPT-2-style pre-tokenization, words, numbers,
  runs of punctuation and of whitespace, a single leading space joined to
  the token after it, with ids from a hash of each token's bytes. The
  lengths resemble a real tokenizer's (about 3.3 bytes per token on code,
  where GPT-2's BPE gives 2-4) with no vocabulary to download. The tokens
  are exactly those of the regular expression
  ``rb" ?[A-Za-z\\x80-\\xff]+| ?[0-9]+| ?[^\\sA-Za-z0-9\\x80-\\xff]+|\\s+(?!\\S)|\\s+"``
  on the UTF-8 bytes: GPT-2's pattern without its English contractions,
  every non-ASCII byte counted as a letter. Built in well under a second
  with numpy.
- ``"bytes"``: one token per UTF-8 byte (byte-level models before any
  merge); lengths are file sizes, and the tokens decode back to the text.
"""

from __future__ import annotations

import os
import sysconfig

import numpy as np
import pyarrow as pa

from ._validate import as_choice, as_int

#: The ways :func:`stdlib_table` can tokenize.
TOKENIZERS = ("words", "bytes")

#: Hashed token ids fall in ``[0, HASH_VOCAB)``: GPT-2's vocabulary size,
#: so they fit in uint16.
HASH_VOCAB = 50257

# Byte classes of the split: a token is a run of one class, except that
# whitespace gives its last byte to the token after it.
_LETTER, _DIGIT, _PUNCT, _SPACE = 0, 1, 2, 3
_CLASS = np.full(256, _PUNCT, dtype=np.uint8)
_CLASS[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)] = _LETTER
_CLASS[0x80:] = _LETTER
_CLASS[np.frombuffer(b"0123456789", np.uint8)] = _DIGIT
_CLASS[np.frombuffer(b" \t\n\r\f\v", np.uint8)] = _SPACE

# Hashing: a polynomial hash of a token's bytes (wrapping uint64 arithmetic,
# the same on every machine and in every process, unlike Python's salted
# ``hash``), then a multiply-xorshift mix so that ``% vocab`` uses every bit.
_BASE = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def stdlib_files() -> list[str]:
    """Paths of the Python standard library's ``.py`` files, sorted.

    Third-party packages (``site-packages``) are left out, so the corpus
    depends only on the Python version.
    """
    root = sysconfig.get_paths()["stdlib"]
    paths: list[str] = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(
            d for d in subdirs if d not in ("site-packages", "dist-packages", "__pycache__")
        )
        paths.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))
    return paths


def _word_offsets(text: np.ndarray) -> np.ndarray:
    """Token boundaries of the word split of ``text`` (uint8): int64, 0 to ``len(text)``."""
    n = text.shape[0]
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    cls = _CLASS[text]
    start = np.empty(n, dtype=bool)
    start[0] = True
    np.not_equal(cls[1:], cls[:-1], out=start[1:])
    space = cls == _SPACE
    # The last byte of a whitespace run followed by a non-space starts a
    # token: alone (``\s+(?!\S)`` leaves it, then ``\s+`` takes it), or,
    # when it is a space, together with the token after it (`` ?\w+``).
    last = np.zeros(n, dtype=bool)
    np.logical_and(space[:-1], ~space[1:], out=last[:-1])
    start |= last
    start[1:] &= ~(last[:-1] & (text[:-1] == ord(" ")))
    return np.append(np.flatnonzero(start), n)


def _hash_ids(text: np.ndarray, offsets: np.ndarray, vocab: int = HASH_VOCAB) -> np.ndarray:
    """An id in ``[0, vocab)`` for each token ``text[offsets[i]:offsets[i + 1]]``.

    Equal tokens get equal ids, in every process; uint16 when ``vocab``
    allows, else uint32.
    """
    dtype = np.uint16 if vocab <= 1 << 16 else np.uint32
    starts = offsets[:-1]
    if starts.shape[0] == 0:
        return np.empty(0, dtype=dtype)
    sizes = np.diff(offsets)
    position = np.arange(text.shape[0]) - np.repeat(starts, sizes)
    powers = np.full(int(sizes.max()), _BASE, dtype=np.uint64)
    powers[0] = 1
    np.cumprod(powers, out=powers)
    h = np.add.reduceat((text.astype(np.uint64) + np.uint64(1)) * powers[position], starts)
    h ^= h >> np.uint64(31)
    h *= _MIX
    h ^= h >> np.uint64(29)
    return (h % np.uint64(vocab)).astype(dtype)


def _read(path: str) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8)


def stdlib_lengths(tokens: str = "words") -> np.ndarray:
    """Tokens per standard-library file, in the order of :func:`stdlib_files`.

    Parameters
    ----------
    tokens : {"words", "bytes"}
        How to tokenize (see :mod:`bfpack.corpus`); ``"bytes"`` only reads
        the file sizes.

    Returns
    -------
    numpy.ndarray
        int64 lengths, one per file.
    """
    tokens = as_choice(tokens, "tokens", TOKENIZERS)
    if tokens == "bytes":
        return np.array([os.path.getsize(p) for p in stdlib_files()], dtype=np.int64)
    return np.array([_word_offsets(_read(p)).shape[0] - 1 for p in stdlib_files()], dtype=np.int64)


def web_like_lengths(num_docs: int, seed: int = 0) -> np.ndarray:
    """Synthetic web-text lengths: ``lognormal(6, 1.3) + 1`` tokens.

    The shape (median ~400 tokens, a long tail past 10k) resembles crawled
    web corpora such as RefinedWeb.
    """
    rng = np.random.default_rng(seed)
    return (rng.lognormal(6.0, 1.3, num_docs) + 1).astype(np.int64)


def stdlib_table(tokens: str = "words", *, vocab: int = HASH_VOCAB) -> pa.Table:
    """The standard library as a table: ``path`` and ``input_ids``.

    Parameters
    ----------
    tokens : {"words", "bytes"}
        ``"words"``: GPT-2-style tokens with hashed ids in ``[0, vocab)``
        (uint16 for the default ``vocab``); ``"bytes"``: the files' UTF-8
        bytes as uint8 tokens. See :mod:`bfpack.corpus`.
    vocab : int
        Size of the id space of ``"words"`` (at least 1).

    Returns
    -------
    pyarrow.Table
        One row per file of :func:`stdlib_files`; ``input_ids`` is a list
        column. The same Python gives the same table, in every process.
    """
    tokens = as_choice(tokens, "tokens", TOKENIZERS)
    vocab = as_int(vocab, "vocab", lo=1, hi=1 << 32)
    paths = stdlib_files()
    texts = [_read(p) for p in paths]
    if tokens == "bytes":
        ids = texts
    else:
        ids = [_hash_ids(t, _word_offsets(t), vocab) for t in texts]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(i) for i in ids], out=offsets[1:])
    values = pa.array(np.concatenate(ids) if ids else np.empty(0, np.uint8))
    if offsets[-1] < 2**31:
        column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
    else:
        column = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pa.table({"path": paths, "input_ids": column})
