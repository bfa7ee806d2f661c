"""``bfpack.hf.pack_dataset``: Hugging Face datasets, packed offline on local data.

A Dataset must give exactly what ``pack_table`` gives on its rows in
*logical* order (after select / shuffle / filter), from a memory-mapped
Arrow file; an IterableDataset exactly what ``pack_parquet`` writes for the
same documents and windows.
"""

import itertools
import logging
import os
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations import need

pytestmark = pytest.mark.integration
datasets = need("datasets")

import bfpack  # noqa: E402
from bfpack.hf import pack_dataset  # noqa: E402

from tokens import check_packed, rebuild, token_table  # noqa: E402

SEQ_LEN = 64
COLUMNS = ["input_ids", "labels"]


@pytest.fixture(autouse=True)
def quiet_progress_bars():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def lengths_of(n=120, seed=0):
    lengths = np.random.default_rng(seed).integers(0, 3 * SEQ_LEN, n)
    lengths[::17] = 0
    return lengths


def source_table(lengths):
    """Traceable tokens (``input_ids``, ``labels``), a per-document ``doc_id``
    and a tokenizer's all-ones ``attention_mask``."""
    table = token_table(lengths, columns=COLUMNS)
    offsets = table.column("input_ids").chunk(0).offsets
    ones = pa.array(np.ones(int(lengths.sum()), dtype=np.int8))
    return table.append_column("attention_mask", pa.ListArray.from_arrays(offsets, ones))


def dataset_of(lengths):
    return datasets.Dataset(source_table(lengths))


def packed_table(packed):
    """A packed Dataset's rows as one pyarrow Table."""
    return packed.data.table


OPTIONS = [
    dict(),
    dict(position_ids=True, seed=4),
    dict(pad_value=0, long_docs="truncate", method="ffd"),
]


@pytest.mark.parametrize("options", OPTIONS, ids=["default", "positions-seed", "padded-ffd"])
def test_a_dataset_is_pack_table_of_its_rows(options):
    lengths = lengths_of()
    ds = dataset_of(lengths)
    packed = pack_dataset(ds, SEQ_LEN, columns=COLUMNS, **options)
    assert isinstance(packed, datasets.Dataset)
    expected = bfpack.pack_table(source_table(lengths), SEQ_LEN, columns=COLUMNS, **options)
    assert packed_table(packed).equals(expected)
    assert packed.column_names == expected.column_names
    # Memory-mapped from its own Arrow file, not held in memory.
    [cache] = packed.cache_files
    assert os.path.exists(cache["filename"])
    assert isinstance(packed.data, datasets.table.MemoryMappedTable)


@pytest.mark.parametrize(
    "transform",
    [
        lambda ds: ds.select([5, 3, 3, 0, 119, 64]),
        lambda ds: ds.shuffle(seed=7),
        lambda ds: ds.filter(lambda row: len(row["input_ids"]) % 3 != 0),
        lambda ds: (
            ds.shuffle(seed=1).filter(lambda row: len(row["input_ids"]) > 40).select(range(10, 50))
        ),
    ],
    ids=["select", "shuffle", "filter", "chained"],
)
def test_the_logical_row_order_is_packed(transform):
    lengths = lengths_of()
    view = transform(dataset_of(lengths))
    assert view._indices is not None  # a mapping over the untouched storage
    logical = np.array([len(x) for x in view["input_ids"]], dtype=np.int64)
    packed = pack_dataset(view, SEQ_LEN, columns=COLUMNS, position_ids=True, seed=2)
    # The tokens of the view, no more (the storage may hold more).
    assert sum(map(sum, packed["seq_lengths"])) == logical.sum() <= lengths.sum()
    # Exactly the packing of the rows taken in that order...
    rows = pa.table({c: view.data.table.column(c) for c in COLUMNS}).take(
        pa.array(view._indices.column(0).to_numpy().astype(np.int64))
    )
    expected = bfpack.pack_table(rows, SEQ_LEN, columns=COLUMNS, position_ids=True, seed=2)
    assert packed_table(packed).equals(expected)
    # ...and of the materialized view.
    flat = pack_dataset(view.flatten_indices(), SEQ_LEN, columns=COLUMNS, position_ids=True, seed=2)
    assert packed_table(flat).equals(expected)


def test_provenance_round_trip_in_the_logical_order():
    view = dataset_of(lengths_of()).shuffle(seed=3).select(range(10, 90))
    packed = pack_dataset(
        view, SEQ_LEN, columns=COLUMNS, provenance=True, carry="doc_id", separator=9
    )
    out = packed_table(packed)
    # dataset[doc_index] is the document: its tokens, then the separator.
    want = {i: ids + [9] for i, ids in enumerate(view["input_ids"]) if ids}
    assert rebuild(out) == want
    ids = list(view["doc_id"])
    pairs = zip(out["doc_id"].to_pylist(), out["doc_index"].to_pylist())
    assert all(i == ids[d] for r in pairs for i, d in zip(*r))
    streamed = pack_dataset(
        view.to_iterable_dataset(),
        SEQ_LEN,
        columns=COLUMNS,
        provenance=True,
        carry="doc_id",
        separator=9,
        window_tokens=500,
    )
    rows = pa.Table.from_pylist(list(streamed))
    assert list(streamed.features)[-3:] == ["doc_index", "doc_offset", "doc_id"]
    assert rebuild(rows) == want


def test_an_attention_mask_is_left_out_once():
    ds = dataset_of(lengths_of(20))
    dd = datasets.DatasetDict(train=ds, test=ds.select([1, 2]))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        packed = pack_dataset(ds, SEQ_LEN)
    assert [str(w.message).split(":")[0] for w in seen] == ["column 'attention_mask' is not packed"]
    assert packed.column_names == ["input_ids", "labels", "seq_lengths"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        bfpack._warnings._SHOWN.clear()
        pack_dataset(dd, SEQ_LEN)  # two splits, one place: one line
    assert len(seen) == 1
    named = pack_dataset(ds, SEQ_LEN, columns=["input_ids", "attention_mask"])
    assert named.column_names == ["input_ids", "attention_mask", "seq_lengths"]


def test_from_parquet_writes_beside_its_cache_files(tmp_path):
    lengths = lengths_of()
    pq.write_table(source_table(lengths), tmp_path / "docs.parquet")
    ds = datasets.Dataset.from_parquet(str(tmp_path / "docs.parquet"), cache_dir=str(tmp_path))
    packed = pack_dataset(ds, SEQ_LEN, columns=COLUMNS)
    [cache] = packed.cache_files
    assert os.path.dirname(cache["filename"]) == os.path.dirname(ds.cache_files[0]["filename"])
    check_packed(packed_table(packed), lengths, SEQ_LEN, columns=COLUMNS)
    # Packing the same input the same way again replaces that file.
    again = pack_dataset(ds, SEQ_LEN, columns=COLUMNS)
    assert again.cache_files == packed.cache_files
    assert packed_table(again).equals(packed_table(packed))


def test_cache_file_name(tmp_path):
    lengths = lengths_of(30)
    path = tmp_path / "packed.arrow"
    packed = pack_dataset(dataset_of(lengths), SEQ_LEN, columns=COLUMNS, cache_file_name=path)
    assert packed.cache_files == [{"filename": str(path)}]
    assert sorted(os.listdir(tmp_path)) == ["packed.arrow"]  # no temporary file left
    reopened = datasets.Dataset.from_file(str(path))
    assert packed_table(reopened).equals(packed_table(packed))


def test_many_record_batches(monkeypatch, tmp_path):
    # Written a few rows at a time; the file reads back as the whole packing.
    monkeypatch.setattr(bfpack.hf, "_BATCH_TOKENS", 3 * SEQ_LEN)
    lengths = lengths_of()
    packed = pack_dataset(dataset_of(lengths), SEQ_LEN, columns=COLUMNS, seed=1)
    with pa.memory_map(packed.cache_files[0]["filename"]) as source:
        batches = pa.ipc.open_stream(source).read_all().to_batches()
    assert len(batches) > 10 and {b.num_rows for b in batches[:-1]} == {3}
    expected = bfpack.pack_table(source_table(lengths), SEQ_LEN, columns=COLUMNS, seed=1)
    assert packed_table(packed).equals(expected)


def test_an_empty_dataset(tmp_path):
    ds = dataset_of(lengths_of(5)).select([])
    packed = pack_dataset(ds, SEQ_LEN, columns=COLUMNS)
    assert packed.num_rows == 0
    assert packed.column_names == ["input_ids", "labels", "seq_lengths"]


def test_a_dataset_dict_split_by_split(tmp_path):
    a, b = lengths_of(40, 1), lengths_of(25, 2)
    dd = datasets.DatasetDict(train=dataset_of(a), test=dataset_of(b))
    names = {"train": tmp_path / "train.arrow", "test": tmp_path / "test.arrow"}
    packed = pack_dataset(dd, SEQ_LEN, columns=COLUMNS, cache_file_name=names)
    assert isinstance(packed, datasets.DatasetDict) and list(packed) == ["train", "test"]
    for split, lengths in (("train", a), ("test", b)):
        assert packed[split].cache_files == [{"filename": str(names[split])}]
        check_packed(packed_table(packed[split]), lengths, SEQ_LEN, columns=COLUMNS)


# ---------------------------------------------------------------------------
# IterableDataset


@pytest.fixture(scope="module")
def parquet_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-stream")
    lengths = lengths_of(600, 3)
    pq.write_table(source_table(lengths), root / "docs.parquet", row_group_size=50)
    return root, lengths


def pack_parquet_rows(path, out, seed, window):
    manifest = bfpack.pack_parquet(
        path, out, SEQ_LEN, columns=COLUMNS, seed=seed, window_tokens=window, overwrite=True
    )
    return manifest, pa.concat_tables(pq.read_table(out / s["file"]) for s in manifest["shards"])


@pytest.mark.parametrize(("seed", "num_shards"), [(None, 1), (5, 1), (5, 3)])
def test_an_iterable_dataset_is_pack_parquet(parquet_source, seed, num_shards):
    """Each input shard is packed as pack_parquet packs its documents alone."""
    root, lengths = parquet_source
    window = 3000
    ds = datasets.Dataset.from_parquet(str(root / "docs.parquet"), cache_dir=str(root / "hf"))
    stream = ds.to_iterable_dataset(num_shards=num_shards)
    expected = []
    for k in range(num_shards):
        part = root / f"part-{num_shards}-{k}.parquet"
        pq.write_table(ds.shard(num_shards, k, contiguous=True).data.table, part)
        manifest, rows = pack_parquet_rows(
            part, root / f"packed-{seed}-{num_shards}-{k}", seed, window
        )
        assert len(manifest["shards"]) > 1  # several windows, sequences carried between them
        expected.append(rows)
    packed = pack_dataset(stream, SEQ_LEN, columns=COLUMNS, seed=seed, window_tokens=window)
    assert isinstance(packed, datasets.IterableDataset)
    assert packed.num_shards == num_shards
    assert list(packed.features) == ["input_ids", "labels", "seq_lengths"]
    rows = list(packed)
    assert rows == pa.concat_tables(expected).to_pylist()
    table = pa.Table.from_pylist(rows, schema=expected[0].schema)
    check_packed(table, lengths, SEQ_LEN, columns=COLUMNS, rows="any")


def sharded_stream(num_shards, n=60, seed=4):
    """Documents of ``lengths_of(n, seed)`` as an IterableDataset of ``num_shards`` shards."""
    lengths = lengths_of(n, seed)
    stream = dataset_of(lengths).to_iterable_dataset(num_shards=num_shards)
    return stream, lengths


def covered(rows, packed, lengths):
    """Assert that ``rows`` hold every token of documents ``lengths`` exactly once."""
    table = pa.Table.from_pylist(rows, schema=packed.features.arrow_schema)
    check_packed(table, lengths, SEQ_LEN, columns=COLUMNS, rows="any")


def loaded(dataset, log):
    """The rows of a DataLoader of 2 workers over ``dataset``, and what
    ``datasets`` logged in the workers (a file: they are other processes)."""
    torch = need("torch")
    logger = logging.getLogger("datasets")
    handler = logging.FileHandler(log)
    logger.addHandler(handler)
    try:
        rows = list(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2))
    finally:
        logger.removeHandler(handler)
        handler.close()
    return rows, log.read_text()


def test_dataloader_workers_pack_their_own_shards(tmp_path):
    stream, lengths = sharded_stream(4)
    packed = pack_dataset(stream, SEQ_LEN, columns=COLUMNS, window_tokens=500)
    assert packed.num_shards == 4
    rows, log = loaded(packed, tmp_path / "log")
    assert "Too many dataloader workers" not in log
    covered(rows, packed, lengths)
    # Worker w packs input shards w and w + 2 (datasets' round robin), each
    # on its own: the rows are those of the shards packed apart, in any order.
    apart = [
        list(pack_dataset(stream.shard(4, k), SEQ_LEN, columns=COLUMNS, window_tokens=500))
        for k in range(4)
    ]
    assert sorted(map(str, rows)) == sorted(str(r) for part in apart for r in part)


@pytest.mark.parametrize("num_shards", [4, 3])
def test_ranks_pack_disjoint_parts(num_shards):
    from datasets.distributed import split_dataset_by_node

    stream, lengths = sharded_stream(num_shards)
    packed = pack_dataset(stream, SEQ_LEN, columns=COLUMNS, window_tokens=500)
    ranks = [list(split_dataset_by_node(packed, rank, world_size=2)) for rank in (0, 1)]
    assert all(ranks)
    covered(ranks[0] + ranks[1], packed, lengths)
    assert ranks == [list(split_dataset_by_node(packed, r, world_size=2)) for r in (0, 1)]
    if num_shards == 4:  # whole shards by rank: rank r packs input shards r and r + 2
        for rank in (0, 1):
            mine = stream.shard(2, rank, contiguous=False)
            assert ranks[rank] == list(
                pack_dataset(mine, SEQ_LEN, columns=COLUMNS, window_tokens=500)
            )


def test_a_packed_stream_resumes_from_its_state_dict():
    stream, _ = sharded_stream(3)
    packed = pack_dataset(stream, SEQ_LEN, columns=COLUMNS, window_tokens=500)
    rows = list(packed)
    head = list(itertools.islice(iter(packed), 20))
    again = pack_dataset(stream, SEQ_LEN, columns=COLUMNS, window_tokens=500)
    again.load_state_dict(packed.state_dict())
    assert head + list(again) == rows


def test_the_first_row_of_a_stream_comes_after_a_small_window():
    """By default a stream's window is 256 sequences (here 16,384 tokens), not
    2**24 tokens: the first row comes after a few thousand documents."""
    read = []

    def documents():
        for i in range(40_000):  # 2.6M tokens: far less than 2**24
            read.append(i)
            yield {"input_ids": [i] * SEQ_LEN}
        raise AssertionError("the whole stream was read before the first row")

    features = datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))})
    packed = pack_dataset(
        datasets.IterableDataset.from_generator(documents, features=features), SEQ_LEN
    )
    first = next(iter(packed))
    assert first["seq_lengths"] == [SEQ_LEN]
    # One window of 256 documents, read in batches of _READ_ROWS.
    assert len(read) <= 256 + bfpack.hf._READ_ROWS


def test_a_numpy_formatted_stream_is_formatted_on_arrow_batches():
    stream, lengths = sharded_stream(2)
    packed = pack_dataset(stream, SEQ_LEN, columns=COLUMNS, window_tokens=500)
    # Arrow tables all the way: numpy and torch formatting convert Arrow
    # batches, not Python lists row by row (50x slower).
    assert packed._ex_iterable.iter_arrow is not None
    rows = list(packed)
    as_numpy = list(packed.with_format("numpy"))
    assert len(as_numpy) == len(rows)
    for row, array in zip(rows, as_numpy):
        assert list(array) == list(row)
        for name, values in row.items():
            assert isinstance(array[name], np.ndarray)
            assert array[name].tolist() == values


def test_an_iterable_dataset_is_lazy_and_checked_at_once():
    calls = []

    def documents():
        calls.append(1)
        for n in (5, 70, 3, 64):
            yield {"input_ids": list(range(n))}

    features = datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))})
    stream = datasets.IterableDataset.from_generator(documents, features=features)
    packed = pack_dataset(stream, SEQ_LEN, position_ids=True)
    assert calls == []  # nothing read yet
    rows = list(packed)
    assert calls == [1]
    assert sum(map(sum, (r["seq_lengths"] for r in rows))) == 5 + 70 + 3 + 64
    assert all(max(r["seq_lengths"]) <= SEQ_LEN for r in rows)
    with pytest.raises(ValueError, match="method must be one of"):
        pack_dataset(stream, SEQ_LEN, method="worst")
    with pytest.raises(ValueError, match="window_tokens must be >= 1"):
        pack_dataset(stream, SEQ_LEN, window_tokens=0)
    assert calls == [1]


def empty_documents_between_others():
    """Lengths with empty documents, in the first batch read and later ones."""
    return np.array([3, 0, 5, 70, 0, 0, 12, 1, 0, 64, 9, 0])


@pytest.mark.parametrize("token_type", ["int64", "int32"])
def test_empty_documents_of_a_generator_with_features(monkeypatch, token_type):
    monkeypatch.setattr(bfpack.hf, "_READ_ROWS", 4)  # several batches, some all empty
    lengths = empty_documents_between_others()
    table = token_table(lengths, columns=("input_ids",)).select(["input_ids"])
    table = table.cast(pa.schema([("input_ids", pa.list_(getattr(pa, token_type)()))]))

    def documents():
        yield from table.to_pylist()

    features = datasets.Features({"input_ids": datasets.List(datasets.Value(token_type))})
    stream = datasets.IterableDataset.from_generator(documents, features=features)
    packed = pack_dataset(stream, SEQ_LEN)
    expected = pack_dataset(datasets.Dataset(table), SEQ_LEN)
    assert list(packed) == expected.to_list()
    assert packed.features == expected.features


def test_empty_documents_after_map(monkeypatch):
    monkeypatch.setattr(bfpack.hf, "_READ_ROWS", 4)
    lengths = empty_documents_between_others()
    table = token_table(lengths, columns=("input_ids",)).select(["input_ids"])
    mapped = datasets.Dataset(table).to_iterable_dataset().map(lambda row: row)
    assert mapped.features is None
    packed = pack_dataset(mapped, SEQ_LEN)
    assert list(packed) == pack_dataset(datasets.Dataset(table), SEQ_LEN).to_list()


def test_an_iterable_dataset_without_features(monkeypatch):
    lengths = lengths_of(30)  # empty documents too
    ds = dataset_of(lengths).to_iterable_dataset()
    mapped = ds.map(lambda row: row)  # features unknown after map
    assert mapped.features is None
    packed = pack_dataset(mapped, SEQ_LEN, columns=COLUMNS)
    expected = bfpack.pack_table(source_table(lengths), SEQ_LEN, columns=COLUMNS)
    assert list(packed) == expected.to_pylist()

    def documents(lengths):
        for n in lengths:
            yield {"input_ids": list(range(n))}

    empty = datasets.IterableDataset.from_generator(documents, gen_kwargs={"lengths": []})
    with pytest.raises(ValueError, match="no features and no rows"):
        pack_dataset(empty, SEQ_LEN)

    monkeypatch.setattr(bfpack.hf, "_READ_ROWS", 4)
    stream = datasets.IterableDataset.from_generator(
        documents, gen_kwargs={"lengths": [0, 0, 0, 0, 5]}
    )
    with pytest.raises(ValueError, match=r"only empty lists in column\(s\) \['input_ids'\]"):
        pack_dataset(stream, SEQ_LEN)


def test_an_iterable_dataset_dict():
    dd = datasets.IterableDatasetDict(
        train=dataset_of(lengths_of(30, 1)).to_iterable_dataset(),
        test=dataset_of(lengths_of(20, 2)).to_iterable_dataset(),
    )
    packed = pack_dataset(dd, SEQ_LEN, columns=COLUMNS, window_tokens=500)
    assert isinstance(packed, datasets.IterableDatasetDict)
    for split, seed in (("train", 1), ("test", 2)):
        rows = list(packed[split])
        table = pa.Table.from_pylist(rows, schema=packed[split].features.arrow_schema)
        check_packed(table, lengths_of(30 if seed == 1 else 20, seed), SEQ_LEN, columns=COLUMNS)


# ---------------------------------------------------------------------------
# Errors


def test_pack_table_of_a_dataset_points_here():
    ds = dataset_of(lengths_of(5))
    for obj in (ds, ds.data):
        with pytest.raises(TypeError, match=r"bfpack\.hf\.pack_dataset"):
            bfpack.pack_table(obj, SEQ_LEN)


def test_bad_arguments(tmp_path):
    ds = dataset_of(lengths_of(5))
    stream = ds.to_iterable_dataset()
    with pytest.raises(TypeError, match="dataset must be a datasets.Dataset.*pack_table"):
        pack_dataset(source_table(lengths_of(5)), SEQ_LEN)
    with pytest.raises(ValueError, match="window_tokens and max_open apply to an IterableDataset"):
        pack_dataset(ds, SEQ_LEN, window_tokens=100)
    with pytest.raises(ValueError, match="window_tokens and max_open apply"):
        pack_dataset(ds, SEQ_LEN, max_open=3)
    with pytest.raises(ValueError, match="cache_file_name applies to a Dataset"):
        pack_dataset(stream, SEQ_LEN, cache_file_name=tmp_path / "x.arrow")
    with pytest.raises(TypeError, match="cache_file_name must be one path"):
        pack_dataset(ds, SEQ_LEN, cache_file_name={"train": "x.arrow"})
    with pytest.raises(TypeError, match="cache_file_name must be a path"):
        pack_dataset(ds, SEQ_LEN, cache_file_name=3)
    dd = datasets.DatasetDict(train=ds)
    with pytest.raises(TypeError, match="dict of paths by split"):
        pack_dataset(dd, SEQ_LEN, cache_file_name="x.arrow")
    with pytest.raises(ValueError, match=r"names splits \['valid'\]"):
        pack_dataset(dd, SEQ_LEN, cache_file_name={"valid": "x.arrow"})
    with pytest.raises(ValueError, match="seq_len must be between 1"):
        pack_dataset(ds, 0)
    with pytest.raises(TypeError, match="max_open must be an integer"):
        pack_dataset(stream, SEQ_LEN, max_open="many")
    assert list(tmp_path.iterdir()) == []  # nothing written by a failed call


def test_a_failed_write_leaves_no_file(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bfpack.hf, "assemble", broken)
    path = tmp_path / "packed.arrow"
    with pytest.raises(RuntimeError, match="disk full"):
        pack_dataset(dataset_of(lengths_of(10)), SEQ_LEN, columns=COLUMNS, cache_file_name=path)
    assert list(tmp_path.iterdir()) == []
