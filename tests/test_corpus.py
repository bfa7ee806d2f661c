"""The built-in corpus: its word split against the regular expression it
stands for, its hashed ids, its tables."""

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bfpack import corpus

from naive import naive_words


def words(text):
    offsets = corpus._word_offsets(np.frombuffer(text, dtype=np.uint8))
    return [text[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


# Every byte class the split tells apart, and the bytes where it is easy to
# get wrong: the space (joins the next token) against other whitespace.
ALPHABET = list(b"  \t\n\r\x0b\x0caZ_09.(')\x80\xe9\xff")


@given(st.lists(st.sampled_from(ALPHABET), max_size=60).map(bytes))
def test_word_split_is_the_regular_expression(text):
    assert words(text) == naive_words(text)


@given(st.binary(max_size=200))
def test_word_split_of_any_bytes(text):
    assert words(text) == naive_words(text)


def test_word_split_of_code():
    text = b"def f(x):\n    return  x + 10  # caf\xc3\xa9\n\n"
    assert words(text) == [
        b"def", b" f", b"(", b"x", b"):", b"\n   ", b" return", b" ", b" x", b" +",
        b" 10", b" ", b" #", b" caf\xc3\xa9", b"\n\n",
    ]  # fmt: skip
    # And a real file of the standard library, whole.
    with open(corpus.stdlib_files()[0], "rb") as f:
        text = f.read()
    assert words(text) == naive_words(text)


def hashed(tokens, vocab=corpus.HASH_VOCAB):
    text = b"".join(tokens)
    offsets = np.cumsum([0, *map(len, tokens)])
    return corpus._hash_ids(np.frombuffer(text, dtype=np.uint8), offsets, vocab)


def test_equal_tokens_get_equal_ids_in_range():
    tokens = [b"def", b" f", b"def", b"fed", b"\n", b" f", b"x" * 300, b"d"]
    ids = hashed(tokens)
    assert ids.dtype == np.uint16 and ids.max() < corpus.HASH_VOCAB
    assert ids[0] == ids[2] and ids[1] == ids[5]
    assert len(set(ids[[0, 1, 3, 4, 6, 7]].tolist())) == 6  # no collision among these
    assert hashed([b"def"], vocab=7)[0] < 7
    assert hashed([b"def"], vocab=1 << 20).dtype == np.uint32
    assert hashed([]).shape == (0,)


def test_ids_are_the_same_in_every_process():
    # Unlike Python's hash(), salted per process (PYTHONHASHSEED).
    code = (
        "import numpy as np; from bfpack import corpus; "
        "t = np.frombuffer(b'import os  # x', np.uint8); "
        "print(corpus._hash_ids(t, corpus._word_offsets(t)).tolist())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert runs == {str(hashed([b"import", b" os", b" ", b" #", b" x"]).tolist()) + "\n"}


def test_stdlib_table_and_lengths_agree():
    words_table = corpus.stdlib_table()
    assert words_table.column_names == ["path", "input_ids"]
    assert words_table["path"].to_pylist() == corpus.stdlib_files()
    assert words_table.schema.field("input_ids").type == pa.list_(pa.uint16())
    lengths = np.diff(words_table["input_ids"].combine_chunks().offsets.to_numpy())
    assert np.array_equal(lengths, corpus.stdlib_lengths())
    # Byte tokens: the files themselves.
    bytes_table = corpus.stdlib_table("bytes")
    assert bytes_table.schema.field("input_ids").type == pa.list_(pa.uint8())
    assert np.array_equal(
        np.diff(bytes_table["input_ids"].combine_chunks().offsets.to_numpy()),
        corpus.stdlib_lengths("bytes"),
    )
    with open(corpus.stdlib_files()[5], "rb") as f:
        assert bytes(bytes_table["input_ids"][5].values.to_numpy()) == f.read()
    # About 3.3 bytes a token on code, as with real tokenizers.
    ratio = corpus.stdlib_lengths("bytes").sum() / lengths.sum()
    assert 2.5 < ratio < 5


def test_bad_options():
    with pytest.raises(ValueError, match="tokens must be one of 'words', 'bytes'"):
        corpus.stdlib_table("bpe")
    with pytest.raises(ValueError, match="tokens"):
        corpus.stdlib_lengths("chars")
    with pytest.raises(ValueError, match="vocab"):
        corpus.stdlib_table(vocab=0)
    with pytest.raises(TypeError, match="vocab"):
        corpus.stdlib_table(vocab=2.5)
