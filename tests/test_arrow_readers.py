"""An Arrow-format output read with no copy: ``datasets.load_from_disk`` and
``bfpack.torch.PackedDataset`` use the shards' mapped bytes in place.

"No copy" is checked by memory: every buffer a reader hands out lies inside a
mapping of a shard file (``/proc/self/maps``), so it is the page cache's
memory, not the process's own.
"""

import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest

from integrations import need

pytestmark = pytest.mark.integration
datasets = need("datasets")
need("torch")

from bfpack.parquet import pack_parquet  # noqa: E402
from bfpack.parquet._shards import datasets_features  # noqa: E402
from bfpack.torch import PackedDataset  # noqa: E402

from tokens import token_table  # noqa: E402

SEQ_LEN = 64


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("arrow-readers")
    lengths = np.random.default_rng(9).integers(1, 150, 400)
    pq.write_table(token_table(lengths, columns=("input_ids", "labels")), root / "src.parquet")
    for fmt in ("parquet", "arrow"):
        pack_parquet(root / "src.parquet", root / fmt, SEQ_LEN, format=fmt, window_tokens=4000)
    return root


def mapped_ranges(folder):
    """``(start, end)`` of every mapping of a file in ``folder`` in this process."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith(str(folder) + "/"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def inside(address, size, ranges):
    return any(start <= address and address + size <= end for start, end in ranges)


def test_load_from_disk_maps_the_shards_with_no_copy(outputs):
    ds = datasets.load_from_disk(str(outputs / "arrow"))
    parquet = pq.read_table(outputs / "parquet")  # the same rows, in another format
    assert ds.num_rows == parquet.num_rows
    assert ds.data.table.select(parquet.column_names).equals(parquet)
    assert ds.features == datasets.Features.from_arrow_schema(ds.data.table.schema)
    ranges = mapped_ranges(outputs / "arrow")
    assert ranges
    buffers = [
        b
        for column in ds.data.table.columns
        for chunk in column.chunks
        for b in [*chunk.buffers()]
        if b is not None and b.size
    ]
    assert buffers and all(inside(b.address, b.size, ranges) for b in buffers)
    # Rows read through datasets are views of the same mapped bytes.
    row = ds.with_format("numpy")[3]
    assert np.array_equal(row["input_ids"], parquet.column("input_ids")[3].as_py())


def test_the_features_are_those_datasets_infers():
    import pyarrow as pa

    schema = pa.schema(
        [(t, pa.list_(getattr(pa, t)())) for t in ("int8", "uint16", "int32", "int64")]
        + [(t, pa.list_(getattr(pa, t)())) for t in ("float16", "float32", "float64")]
    )
    assert datasets_features(schema) == datasets.Features.from_arrow_schema(schema).to_dict()


def test_packed_dataset_maps_an_arrow_output_with_no_cache(outputs, tmp_path):
    cache = tmp_path / "cache"
    arrow = PackedDataset(outputs / "arrow", cache_dir=cache)
    parquet = PackedDataset(outputs / "parquet", cache_dir=tmp_path / "parquet-cache")
    assert len(arrow) == len(parquet) and arrow.columns == parquet.columns
    for i in range(len(arrow)):
        a, p = arrow[i], parquet[i]
        assert all(np.array_equal(a[k], p[k]) for k in arrow.columns)
    assert not cache.exists()  # nothing copied
    ranges = mapped_ranges(outputs / "arrow")
    row = arrow[len(arrow) - 1]
    assert all(inside(v.ctypes.data, v.nbytes, ranges) for v in row.values() if v.nbytes)
    # A worker maps the same shards again, pinned to the run.
    again = pickle.loads(pickle.dumps(arrow))
    assert np.array_equal(again[7]["input_ids"], arrow[7]["input_ids"])


def test_packed_dataset_is_pinned_to_the_arrow_run(outputs, tmp_path):
    dst = tmp_path / "dst"
    pack_parquet(outputs / "src.parquet", dst, SEQ_LEN, format="arrow", window_tokens=4000)
    ds = PackedDataset(dst, cache_dir=tmp_path / "cache")
    worker = pickle.dumps(ds)
    first = ds[0]["input_ids"].copy()
    pack_parquet(
        outputs / "src.parquet",
        dst,
        SEQ_LEN,
        format="arrow",
        window_tokens=4000,
        seed=1,
        overwrite=True,
    )
    assert np.array_equal(ds[0]["input_ids"], first)  # the old run's mapped pages stay
    with pytest.raises(RuntimeError, match=f"reads run {ds.run_id} .* now holds run"):
        pickle.loads(worker)[0]
    assert PackedDataset(dst, cache_dir=tmp_path / "cache").run_id != ds.run_id


def test_packed_dataset_refuses_a_damaged_arrow_shard(outputs, tmp_path):
    import shutil

    dst = tmp_path / "dst"
    shutil.copytree(outputs / "arrow", dst)
    shard = sorted(dst.glob("data-*.arrow"))[1]
    data = bytearray(shard.read_bytes())
    data[-50] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not hold the bytes recorded for it"):
        PackedDataset(dst, cache_dir=tmp_path / "cache")
