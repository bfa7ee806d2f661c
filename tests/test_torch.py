"""``bfpack.torch``: the collator against token-by-token references
(``tests/naive.py``), and the memory-mapped dataset over packed shards."""

import json
import os
import pickle
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations import need

pytestmark = pytest.mark.integration
torch = need("torch")

import bfpack  # noqa: E402
from bfpack.parquet import MANIFEST  # noqa: E402
from bfpack.torch import (  # noqa: E402
    IGNORE_INDEX,
    LAYOUTS,
    PackedCollator,
    PackedDataset,
    _dataset,
)

from naive import naive_padded, naive_padding_free  # noqa: E402
from tokens import token_table  # noqa: E402

# ---------------------------------------------------------------------------
# PackedCollator


@st.composite
def packed_rows(draw, seq_len=12):
    """Packed rows as datasets, PackedDataset or a user give them: lists, numpy
    arrays of any integer type, tensors; with or without labels and padding."""
    rows = []
    container = draw(st.sampled_from(["list", "numpy", "tensor"]))
    with_labels = draw(st.booleans())
    padded = draw(st.booleans())
    for _ in range(draw(st.integers(1, 4))):
        pieces = draw(st.lists(st.integers(1, seq_len), min_size=1, max_size=4))
        while sum(pieces) > seq_len:
            pieces.pop()
        pieces = pieces or [draw(st.integers(1, seq_len))]
        n = sum(pieces) + (seq_len - sum(pieces) if padded else 0)
        ids = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
        row = {"input_ids": ids, "seq_lengths": pieces, "other": "ignored"}
        if with_labels:
            row["labels"] = [x if x % 3 else IGNORE_INDEX for x in ids]  # e.g. a prompt mask
        if container == "numpy":
            row = {k: np.asarray(v, dtype=np.int32) if k != "other" else v for k, v in row.items()}
        elif container == "tensor":
            row = {k: torch.tensor(v) if k != "other" else v for k, v in row.items()}
        rows.append(row)
    return rows


@given(packed_rows(), st.booleans())
def test_padding_free_is_the_reference(rows, document_ids):
    batch = PackedCollator(document_ids=document_ids)(rows)
    ref = naive_padding_free(rows)
    keys = ["input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"]
    keys += ["max_length_q", "max_length_k"] + (["document_ids"] if document_ids else [])
    # no attention_mask, no extra key unless asked
    assert list(batch) == [*keys, "num_items_in_batch", "use_cache"]
    assert batch["use_cache"] is False
    for key in ("input_ids", "labels", "position_ids") + (
        ("document_ids",) if document_ids else ()
    ):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (1, len(ref[key]))
        assert batch[key][0].tolist() == ref[key]
    for key in ("cu_seq_lens_q", "cu_seq_lens_k"):
        assert batch[key].dtype == torch.int32 and batch[key].tolist() == ref["cu_seqlens"]
    assert batch["max_length_q"] == batch["max_length_k"] == ref["max_seqlen"]
    assert type(batch["max_length_q"]) is int


@given(packed_rows(), st.sampled_from([None, 12, 20]), st.booleans(), st.booleans())
def test_padded_is_the_reference(rows, seq_len, mask, document_ids):
    collate = PackedCollator(
        "padded", seq_len=seq_len, pad_token_id=7, attention_mask=mask, document_ids=document_ids
    )
    batch = collate(rows)
    length = seq_len or max(sum(int(n) for n in r["seq_lengths"]) for r in rows)
    ref = naive_padded(rows, length, 7)
    keys = ["input_ids", "labels", "position_ids"]
    keys += (["attention_mask"] if mask else []) + (["document_ids"] if document_ids else [])
    assert list(batch) == [*keys, "num_items_in_batch", "use_cache"]
    for key in ("input_ids", "labels", "position_ids") + (
        ("document_ids",) if document_ids else ()
    ):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (len(rows), length)
        assert batch[key].tolist() == ref[key]
    if mask:
        m = batch["attention_mask"]
        assert m.shape == (len(rows), 1, length, length) and m.dtype == torch.float32
        assert set(m.unique().tolist()) <= {0.0, torch.finfo(torch.float32).min}
        assert (m[:, 0] == 0).tolist() == ref["allowed"]


def test_mask_dtype():
    rows = [{"input_ids": [1, 2, 3], "seq_lengths": [2, 1]}]
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        m = PackedCollator("padded", attention_mask=True, mask_dtype=dtype)(rows)["attention_mask"]
        assert m.dtype == dtype
        assert m[0, 0].tolist() == [
            [0, torch.finfo(dtype).min, torch.finfo(dtype).min],
            [0, 0, torch.finfo(dtype).min],
            [torch.finfo(dtype).min, torch.finfo(dtype).min, 0],
        ]


def test_rows_of_pack_table_and_pack_dataset():
    table = token_table(np.array([5, 30, 2, 17, 9, 40]), columns=("input_ids", "labels"))
    packed = bfpack.pack_table(table, 32, columns=["input_ids", "labels"], pad_value=0)
    rows = packed.to_pylist()
    batch = PackedCollator()(rows)
    assert batch["input_ids"][0].tolist() == naive_padding_free(rows)["input_ids"]
    datasets = need("datasets")
    from bfpack.hf import pack_dataset

    ds = pack_dataset(datasets.Dataset(table), 32, columns=["input_ids", "labels"], pad_value=0)
    for fmt in (None, "numpy", "torch"):
        formatted = ds.with_format(fmt)
        got = PackedCollator("padded", seq_len=32)([formatted[i] for i in range(len(ds))])
        ref = PackedCollator("padded", seq_len=32)(rows)
        assert all(torch.equal(got[k], ref[k]) for k in ref if k != "use_cache")


def test_use_cache_false_is_in_the_batch_unless_told():
    # With a cache, transformers' SDPA and eager attention ignore the
    # restarting positions: model(**batch) must turn it off by itself.
    rows = [{"input_ids": [1, 2, 3], "seq_lengths": [2, 1]}]
    for layout in LAYOUTS:
        assert PackedCollator(layout)(rows)["use_cache"] is False
        assert "use_cache" not in PackedCollator(layout, disable_cache=False)(rows)
    assert repr(PackedCollator(disable_cache=False)).endswith("disable_cache=False)")
    with pytest.raises(TypeError, match="disable_cache"):
        PackedCollator(disable_cache=1)


def test_rows_a_trainer_stripped_name_the_trainers_fix():
    # transformers' Trainer drops the columns the model's forward does not take.
    with pytest.raises(ValueError, match=r"TrainingArguments\(remove_unused_columns=False\)"):
        PackedCollator()([{"input_ids": [1, 2, 3]}])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(layout="flat"), ValueError, "layout must be one of 'padding_free', 'padded'"),
        (dict(attention_mask=True), ValueError, "a padding-free batch has no attention mask"),
        (dict(seq_len=8), ValueError, "seq_len applies to layout='padded'"),
        (dict(layout="padded", mask_dtype=torch.float16), ValueError, "mask_dtype applies"),
        (
            dict(layout="padded", attention_mask=True, mask_dtype=torch.int32),
            TypeError,
            "mask_dtype must be a floating-point torch.dtype",
        ),
        (dict(layout="padded", seq_len=0), ValueError, "seq_len must be >= 1"),
        (dict(layout="padded", pad_token_id=1.5), TypeError, "pad_token_id must be an integer"),
        (dict(layout="padded", pad_token_id=2**70), ValueError, "pad_token_id must be between"),
        (dict(layout="padded", pad_token_id=-(2**63) - 1), ValueError, "pad_token_id must be"),
        (dict(document_ids=1), TypeError, "document_ids must be True or False"),
        (dict(provenance="yes"), TypeError, "provenance must be True or False"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        PackedCollator(**kwargs)


@pytest.mark.parametrize(
    "rows, error, match",
    [
        ([], ValueError, "a batch must be a non-empty list of packed rows"),
        ("input_ids", ValueError, "a batch must be a non-empty list"),
        ([[1, 2, 3]], TypeError, "row 0 is a list; a batch is a list of packed rows"),
        ([{"input_ids": [1, 2]}], ValueError, r"row 0 has no 'seq_lengths'.*pack the documents"),
        ([{"seq_lengths": [2]}], ValueError, "row 0 has no 'input_ids'"),
        (
            [{"input_ids": [1.0, 2.0], "seq_lengths": [2]}],
            TypeError,
            "input_ids must hold integers",
        ),
        ([{"input_ids": [[1, 2]], "seq_lengths": [2]}], ValueError, "input_ids must be 1-D"),
        ([{"input_ids": [1, 2], "seq_lengths": [2, 1]}], ValueError, "add up to 3 tokens"),
        ([{"input_ids": [1, 2], "seq_lengths": [0, 2]}], ValueError, "seq_lengths must be >= 1"),
        (
            [{"input_ids": [1, 2], "labels": [1], "seq_lengths": [2]}],
            ValueError,
            "labels has 1 values but input_ids 2",
        ),
    ],
)
def test_bad_rows(rows, error, match):
    with pytest.raises(error, match=match):
        PackedCollator()(rows)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("key", ["input_ids", "labels"])
def test_ids_beyond_int64_are_refused_not_wrapped(layout, key):
    ids = np.array([1, 2**63 - 1, 3], dtype=np.uint64)  # the largest int64 is fine
    rows = [{"input_ids": ids, "seq_lengths": [3]}]
    assert PackedCollator(layout)(rows)["input_ids"][0, 1].item() == 2**63 - 1
    big = {"input_ids": ids, key: np.array([1, 2**63, 3], dtype=np.uint64), "seq_lengths": [3]}
    with pytest.raises(ValueError, match=rf"row 1: {key} holds 9223372036854775808, more than"):
        PackedCollator(layout)([rows[0], big])


def test_a_row_longer_than_seq_len():
    rows = [{"input_ids": [1, 2], "seq_lengths": [2]}, {"input_ids": [1, 2, 3], "seq_lengths": [3]}]
    with pytest.raises(ValueError, match="row 1 holds 3 tokens, more than seq_len=2"):
        PackedCollator("padded", seq_len=2)(rows)


@pytest.mark.parametrize("layout", ["padding_free", "padded"])
def test_provenance_per_piece(layout):
    table = token_table(np.array([5, 30, 0, 17, 9, 40]), columns=("input_ids",))
    packed = bfpack.pack_table(table, 16, provenance=True, separator=0, seed=1)
    rows = packed.to_pylist()
    batch = PackedCollator(layout, provenance=True)(rows[:3])
    for key in ("doc_index", "doc_offset"):
        assert batch[key].dtype == torch.int64
        assert batch[key].tolist() == [v for row in rows[:3] for v in row[key]]
    assert batch["doc_index"].shape[0] == sum(len(r["seq_lengths"]) for r in rows[:3])
    assert "doc_index" not in PackedCollator(layout)(rows)
    with pytest.raises(ValueError, match=r"row 0 has no 'doc_index'.*provenance=True"):
        PackedCollator(layout, provenance=True)(bfpack.pack_table(table, 16).to_pylist())
    short = [dict(rows[0], doc_offset=rows[0]["doc_offset"] + [0])]
    with pytest.raises(ValueError, match="row 0: doc_offset has 3 values for 2 pieces"):
        PackedCollator(layout, provenance=True)(short)


def test_repr():
    assert repr(PackedCollator()) == "PackedCollator(layout='padding_free')"
    assert repr(PackedCollator(provenance=True)).endswith("provenance=True)")
    assert "attention_mask=True" in repr(PackedCollator("padded", attention_mask=True))
    assert repr(PackedCollator(document_ids=True)).endswith("document_ids=True)")


def test_trl_reads_seq_lengths_the_same_way():
    """TRL's padding-free collator reads bfpack's ``seq_lengths`` and gives the
    same batch as PackedCollator (TRL adds ``seq_idx``, its document ids as int32)."""
    sft = need("trl.trainer.sft_trainer")
    table = token_table(np.array([5, 30, 2, 17, 9, 40, 3]), columns=("input_ids",))
    rows = bfpack.pack_table(table, 32).to_pylist()
    trl = sft.DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(rows)
    ours = PackedCollator(document_ids=True)(rows)
    for key in ("input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"):
        assert torch.equal(trl[key], ours[key]), key
    assert trl["max_length_q"] == ours["max_length_q"]
    assert torch.equal(trl["seq_idx"].long(), ours["document_ids"])


# ---------------------------------------------------------------------------
# PackedDataset


@pytest.fixture(scope="module")
def packed_dir(tmp_path_factory):
    """A packed directory of several shards; returns ``(dst, its rows as a table)``."""
    root = tmp_path_factory.mktemp("packed-dataset")
    lengths = np.random.default_rng(3).integers(1, 200, 400)
    pq.write_table(token_table(lengths, columns=("input_ids", "labels")), root / "src.parquet")
    manifest = bfpack.pack_parquet(
        root / "src.parquet", root / "dst", 128, position_ids=True, seed=1, window_tokens=9000
    )
    shards = [pq.read_table(root / "dst" / s["file"]) for s in manifest["shards"]]
    assert len(shards) > 3
    return root / "dst", pa.concat_tables(shards)


def rows_of(table):
    return [{k: np.asarray(v) for k, v in row.items()} for row in table.to_pylist()]


def same_rows(a, b):
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def test_rows_are_the_shards_rows_in_manifest_order(packed_dir, monkeypatch):
    monkeypatch.setattr(_dataset, "_BATCH_ROWS", 7)  # many record batches per file
    dst, expected = packed_dir
    ds = PackedDataset(dst, cache_dir=dst.parent / "cache-small-batches")
    assert len(ds) == expected.num_rows
    assert ds.columns == ("input_ids", "labels", "seq_lengths", "position_ids")
    assert same_rows([ds[i] for i in range(len(ds))], rows_of(expected))
    assert same_rows([ds[-1]], rows_of(expected.slice(expected.num_rows - 1)))
    row = ds[5]
    assert row["input_ids"].dtype == np.int64 and row["seq_lengths"].dtype == np.int32
    assert not row["input_ids"].flags.writeable  # a view of the mapped file
    for bad in (len(ds), -len(ds) - 1):
        with pytest.raises(IndexError, match="out of range"):
            ds[bad]
    with pytest.raises(TypeError):
        ds[1.0]
    assert repr(ds).startswith(f"PackedDataset({str(dst)!r}, rows={len(ds)}")


def test_columns(packed_dir):
    dst, expected = packed_dir
    ds = PackedDataset(dst, columns=["input_ids"])
    assert ds.columns == ("input_ids", "seq_lengths")  # seq_lengths is always kept
    assert ds[0].keys() == {"input_ids", "seq_lengths"}
    with pytest.raises(ValueError, match=r"columns \['tokens'\] are not in"):
        PackedDataset(dst, columns=["tokens"])
    with pytest.raises(TypeError, match="columns must be a list of column names"):
        PackedDataset(dst, columns="input_ids")


def test_provenance_and_carried_columns_of_a_packed_directory(tmp_path):
    src = tmp_path / "docs.parquet"
    table = token_table(np.array([5, 30, 0, 17, 9, 40]), columns=("input_ids",))
    pq.write_table(table.append_column("url", pa.array(list("abcdef"))), src)
    bfpack.pack_parquet(src, tmp_path / "o", 16, provenance=True, carry=["url", "doc_id"])
    ds = PackedDataset(tmp_path / "o", cache_dir=tmp_path / "cache")
    # Strings have no numpy view: left out unless named, and then refused.
    assert ds.columns == ("input_ids", "seq_lengths", "doc_index", "doc_offset", "doc_id")
    with pytest.raises(
        TypeError,
        match="column .url. of .* is list<element: string>: its values have no numpy view",
    ):
        PackedDataset(tmp_path / "o", columns=["url"], cache_dir=tmp_path / "cache")
    batch = PackedCollator(provenance=True)([ds[i] for i in range(len(ds))])
    ids, lens = batch["input_ids"][0].tolist(), torch.diff(batch["cu_seq_lens_q"]).tolist()
    docs = {}
    for n, d, off, start in zip(
        lens, batch["doc_index"].tolist(), batch["doc_offset"].tolist(), np.cumsum([0, *lens])
    ):
        docs.setdefault(d, []).append((off, ids[start : start + n]))
    rebuilt = {d: [t for _, p in sorted(parts) for t in p] for d, parts in docs.items()}
    assert rebuilt == {d: x for d, x in enumerate(table["input_ids"].to_pylist()) if x}


def test_memory_mapped(packed_dir):
    dst, expected = packed_dir
    before = pa.total_allocated_bytes()
    ds = PackedDataset(dst)
    tokens = sum(int(ds[i]["input_ids"].sum()) for i in range(len(ds)))
    assert tokens == int(
        pa.compute.sum(expected.column("input_ids").combine_chunks().flatten()).as_py()
    )
    # Every row came from the mapped files; nothing was read into Arrow's memory.
    assert pa.total_allocated_bytes() - before < 1 << 16 < expected.nbytes


def test_the_arrow_copies(packed_dir, tmp_path):
    dst, _ = packed_dir
    cache = tmp_path / "cache"
    first = PackedDataset(dst, cache_dir=cache)
    with open(dst / MANIFEST) as f:
        manifest = json.load(f)
    assert first.run_id == manifest["run_id"]
    # One entry per shard: <root>/<run id>/<sha256 of the shard>.arrow.
    assert os.listdir(cache) == [manifest["run_id"]]
    assert first.files == [
        str(cache / manifest["run_id"] / f"{s['sha256']}.arrow") for s in manifest["shards"]
    ]
    assert sorted(os.listdir(cache / first.run_id)) == sorted(map(os.path.basename, first.files))
    stamps = {f: os.stat(f).st_mtime_ns for f in first.files}
    PackedDataset(dst, cache_dir=cache)  # existing copies are reused
    assert {f: os.stat(f).st_mtime_ns for f in first.files} == stamps
    with open(first.files[0], "wb") as f:
        f.write(b"torn")  # a broken copy is made again
    again = PackedDataset(dst, cache_dir=cache)
    assert same_rows([again[i] for i in range(3)], [first[i] for i in range(3)])
    assert sorted(os.listdir(cache / first.run_id)) == sorted(map(os.path.basename, first.files))


def test_the_default_cache_root(packed_dir, tmp_path, monkeypatch):
    dst, _ = packed_dir
    monkeypatch.setenv("BFPACK_CACHE_DIR", str(tmp_path / "env"))
    assert PackedDataset(dst).cache_dir == str(tmp_path / "env")
    assert os.listdir(tmp_path / "env") == [PackedDataset(dst).run_id]
    assert PackedDataset(dst, cache_dir=tmp_path / "arg").cache_dir == str(tmp_path / "arg")
    monkeypatch.delenv("BFPACK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bfpack.torch.cache_root() == str(tmp_path / "xdg" / "bfpack")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bfpack.torch.cache_root() == str(tmp_path / "home" / ".cache" / "bfpack")
    assert bfpack.torch.CACHE_ENV == "BFPACK_CACHE_DIR"


def test_nothing_is_written_inside_the_packed_directory(tmp_path):
    """The dataset's copies live outside DST: verify still passes, and readers
    of DST as a Parquet dataset see the shards alone."""
    src = tmp_path / "src.parquet"
    pq.write_table(token_table(np.array([5, 9, 30, 12]), columns=("input_ids",)), src)
    dst = tmp_path / "dst"
    bfpack.pack_parquet(src, dst, 32)
    before = sorted(os.listdir(dst))
    ds = PackedDataset(dst)
    ds[0]
    assert sorted(os.listdir(dst)) == before
    assert bfpack.verify(dst).ok


def test_two_outputs_never_share_a_cache_entry(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    lengths = {"train": [5, 9, 30, 12, 7, 3], "val": [20, 20, 20]}
    for name, lens in lengths.items():
        pq.write_table(token_table(np.array(lens), columns=("input_ids",)), src / f"{name}.parquet")
        bfpack.pack_parquet(src / f"{name}.parquet", tmp_path / name, 32)
    cache = tmp_path / "shared-cache"
    train = PackedDataset(tmp_path / "train", cache_dir=cache)
    val = PackedDataset(tmp_path / "val", cache_dir=cache)
    for name, ds in (("train", train), ("val", val)):
        expected = pq.read_table(tmp_path / name)
        assert same_rows([ds[i] for i in range(len(ds))], rows_of(expected)), name
    assert not set(train.files) & set(val.files)


def test_a_shard_changed_by_hand_is_refused(tmp_path):
    """A shard whose bytes are not the manifest's is never copied (whatever
    its size and time): the copy would hold rows of no run."""
    src = tmp_path / "src.parquet"
    pq.write_table(token_table(np.array([5, 9, 30]), columns=("input_ids",)), src)
    bfpack.pack_parquet(src, tmp_path / "dst", 32)
    pq.write_table(
        bfpack.pack_table(token_table(np.array([4, 4, 4]), columns=("input_ids",)), 32),
        tmp_path / "dst" / "part-00000.parquet",
    )
    with pytest.raises(ValueError, match=r"part-00000.parquet does not hold the bytes recorded"):
        PackedDataset(tmp_path / "dst", cache_dir=tmp_path / "cache")
    assert [files for _, _, files in os.walk(tmp_path / "cache")] == [[], []]


def test_an_overwrite_gives_a_new_dataset_the_new_run(tmp_path):
    src = tmp_path / "src.parquet"
    pq.write_table(token_table(np.array([5, 9, 30]), columns=("input_ids",)), src)
    bfpack.pack_parquet(src, tmp_path / "dst", 32)
    old = PackedDataset(tmp_path / "dst")
    assert old[0]["input_ids"].shape == (30,)
    pq.write_table(token_table(np.array([20, 3]), columns=("input_ids",)), src)
    bfpack.pack_parquet(src, tmp_path / "dst", 32, overwrite=True)
    new = PackedDataset(tmp_path / "dst")
    assert new.run_id != old.run_id
    assert len(new) == 1 and sorted(new[0]["seq_lengths"].tolist()) == [3, 20]
    assert len(old) == 2 and old[0]["input_ids"].shape == (30,)  # still its own run


def test_a_missing_shard_is_named(tmp_path):
    src = tmp_path / "src.parquet"
    pq.write_table(token_table(np.array([5, 9, 30]), columns=("input_ids",)), src)
    bfpack.pack_parquet(src, tmp_path / "dst", 32)
    os.remove(tmp_path / "dst" / "part-00000.parquet")
    with pytest.raises(FileNotFoundError, match=r"part-00000.parquet is missing: the output is"):
        PackedDataset(tmp_path / "dst", cache_dir=tmp_path / "cache")


def test_a_directory_rewritten_while_opening_is_read_at_its_new_run(tmp_path, monkeypatch):
    src = tmp_path / "src.parquet"
    pq.write_table(token_table(np.array([5, 9, 30]), columns=("input_ids",)), src)
    dst = tmp_path / "dst"
    bfpack.pack_parquet(src, dst, 32)
    stale = _dataset._pin(str(dst), str(tmp_path / "cache"))  # read before the overwrite
    bfpack.pack_parquet(src, dst, 16, overwrite=True)
    pins = [stale]
    real = _dataset._pin
    monkeypatch.setattr(_dataset, "_pin", lambda *a: pins.pop() if pins else real(*a))
    ds = PackedDataset(dst, cache_dir=tmp_path / "cache")
    assert ds.run_id != stale[0] and max(len(ds[i]["input_ids"]) for i in range(len(ds))) <= 16
    assert os.listdir(tmp_path / "cache") == [ds.run_id]  # nothing of the old run copied

    def always_stale(*args):
        return stale

    monkeypatch.setattr(_dataset, "_pin", always_stale)
    with pytest.raises(RuntimeError, match="was rewritten 3 times while PackedDataset opened"):
        PackedDataset(dst, cache_dir=tmp_path / "cache2")


def test_a_run_that_moves_during_a_copy_is_caught(overwritten, monkeypatch):
    """DST swapped between the check of its run id and the copy: the bytes
    read are the new run's, so no copy is made and the error names the run."""
    dst = overwritten(128)
    ds = PackedDataset(dst)
    pinned = ds.run_id
    overwritten(16)
    shutil.rmtree(dst.parent / "cache")
    answers = [pinned]  # the first look still sees the pinned run
    real = _dataset.run_id_of
    monkeypatch.setattr(_dataset, "run_id_of", lambda p: answers.pop() if answers else real(p))
    with pytest.raises(RuntimeError, match=f"reads run {pinned} of .* now holds run"):
        pickle.loads(pickle.dumps(ds))[0]
    assert not any(files for _, _, files in os.walk(dst.parent / "cache"))


def test_copies_of_another_layout_are_refused(tmp_path):
    """Copies that hold the run's bytes in other record batches than the
    dataset indexed give a clear error, never a wrong row or an IndexError."""
    src = tmp_path / "src.parquet"
    pq.write_table(token_table(np.arange(1, 40), columns=("input_ids",)), src)
    bfpack.pack_parquet(src, tmp_path / "dst", 64)
    ds = PackedDataset(tmp_path / "dst", cache_dir=tmp_path / "cache")
    os.remove(ds.files[0])
    _dataset._copy(ds._shards[0], ds.run_id, 7)  # 7 rows per record batch
    with pytest.raises(RuntimeError, match="hold other rows than when the dataset was opened"):
        pickle.loads(pickle.dumps(ds))[0]


def loader_rows(ds, **kwargs):
    """Every batch's tokens and pieces, read through a DataLoader."""
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=PackedCollator(), **kwargs)
    return [(b["input_ids"].tolist(), b["cu_seq_lens_q"].tolist()) for b in loader]


@pytest.fixture
def overwritten(tmp_path, monkeypatch):
    """``pack(seq_len)``: packs the same documents into ``tmp_path/dst`` again
    (with ``--overwrite``) at ``seq_len`` tokens per row. The cache root is
    ``tmp_path/cache``."""
    monkeypatch.setenv("BFPACK_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "src.parquet"
    lengths = np.random.default_rng(7).integers(1, 120, 60)
    pq.write_table(token_table(lengths, columns=("input_ids",)), src)

    def pack(seq_len):
        bfpack.pack_parquet(src, tmp_path / "dst", seq_len, overwrite=True)
        return tmp_path / "dst"

    return pack


def test_a_dataset_keeps_serving_its_run_after_an_overwrite(overwritten):
    """Workers of every epoch read the run the dataset opened, even once DST
    holds another run (and another reader has copied it)."""
    dst = overwritten(128)
    ds = PackedDataset(dst)
    first = loader_rows(ds, num_workers=2)
    overwritten(16)  # rows of at most 16 tokens now
    other = PackedDataset(dst)  # e.g. another job, on the new run
    assert len(other) > len(ds)
    assert loader_rows(ds, num_workers=2) == first  # the next epoch
    assert loader_rows(pickle.loads(pickle.dumps(ds))) == first  # as a spawned worker gets it
    assert loader_rows(ds) == first
    assert other.run_id != ds.run_id


def test_spawned_workers_serve_the_run_too(overwritten):
    """A spawned worker gets the dataset pickled: the pickle names the run."""
    dst = overwritten(128)
    ds = PackedDataset(dst)
    first = loader_rows(ds)
    overwritten(16)
    assert loader_rows(ds, num_workers=1, multiprocessing_context="spawn") == first


def test_a_dataset_whose_copies_are_gone_makes_them_again_from_its_run(overwritten):
    dst = overwritten(128)
    ds = PackedDataset(dst)
    first = loader_rows(ds)
    shutil.rmtree(dst.parent / "cache")  # the cache was cleaned
    assert loader_rows(ds, num_workers=2) == first


def test_a_dataset_whose_run_is_gone_fails_naming_the_new_run(overwritten):
    dst = overwritten(128)
    ds = PackedDataset(dst)  # no row read yet in this process: nothing mapped
    new = overwritten(16)
    shutil.rmtree(dst.parent / "cache")  # and the cache was cleaned
    with open(new / MANIFEST) as f:
        run = json.load(f)["run_id"]
    message = rf"reads run {ds.run_id} of .*now holds run {run}; open a new PackedDataset"
    with pytest.raises(RuntimeError, match=message):
        loader_rows(ds, num_workers=2)
    with pytest.raises(RuntimeError, match=message):
        pickle.loads(pickle.dumps(ds))[0]  # a fresh process, as a worker is
    shutil.rmtree(new)
    with pytest.raises(RuntimeError, match="now holds no bfpack output"):
        pickle.loads(pickle.dumps(ds))[0]


def test_a_damaged_manifest_is_refused(tmp_path):
    src = tmp_path / "src.parquet"
    pq.write_table(token_table(np.array([5, 9]), columns=("input_ids",)), src)
    dst = tmp_path / "dst"
    bfpack.pack_parquet(src, dst, 32)
    with open(dst / MANIFEST) as f:
        manifest = json.load(f)
    bad_shard = dict(manifest["shards"][0], file="../src.parquet")
    bad_sha = dict(manifest["shards"][0], sha256="abc")
    for change, match in [
        (dict(run_id="../../etc"), "has a run_id of '../../etc', not a run id"),
        (dict(run_id=7), "has a run_id of 7"),
        (dict(shards=[bad_shard]), "lists a shard .* that is not a file name in it"),
        (dict(shards=[bad_sha]), "lists a shard .* with a SHA-256"),
    ]:
        with open(dst / MANIFEST, "w") as f:
            json.dump({**manifest, **change}, f)
        with pytest.raises(ValueError, match=match):
            PackedDataset(dst)


def test_pickles_without_data_and_feeds_workers(packed_dir):
    dst, expected = packed_dir
    ds = PackedDataset(dst)
    ds[0]  # maps the files
    blob = pickle.dumps(ds)
    assert len(blob) < 10_000 < expected.nbytes
    assert same_rows([pickle.loads(blob)[3]], [ds[3]])
    collate = PackedCollator()
    single = list(torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate))
    workers = list(torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate, num_workers=2))
    assert len(single) == len(workers)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(single, workers) for k in ("input_ids",))


def test_distributed_sampler_and_resuming(packed_dir):
    dst, expected = packed_dir
    ds = PackedDataset(dst)
    from torch.utils.data import DataLoader, DistributedSampler

    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=4)
        sampler.set_epoch(1)
        seen += list(sampler)
    assert sorted(set(seen)) == list(range(len(ds)))  # every row on some rank

    # Resuming after k batches: the same sampler order, from batch k on.
    sampler = DistributedSampler(ds, num_replicas=2, rank=0, shuffle=True, seed=4)
    order = list(sampler)
    full = list(DataLoader(ds, batch_size=4, sampler=order, collate_fn=PackedCollator()))
    k = 3
    resumed = list(
        DataLoader(ds, batch_size=4, sampler=order[4 * k :], collate_fn=PackedCollator())
    )
    assert len(resumed) == len(full) - k
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(full[k:], resumed))


def test_bad_directories(tmp_path, packed_dir):
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        PackedDataset(tmp_path / "missing")
    with pytest.raises(TypeError, match="path must be a path"):
        PackedDataset(3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no Parquet shard"):
        PackedDataset(tmp_path / "empty")
    (tmp_path / "raw").mkdir()
    pq.write_table(token_table(np.array([3, 4])), tmp_path / "raw" / "a.parquet")
    with pytest.raises(ValueError, match="holds no 'seq_lengths' column"):
        PackedDataset(tmp_path / "raw", cache_dir=tmp_path / "c1")
    (tmp_path / "ids").mkdir()
    packed = bfpack.pack_table(token_table(np.array([3, 4]), columns=("input_ids",)), 8)
    pq.write_table(packed.append_column("n", pa.array([1])), tmp_path / "ids" / "a.parquet")
    with pytest.raises(TypeError, match="column 'n' .* is int64, not a list"):
        PackedDataset(tmp_path / "ids", cache_dir=tmp_path / "c2")
    (tmp_path / "mixed").mkdir()
    pq.write_table(packed, tmp_path / "mixed" / "a.parquet")
    pq.write_table(
        packed.cast(
            pa.schema([("input_ids", pa.list_(pa.int32())), ("seq_lengths", pa.list_(pa.int32()))])
        ),
        tmp_path / "mixed" / "b.parquet",
    )
    with pytest.raises(ValueError, match="share a schema"):
        PackedDataset(tmp_path / "mixed", cache_dir=tmp_path / "c3")
    dst, _ = packed_dir
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="pass a writable cache_dir="):
        PackedDataset(dst, cache_dir=tmp_path / "file" / "cache")


def test_a_directory_without_manifest(packed_dir, tmp_path):
    dst, expected = packed_dir
    with open(dst / MANIFEST) as f:
        shards = [s["file"] for s in json.load(f)["shards"]]
    for name in shards:
        os.link(dst / name, tmp_path / name)
    ds = PackedDataset(tmp_path, cache_dir=tmp_path / "cache")  # every *.parquet, in name order
    assert same_rows([ds[i] for i in range(len(ds))], rows_of(expected))
    assert ds.run_id is None and os.listdir(tmp_path / "cache") == ["no-run-id"]


def test_a_failed_copy_leaves_no_file(packed_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    dst, _ = packed_dir
    monkeypatch.setattr(pa.ipc, "new_file", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        PackedDataset(dst, cache_dir=tmp_path / "cache")
    assert [files for _, _, files in os.walk(tmp_path / "cache")] == [[], []]


def test_a_damaged_manifest_is_named(packed_dir, tmp_path):
    # The manifest is read as bfpack verify reads it: a damaged one is a
    # ValueError that names the file, not a JSON parser's message.
    dst, _ = packed_dir
    (tmp_path / "out").mkdir()
    for name in os.listdir(dst):
        if name.endswith(".parquet"):
            os.link(dst / name, tmp_path / "out" / name)
    (tmp_path / "out" / MANIFEST).write_text("{")
    with pytest.raises(ValueError, match=r"\.bfpack\.json is not valid JSON"):
        PackedDataset(tmp_path / "out", cache_dir=tmp_path / "cache")
