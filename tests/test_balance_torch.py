"""BalancedSampler with PyTorch and datasets: PackedDataset, a packed
datasets.Dataset, DataLoader workers, and DDP under torchrun (the guide's loop)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.balance import balanced_order, row_costs
from bfpack.corpus import web_like_lengths

from integrations import need

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "balanced-steps.md"
SEQ_LEN = 256
VOCAB = 256


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A packed output of web-like documents (ids below VOCAB), rows of SEQ_LEN."""
    folder = tmp_path_factory.mktemp("balance")
    lengths = np.minimum(web_like_lengths(400, seed=3) // 8 + 1, 3 * SEQ_LEN)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ids = np.random.default_rng(0).integers(0, VOCAB, offsets[-1], dtype=np.int32)
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
    pq.write_table(pa.table({"input_ids": column}), folder / "src.parquet")
    bfpack.pack_parquet(folder / "src.parquet", folder / "out", SEQ_LEN)
    return folder / "out"


def packed_table(folder):
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("*.parquet")))


def test_packed_dataset_costs_and_dataloader_workers(packed):
    torch = need("torch")
    from bfpack.torch import BalancedSampler, PackedCollator, PackedDataset

    dataset = PackedDataset(packed)
    table = packed_table(packed)
    sampler = BalancedSampler(dataset, num_replicas=2, rank=1, batch_size=3, attention_weight=0.01)
    np.testing.assert_array_equal(sampler.costs, row_costs(table, attention_weight=0.01))
    assert isinstance(sampler, torch.utils.data.Sampler)
    sampler.set_epoch(1)
    plan = balanced_order(sampler.costs, num_replicas=2, batch_size=3, epoch=1)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=3,
        sampler=sampler,
        num_workers=2,
        collate_fn=PackedCollator("padded", seq_len=SEQ_LEN),
    )
    batches = list(loader)
    assert len(batches) == plan.order.shape[0]
    ids = table.column("input_ids").to_pylist()
    for batch, rows in zip(batches, plan.order[:, 1]):
        for got, row in zip(batch["input_ids"].tolist(), rows):
            assert got[: len(ids[row])] == ids[row]


def test_packed_datasets_dataset(packed):
    datasets = need("datasets")
    from bfpack.hf import pack_dataset
    from bfpack.torch import BalancedSampler

    source = datasets.Dataset.from_parquet(str(packed.parent / "src.parquet"))
    ds = pack_dataset(source, SEQ_LEN, seed=0)
    costs = row_costs(ds.data.table)
    sampler = BalancedSampler(ds, num_replicas=4, rank=0)
    np.testing.assert_array_equal(sampler.costs, costs)
    # In the dataset's logical order: after select, the indices mapping decides.
    reverse = ds.select(range(len(ds) - 1, -1, -1))
    np.testing.assert_array_equal(
        BalancedSampler(reverse, num_replicas=4, rank=0).costs, costs[::-1]
    )
    with pytest.raises(ValueError, match="pack it with bfpack.hf.pack_dataset"):
        BalancedSampler(source, num_replicas=4, rank=0)


def test_ranks_come_from_torch_distributed(tmp_path):
    torch = need("torch")
    from bfpack.torch import BalancedSampler

    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}",
                            rank=0, world_size=1)  # fmt: skip
    try:
        sampler = BalancedSampler(np.arange(10.0))
        assert (sampler.num_replicas, sampler.rank) == (1, 0)
        assert sorted(sampler) == list(range(10))
        assert BalancedSampler(np.arange(10.0), num_replicas=2).rank == 0
    finally:
        dist.destroy_process_group()


def guide_script():
    """The DDP loop of docs/guides/balanced-steps.md, as it is written there."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    [script] = [b for b in blocks if "torchrun" in b]
    return script


def test_the_readme_shows_the_guides_loop():
    assert guide_script() in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_the_guides_ddp_loop_runs_under_torchrun(packed, tmp_path):
    need("torch")
    need("transformers")
    script = tmp_path / "train_balanced.py"
    script.write_text(guide_script())
    # TMPDIR: torchrun leaves its torchelastic_* directories there.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(script), str(packed)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    # 2 ranks of 2 rows a step: ceil(rows / 4) steps in each epoch.
    steps = -(-packed_table(packed).num_rows // 4)
    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch")]
    assert [line.split(",")[0] for line in lines] == [
        f"epoch 0: {steps} steps",
        f"epoch 1: {steps} steps",
    ]


def test_packed_dataset_of_an_arrow_output(packed, tmp_path):
    """The costs of an Arrow output's PackedDataset (Arrow streams mapped in
    place) come from its rows, as a Parquet output's do."""
    need("torch")
    from bfpack.torch import BalancedSampler, PackedDataset

    src = tmp_path / "src.parquet"
    pq.write_table(packed_table(packed).select(["input_ids"]), src)
    bfpack.pack_parquet(src, tmp_path / "out", SEQ_LEN, format="arrow")
    dataset = PackedDataset(tmp_path / "out", cache_dir=tmp_path / "cache")
    assert dataset.format == "arrow"
    table = pa.concat_tables(
        pa.ipc.open_stream(pa.memory_map(str(p))).read_all()
        for p in sorted((tmp_path / "out").glob("*.arrow"))
    )
    sampler = BalancedSampler(dataset, num_replicas=2, rank=0, attention_weight=0.01)
    np.testing.assert_array_equal(sampler.costs, row_costs(table, attention_weight=0.01))
    assert dataset.column("seq_lengths").to_pylist() == table.column("seq_lengths").to_pylist()
    with pytest.raises(ValueError, match="not one of the dataset's columns"):
        dataset.column("nope")
