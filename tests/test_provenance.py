"""Provenance (``doc_index``, ``doc_offset``), carried per-document columns
and separators: round trips to the exact source tokens through
:func:`bfpack.pack_table`, the stream packer and :func:`bfpack.pack_parquet`.
(Dask and ``datasets`` are in their own modules' tests.)"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bfpack
from bfpack.cli import main as cli_main
from bfpack.parquet.manifest import MANIFEST
from bfpack.stream import TableStreamPacker

from tokens import rebuild, token_table

SEP = 99


def expected_docs(table, separator=None, indices=None, column="input_ids", seq_len=None):
    """``{doc_index: tokens}`` of the non-empty documents of ``table``
    (in ``indices`` order), each with the separator appended; cut to
    ``seq_len`` tokens when given (long_docs="truncate")."""
    values = table.column(column).to_pylist()
    rows = range(len(values)) if indices is None else indices
    out = {}
    for i, r in enumerate(rows):
        doc = values[r] or []
        if doc:
            doc = doc + ([] if separator is None else [separator])
            out[i] = doc if seq_len is None else doc[:seq_len]
    return out


@settings(deadline=None, max_examples=40)
@given(
    lengths=st.lists(st.integers(0, 20), max_size=25),
    seq_len=st.integers(1, 12),
    method=st.sampled_from(["bfd", "ffd", "concat"]),
    separator=st.sampled_from([None, 0, SEP]),
    shuffle=st.booleans(),
)
def test_pieces_rebuild_every_document(lengths, seq_len, method, separator, shuffle):
    table = token_table(lengths, doc_id=False)
    indices = None
    if shuffle:
        indices = np.random.default_rng(len(lengths)).permutation(len(lengths))
    out = bfpack.pack_table(
        table,
        seq_len,
        method=method,
        provenance=True,
        separator=separator,
        indices=indices,
        position_ids=True,
    )
    docs = expected_docs(table, separator, indices)
    assert rebuild(out) == docs
    labels = expected_docs(table, None if separator is None else separator, indices, "labels")
    assert rebuild(out, "labels") == labels  # the separator is the label of its slot
    # Positions restart at every piece, the separator's slot included.
    for pos, lens in zip(out["position_ids"].to_pylist(), out["seq_lengths"].to_pylist()):
        assert pos == [i for n in lens for i in range(n)]
    assert all(n <= seq_len for row in out["seq_lengths"].to_pylist() for n in row)


@settings(deadline=None, max_examples=20)
@given(
    lengths=st.lists(st.integers(0, 20), max_size=25),
    seq_len=st.integers(1, 12),
    separator=st.sampled_from([None, SEP]),
)
def test_truncate_keeps_each_documents_head(lengths, seq_len, separator):
    table = token_table(lengths, doc_id=False)
    out = bfpack.pack_table(
        table, seq_len, long_docs="truncate", provenance=True, separator=separator
    )
    assert rebuild(out) == expected_docs(table, separator, seq_len=seq_len)


@settings(deadline=None, max_examples=20)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=40),
    seq_len=st.integers(2, 16),
    window=st.integers(1, 60),
    separator=st.sampled_from([None, SEP]),
)
def test_stream_packer_numbers_documents_across_windows(lengths, seq_len, window, separator):
    table = token_table(lengths)
    spec = bfpack.OutputSpec.for_schema(
        table.schema, columns="input_ids", provenance=True, carry="doc_id", separator=separator
    )
    packer = TableStreamPacker(seq_len, spec, max_open=2, first_document=7)
    parts = [packer.step(w, last=last) for w, last in bfpack.stream.windows([table], spec, window)]
    out = pa.concat_tables(parts)
    want = expected_docs(table, separator)
    assert rebuild(out) == {d + 7: t for d, t in want.items()}
    for ids, docs in zip(out["doc_id"].to_pylist(), out["doc_index"].to_pylist()):
        assert ids == [d - 7 for d in docs]
    # Without the new options, the same rows as before (and no extra column).
    plain = bfpack.OutputSpec.for_schema(table.schema, columns="input_ids", separator=separator)
    again = TableStreamPacker(seq_len, plain, max_open=2)
    rows = [again.step(w, last=last) for w, last in bfpack.stream.windows([table], plain, window)]
    assert pa.concat_tables(rows).equals(out.select(["input_ids", "seq_lengths"]))


def test_carried_columns_keep_their_type_and_nulls():
    table = pa.table(
        {
            "input_ids": [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]],
            "url": ["a", None, "c", "d"],
            "n": pa.array([10, 11, 12, None], pa.int16()),
        }
    )
    out = bfpack.pack_table(table, 3, carry=["url", "n"], provenance=True)
    assert out.schema.field("url").type == pa.list_(pa.string())
    assert out.schema.field("n").type == pa.list_(pa.int16())
    assert out.column_names == ["input_ids", "seq_lengths", "doc_index", "doc_offset", "url", "n"]
    urls, ns = table["url"].to_pylist(), table["n"].to_pylist()
    for docs, u, n in zip(
        out["doc_index"].to_pylist(), out["url"].to_pylist(), out["n"].to_pylist()
    ):
        assert u == [urls[d] for d in docs] and n == [ns[d] for d in docs]
    # Carried without provenance: one value per piece all the same.
    alone = bfpack.pack_table(table, 3, carry="url")
    assert alone.column_names == ["input_ids", "seq_lengths", "url"]
    assert [len(u) for u in alone["url"].to_pylist()] == [
        len(s) for s in alone["seq_lengths"].to_pylist()
    ]


def test_per_document_columns_are_refused_by_default_naming_carry():
    table = pa.table({"input_ids": [[1, 2]], "url": ["a"]})
    with pytest.raises(TypeError, match=r"carry=\['url'\] \(--carry url\)"):
        bfpack.pack_table(table, 4, columns=["input_ids", "url"])


@pytest.mark.parametrize(
    ("carry", "error", "match"),
    [
        ("nope", ValueError, "'nope' is not in the table"),
        ("input_ids", ValueError, "packed and carried"),
        ("other", TypeError, "is a list column"),
        (["url", "url"], ValueError, "twice"),
        ([3], TypeError, "must be names"),
        (3, TypeError, "a column name or a list"),
        ("doc_index", ValueError, "clash"),
    ],
)
def test_bad_carry(carry, error, match):
    table = pa.table({"input_ids": [[1, 2]], "url": ["a"], "other": [[1.0]], "doc_index": [1]})
    with pytest.raises(error, match=match):
        bfpack.pack_table(table, 4, columns="input_ids", carry=carry, provenance=True)


def test_provenance_reserves_its_column_names_only_when_on():
    table = pa.table({"input_ids": [[1, 2]], "doc_offset": [[0, 1]]})
    assert bfpack.pack_table(table, 4).column_names[:2] == ["input_ids", "doc_offset"]
    with pytest.raises(ValueError, match="'doc_offset' would clash"):
        bfpack.pack_table(table, 4, provenance=True)


def test_separator_per_column_and_its_checks():
    table = pa.table(
        {
            "input_ids": pa.array([[1, 2], []], pa.list_(pa.int8())),
            "labels": [[1, 2], []],
        }
    )
    out = bfpack.pack_table(table, 8, separator={"input_ids": 9, "labels": -100})
    assert out.to_pydict() == {
        "input_ids": [[1, 2, 9]],
        "labels": [[1, 2, -100]],
        "seq_lengths": [[3]],
    }  # the empty document stays out: no separator-only piece
    with pytest.raises(ValueError, match="does not fit column 'input_ids' of type int8"):
        bfpack.pack_table(table, 8, separator=128)
    with pytest.raises(ValueError, match="negative token id"):
        bfpack.pack_table(table, 8, separator=-1)
    with pytest.raises(TypeError, match="separator for 'input_ids' must be an integer"):
        bfpack.pack_table(table, 8, separator=1.5)
    with pytest.raises(TypeError, match="separator for 'input_ids' must be an integer"):
        bfpack.pack_table(table, 8, separator=True)
    with pytest.raises(ValueError, match=r"separator has no value for column\(s\) \['labels'\]"):
        bfpack.pack_table(table, 8, separator={"input_ids": 9})


def test_separator_counts_in_the_length():
    # A document of seq_len tokens no longer fits with its separator: two pieces.
    table = pa.table({"input_ids": [[1, 2, 3, 4]]})
    out = bfpack.pack_table(table, 4, separator=0, provenance=True)
    assert out.to_pydict() == {
        "input_ids": [[1, 2, 3, 4], [0]],
        "seq_lengths": [[4], [1]],
        "doc_index": [[0], [0]],
        "doc_offset": [[0], [4]],
    }
    stats = bfpack.pack([5], 4).stats()
    assert stats.tokens == 5  # what the plan of the longer document counts


@pytest.fixture
def files(tmp_path):
    """Three Parquet files of one dataset (the middle one starting with an
    empty document) and their concatenated table."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    tables, first = [], 0
    for k in range(3):
        lengths = rng.integers(0, 40, 30)
        if k == 1:
            lengths[0] = 0
        t = token_table(lengths, first_doc=first)
        t = t.append_column("url", pa.array([f"u{first + i}" for i in range(len(t))]))
        pq.write_table(t, src / f"part-{k}.parquet")
        tables.append(t)
        first += len(t)
    return src, pa.concat_tables(tables)


def test_pack_parquet_round_trip_and_the_manifests_map(files, tmp_path):
    src, table = files
    m = bfpack.pack_parquet(
        src,
        tmp_path / "o",
        16,
        window_tokens=100,
        max_open=4,
        provenance=True,
        carry="url",
        separator=SEP,
        columns=["input_ids", "labels"],
    )
    out = pa.concat_tables(pq.read_table(tmp_path / "o" / s["file"]) for s in m["shards"])
    assert rebuild(out) == expected_docs(table, SEP)
    assert rebuild(out, "labels") == expected_docs(table, SEP, column="labels")
    assert [i["first_document"] for i in m["inputs"]] == [0, 30, 60]
    assert m["options"]["provenance"] is True
    assert m["options"]["carry"] == ["url"]
    assert m["options"]["separator"] == SEP
    # doc_index -> (file, row) through the manifest, and the carried URL agrees.
    firsts = [i["first_document"] for i in m["inputs"]]
    for docs, urls in zip(out["doc_index"].to_pylist(), out["url"].to_pylist()):
        for d, u in zip(docs, urls):
            f = int(np.searchsorted(firsts, d, side="right")) - 1
            row = d - firsts[f]
            assert pq.read_table(src / m["inputs"][f]["path"])["url"][row].as_py() == u
    v = bfpack.verify(tmp_path / "o", source=src)
    assert v.ok, v.problems


def test_default_manifest_records_the_options_off(files, tmp_path):
    src, _ = files
    m = bfpack.pack_parquet(src, tmp_path / "o", 16)
    assert (m["options"]["provenance"], m["options"]["carry"], m["options"]["separator"]) == (
        False,
        [],
        None,
    )
    assert "first_document" not in m["inputs"][0]


def test_cli_flags(files, tmp_path, capsys):
    src, table = files
    dst = tmp_path / "o"
    args = ["pack", str(src), str(dst), "--seq-len", "16", "--column", "input_ids"]
    flags = ["--provenance", "--carry", "url", "--carry", "doc_id", "--separator", str(SEP)]
    assert cli_main([*args, *flags, "-q"]) == 0
    m = json.loads((dst / MANIFEST).read_text())
    out = pa.concat_tables(pq.read_table(dst / s["file"]) for s in m["shards"])
    assert out.column_names[-2:] == ["url", "doc_id"]
    assert rebuild(out) == expected_docs(table, SEP)
    assert cli_main([*args, "--separator", "labels=1", "--overwrite", "-q"]) == 2
    assert "no value for column(s) ['input_ids']" in capsys.readouterr().err
