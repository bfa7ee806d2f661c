"""Balanced data-parallel steps: the cost model, the plan, the sampler (without
torch), the ``bfpack balance`` command. Torch and datasets: test_balance_torch.py."""

import io
import itertools
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack._sampler import BalancedSampler
from bfpack.balance import (
    DEFAULT_ATTENTION_WEIGHT,
    _shuffled,
    attention_weight,
    balanced_order,
    random_order,
    row_costs,
    simulate,
    slowest_over_mean,
)
from bfpack.cli import main
from bfpack.corpus import web_like_lengths


def shuffled(n, rng):
    """The permutation of n rows that balanced_order draws from ``rng``."""
    return _shuffled(np.zeros(n, dtype=np.int64), rng)[0]


def costs_of(n, seed=0):
    return np.random.default_rng(seed).lognormal(8.0, 1.0, n)


# ---------------------------------------------------------------------------
# The reference: the plan, written the obvious way.


def naive_balanced_order(costs, num_replicas, batch_size, window, seed, epoch, drop_last):
    """Same random draws as balanced_order, then sorting and dealing in plain Python."""
    n, step_rows = len(costs), num_replicas * batch_size
    rng = np.random.default_rng([seed, epoch])
    perm = list(shuffled(n, rng))  # tested on its own below
    if drop_last:
        perm = perm[: n - n % step_rows]
    else:
        while len(perm) % step_rows:
            perm.append(perm[len(perm) - n])  # the first rows again, cyclically
    num_steps = len(perm) // step_rows
    full, last = divmod(num_steps, window)
    step_perm = list(rng.permuted(np.tile(np.arange(window), (full, 1)), axis=1).ravel())
    step_perm += list(rng.permutation(last))
    rotation = rng.integers(0, num_replicas, num_steps)
    order = [[[None] * batch_size for _ in range(num_replicas)] for _ in range(num_steps)]
    shift = 0
    for first in range(0, num_steps, window):
        k = min(window, num_steps - first)
        positions = range(first * step_rows, (first + k) * step_rows)
        ranked = sorted(positions, key=lambda p: (costs[perm[p]], p))
        for g in range(k):
            step = first + step_perm[first + g]
            group = ranked[g * step_rows : (g + 1) * step_rows]
            for b in range(batch_size):
                passing = group[b * num_replicas : (b + 1) * num_replicas]
                if b % 2:
                    passing = passing[::-1]  # snake order
                for r, p in enumerate(passing):
                    order[step][(r + rotation[step]) % num_replicas][b] = perm[p]
                    shift += abs(step - p // step_rows)
    rank_costs = [[sum(costs[i] for i in rank) for rank in step] for step in order]
    return np.array(order, dtype=np.int64).reshape(num_steps, num_replicas, batch_size), (
        np.array(rank_costs).reshape(num_steps, num_replicas),
        shift / len(perm) if perm else 0.0,
    )


@pytest.mark.parametrize(
    "n, replicas, batch, window, drop_last",
    [
        (100, 4, 1, 3, False),
        (100, 4, 3, 2, True),
        (97, 5, 2, 4, False),
        (7, 4, 3, 16, False),  # fewer rows than one step: padded
        (64, 8, 1, 1, False),
        (64, 1, 1, 5, True),
        (3, 4, 1, 2, True),  # not one whole step
    ],
)
@pytest.mark.parametrize("integers", [False, True])  # integers: many ties
def test_plan_matches_the_reference(n, replicas, batch, window, drop_last, integers):
    costs = costs_of(n, seed=n)
    if integers:
        costs = np.round(costs / 1000)
    plan = balanced_order(
        costs,
        num_replicas=replicas,
        batch_size=batch,
        window=window,
        seed=3,
        epoch=2,
        drop_last=drop_last,
    )
    order, (rank_costs, shift) = naive_balanced_order(
        costs, replicas, batch, window, 3, 2, drop_last
    )
    np.testing.assert_array_equal(plan.order, order)
    np.testing.assert_allclose(plan.rank_costs, rank_costs, rtol=1e-12)
    assert plan.mean_shift == pytest.approx(shift)


def test_every_row_is_dealt_once_per_epoch():
    costs = costs_of(64 * 4 * 10)
    plan = balanced_order(costs, num_replicas=64, batch_size=4)
    assert plan.order.shape == (10, 64, 4)
    np.testing.assert_array_equal(np.sort(plan.order.ravel()), np.arange(costs.size))
    np.testing.assert_array_equal(plan.rank_costs, costs[plan.order].sum(axis=2))


def test_the_last_step_is_filled_or_dropped():
    costs = costs_of(103)
    padded = balanced_order(costs, num_replicas=4, batch_size=5, epoch=1)
    assert padded.order.shape == (6, 4, 5)  # 120 rows: the first 17 of the permutation again
    counts = np.bincount(padded.order.ravel(), minlength=103)
    assert counts.min() == 1 and counts.sum() == 120 and (counts == 2).sum() == 17
    perm = shuffled(103, np.random.default_rng([0, 1]))
    assert set(np.flatnonzero(counts == 2)) == set(perm[:17])
    dropped = balanced_order(costs, num_replicas=4, batch_size=5, drop_last=True)
    assert dropped.order.shape == (5, 4, 5)
    assert len(set(dropped.order.ravel())) == 100


def test_the_plan_depends_on_seed_and_epoch_only():
    costs = costs_of(5000)
    a = balanced_order(costs, num_replicas=8, seed=5, epoch=1)
    b = balanced_order(costs.copy(), num_replicas=8, seed=5, epoch=1)
    np.testing.assert_array_equal(a.order, b.order)
    random = slowest_over_mean(random_order(costs, num_replicas=8).rank_costs)
    for other in (dict(seed=6, epoch=1), dict(seed=5, epoch=2)):
        c = balanced_order(costs, num_replicas=8, **other)
        assert not np.array_equal(a.order, c.order)
        assert slowest_over_mean(c.rank_costs) < random


def test_a_fresh_process_computes_the_same_plan():
    costs = costs_of(3000)
    plan = balanced_order(costs, num_replicas=8, batch_size=2, seed=9, epoch=4)
    code = (
        "import sys, numpy as np, hashlib\n"
        "from bfpack.balance import balanced_order\n"
        "costs = np.random.default_rng(0).lognormal(8.0, 1.0, 3000)\n"
        "p = balanced_order(costs, num_replicas=8, batch_size=2, seed=9, epoch=4)\n"
        "print(hashlib.sha256(p.order.tobytes()).hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    import hashlib

    assert out == hashlib.sha256(plan.order.tobytes()).hexdigest()


def test_balancing_evens_the_steps():
    # The setting, smaller: web-like documents at 32k, 64 ranks.
    packing = bfpack.pack(web_like_lengths(500_000, seed=1), 32768)
    costs = row_costs(packing)
    report = simulate(costs, num_replicas=64, window=16)
    assert report.random > 1.3
    assert report.balanced <= 1.03
    assert 0 < report.mean_shift < 16
    batched = simulate(costs, num_replicas=64, batch_size=4, window=16)
    assert batched.balanced < 1.01 < batched.random


def test_batches_balance_the_sum_of_a_ranks_rows():
    # Two dear rows and six cheap ones, two ranks of four: one dear row each.
    costs = np.array([100.0, 100.0, 1, 1, 1, 1, 1, 1])
    plan = balanced_order(costs, num_replicas=2, batch_size=4, window=1)
    np.testing.assert_array_equal(plan.rank_costs, [[103.0, 103.0]])


def test_random_dealing_is_distributed_samplers():
    costs = costs_of(40)
    plan = random_order(costs, num_replicas=4, batch_size=2, seed=1, epoch=3)
    perm = shuffled(40, np.random.default_rng([1, 3]))
    for r in range(4):
        np.testing.assert_array_equal(plan.order[:, r].ravel(), perm[r::4])
    assert plan.mean_shift == 0.0


def test_window_one_only_rotates_ranks_and_no_shuffle_is_fixed():
    costs = costs_of(64)
    plan = balanced_order(costs, num_replicas=4, window=1)
    random = random_order(costs, num_replicas=4)
    for s in range(16):  # each step holds the same rows as random dealing's
        assert set(plan.order[s].ravel()) == set(random.order[s].ravel())
    assert plan.mean_shift == 0.0
    fixed = balanced_order(costs, num_replicas=4, window=4, shuffle=False, seed=1)
    again = balanced_order(costs, num_replicas=4, window=4, shuffle=False, seed=2)
    np.testing.assert_array_equal(fixed.order, again.order)
    assert set(fixed.order[:4].ravel()) == set(range(16))  # windows of consecutive rows
    steps = fixed.rank_costs.max(axis=1)
    assert (np.diff(steps[:4]) >= 0).all()  # cheapest step first


def test_the_shuffle_is_a_uniform_permutation():
    rng = np.random.default_rng(0)
    for n in (0, 1, 5, 70_000, 300_000):  # one bucket, then several
        values = np.arange(n, dtype=np.int64) * 3
        perm, carried = _shuffled(values, rng)
        assert np.array_equal(np.sort(perm), np.arange(n))
        assert np.array_equal(carried, values[perm])
    # All 24 orders of 4 rows, about equally often (chi-square, 23 degrees of freedom).
    draws = 24_000
    seen = np.zeros(24, dtype=np.int64)
    index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    for _ in range(draws):
        seen[index[tuple(shuffled(4, rng).tolist())]] += 1
    chi2 = ((seen - draws / 24) ** 2 / (draws / 24)).sum()
    assert chi2 < 50  # p < 0.001 for a fair shuffle
    # Where a row lands, over buckets: row 0 of 2**17 rows anywhere (chi-square, 15 dof).
    landing = np.zeros(16, dtype=np.int64)
    for seed in range(400):
        perm = shuffled(1 << 17, np.random.default_rng(seed))
        landing[int(np.flatnonzero(perm == 0)[0]) >> 13] += 1
    assert ((landing - 25) ** 2 / 25).sum() < 38


def test_simulate_without_rows():
    report = simulate([], num_replicas=4)
    assert (report.rows, report.steps, report.cost_quantiles) == (0, 0, {})
    assert np.isnan(report.random) and np.isnan(report.balanced)
    assert report.mean_shift == 0.0


def test_slowest_over_mean():
    assert slowest_over_mean([[1.0, 3.0], [2.0, 2.0]]) == pytest.approx(5 / 4)
    assert np.isnan(slowest_over_mean(np.zeros((0, 4))))
    with pytest.raises(ValueError, match="2-D"):
        slowest_over_mean([1.0, 2.0])


# ---------------------------------------------------------------------------
# The cost model.


def test_row_costs_of_every_input_kind():
    rows = [[3, 4], [7], [], [1, 1, 1]]
    expected = np.array([7 + 0.5 * 25, 7 + 0.5 * 49, 0, 3 + 0.5 * 3])
    column = pa.array(rows, pa.list_(pa.int32()))
    for given in (
        rows,
        column,
        pa.chunked_array([column.slice(0, 1), column.slice(1)]),
        pa.table({"seq_lengths": column}),
        pa.array([[9], *rows], pa.large_list(pa.int64())).slice(1),  # offsets not at 0
    ):
        np.testing.assert_allclose(row_costs(given, attention_weight=0.5), expected)
    packing = bfpack.pack(np.array([5, 3, 9, 2, 2]), 10)
    pieces = [packing.piece_len[a:b] for a, b in zip(packing.seq_offsets, packing.seq_offsets[1:])]
    np.testing.assert_allclose(
        row_costs(packing, attention_weight=2.0),
        [p.sum() + 2.0 * (p.astype(np.int64) ** 2).sum() for p in pieces],
    )
    assert row_costs(rows).dtype == np.float64
    assert row_costs([[4]]) == pytest.approx(4 + 16 * DEFAULT_ATTENTION_WEIGHT)


def test_row_costs_refuse_what_holds_no_lengths():
    with pytest.raises(ValueError, match="no 'seq_lengths' column"):
        row_costs(pa.table({"input_ids": [[1]]}))
    with pytest.raises(TypeError, match="pass them to balanced_order directly"):
        row_costs(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="negative"):
        row_costs([[3, -1]])
    with pytest.raises(ValueError, match="null"):
        row_costs(pa.array([[1], None], pa.list_(pa.int32())))
    for bad, error in ((-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(error, match="attention_weight"):
            row_costs([[1]], attention_weight=bad)


def test_attention_weight_from_sizes_and_configs():
    assert attention_weight(hidden_size=4096, num_layers=32) == pytest.approx(1 / (12 * 4096))
    assert attention_weight(hidden_size=8, num_layers=2, num_parameters=64) == 0.25
    config = SimpleNamespace(hidden_size=1024, num_hidden_layers=4)
    assert attention_weight(config) == pytest.approx(1 / (12 * 1024))
    assert attention_weight(config, num_parameters=1024 * 4) == 1.0
    with pytest.raises(TypeError, match="config has no num_hidden_layers"):
        attention_weight(SimpleNamespace(hidden_size=4))
    with pytest.raises(TypeError, match="needs hidden_size= and num_layers="):
        attention_weight(hidden_size=4)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        attention_weight(hidden_size=4, num_layers=0)


# ---------------------------------------------------------------------------
# Arguments.


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(costs=[[1.0]]), ValueError, "1-D"),
        (dict(costs=["a"]), TypeError, "numbers"),
        (dict(costs=[1.0, -2.0]), ValueError, r"costs\[1\] = -2.0"),
        (dict(costs=[np.inf]), ValueError, "finite"),
        (dict(num_replicas=0), ValueError, "num_replicas must be >= 1"),
        (dict(num_replicas=2.0), TypeError, "num_replicas must be an integer"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(window=0), ValueError, "window must be >= 1 steps"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(epoch=-1), ValueError, "epoch"),
        (dict(shuffle=1), TypeError, "shuffle must be True or False"),
        (dict(drop_last="no"), TypeError, "drop_last"),
        (dict(window=1 << 25, num_replicas=64), ValueError, "take a smaller window"),
    ],
)
def test_bad_arguments_say_what_to_pass(kwargs, error, match):
    args = {"costs": [1.0, 2.0], "num_replicas": 2, **kwargs}
    with pytest.raises(error, match=match):
        balanced_order(args.pop("costs"), **args)


# ---------------------------------------------------------------------------
# The sampler (the torch-free part: DataLoader and DDP in test_balance_torch.py).


def samplers(data, replicas, **kwargs):
    return [BalancedSampler(data, num_replicas=replicas, rank=r, **kwargs) for r in range(replicas)]


def test_sampler_ranks_deal_the_plan_between_them():
    costs = costs_of(600)
    ranks = samplers(costs, 4, batch_size=3, seed=2)
    for s in ranks:
        s.set_epoch(5)
    plan = balanced_order(costs, num_replicas=4, batch_size=3, seed=2, epoch=5)
    rows = [list(s) for s in ranks]
    for r, got in enumerate(rows):
        assert got == plan.order[:, r].ravel().tolist()
        assert len(ranks[r]) == 150
    assert sorted(sum(rows, [])) == list(range(600))


def test_sampler_takes_costs_directly_or_from_seq_lengths():
    table = bfpack.pack_table(
        pa.table({"input_ids": [list(range(n)) for n in [5, 30, 2, 17, 40, 9, 33, 1]]}), 48
    )
    a = list(BalancedSampler(table, num_replicas=2, rank=1, attention_weight=0.1))
    costs = row_costs(table, attention_weight=0.1)
    assert a == list(BalancedSampler(costs=costs, num_replicas=2, rank=1))
    assert a == list(BalancedSampler(costs, num_replicas=2, rank=1))
    rows = [{"seq_lengths": np.asarray(r)} for r in table.column("seq_lengths").to_pylist()]
    assert a == list(BalancedSampler(rows, num_replicas=2, rank=1, attention_weight=0.1))
    packing = bfpack.pack(np.array([5, 30, 2, 17, 40, 9, 33, 1]), 48)
    from_packing = BalancedSampler(packing, num_replicas=2, rank=1, attention_weight=0.1)
    np.testing.assert_array_equal(from_packing.costs, row_costs(packing, attention_weight=0.1))

    class MapStyle:  # any dataset whose rows hold seq_lengths
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return rows[i]

    assert a == list(BalancedSampler(MapStyle(), num_replicas=2, rank=1, attention_weight=0.1))
    measured = np.arange(len(rows), dtype=float)  # costs override the model
    assert list(BalancedSampler(MapStyle(), costs=measured, num_replicas=2, rank=1)) == list(
        BalancedSampler(measured, num_replicas=2, rank=1)
    )


def test_sampler_resumes_exactly():
    costs = costs_of(1000)
    first = BalancedSampler(costs, num_replicas=4, rank=2, batch_size=2, seed=7)
    first.set_epoch(3)
    it = iter(first)
    head = [next(it) for _ in range(37)]
    state = first.state_dict()
    assert state["position"] == 37 and state["epoch"] == 3
    rest = list(it)
    resumed = BalancedSampler(costs, num_replicas=4, rank=2, batch_size=2, seed=7)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # as saved in a checkpoint
    resumed.set_epoch(3)  # the loop sets the saved epoch again: the position stays
    assert len(resumed) == len(rest)
    assert list(resumed) == rest
    assert len(resumed) == 250  # the next iteration is a whole epoch again
    resumed.set_epoch(4)
    assert list(resumed) != head + rest
    # consumed: what training used, behind what a prefetching loader took.
    behind = first.state_dict(consumed=10)
    again = BalancedSampler(costs, num_replicas=4, rank=2, batch_size=2, seed=7)
    again.load_state_dict(behind)
    assert list(again) == (head + rest)[10:]
    fresh = BalancedSampler(costs, num_replicas=4, rank=2, batch_size=2, seed=7)
    fresh.load_state_dict(behind)
    fresh.set_epoch(0)  # another epoch than the saved one: from its start
    assert len(list(fresh)) == 250


def test_sampler_state_from_another_setup_is_refused():
    costs = costs_of(100)
    state = BalancedSampler(costs, num_replicas=4, rank=0).state_dict()
    other = BalancedSampler(costs, num_replicas=4, rank=0, window=8)
    with pytest.raises(ValueError, match="saved with window=16, this sampler has window=8"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="state lacks"):
        other.load_state_dict({"epoch": 0})
    with pytest.raises(TypeError, match="state must be a dict"):
        other.load_state_dict([])
    with pytest.raises(ValueError, match="consumed must be between 0 and 25"):
        other.state_dict(consumed=26)


def test_sampler_bad_arguments():
    costs = costs_of(10)
    with pytest.raises(TypeError, match="needs a packed dataset or costs="):
        BalancedSampler(num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="costs has 10 values for a dataset of 3 rows"):
        BalancedSampler([[1], [2], [3]], costs=costs, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="rank must be between 0 and 1"):
        BalancedSampler(costs, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="init_process_group"):
        BalancedSampler(costs)
    with pytest.raises(TypeError, match="takes a packed dataset"):
        BalancedSampler(3.5, num_replicas=1, rank=0)
    with pytest.raises(TypeError, match="hold no 'seq_lengths'"):
        BalancedSampler([{"input_ids": [1]}], num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="window"):
        BalancedSampler(costs, num_replicas=1, rank=0, window=0)


# ---------------------------------------------------------------------------
# bfpack balance


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A source of web-like documents and its packed output at 4096 tokens."""
    folder = tmp_path_factory.mktemp("balance")
    lengths = web_like_lengths(3000, seed=2)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.zeros(offsets[-1], np.int32)))
    pq.write_table(pa.table({"input_ids": ids}), folder / "src.parquet")
    bfpack.pack_parquet(folder / "src.parquet", folder / "out", 4096)
    return folder


def run(argv, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    return main([str(a) for a in argv]), out.getvalue(), err.getvalue()


def test_balance_command_reports_random_and_balanced(packed, monkeypatch):
    argv = ["balance", packed / "out", "--ranks", 8, 64, "--batch-size", 1, 2, "--format", "json"]
    status, out, err = run(argv, monkeypatch)
    assert status == 0, err
    report = json.loads(out)
    table = pa.concat_tables(pq.read_table(p) for p in sorted((packed / "out").glob("*.parquet")))
    costs = row_costs(table)
    assert [(r["ranks"], r["batch_size"]) for r in report["results"]] == [
        (8, 1),
        (8, 2),
        (64, 1),
        (64, 2),
    ]
    for r in report["results"]:
        expected = simulate(costs, num_replicas=r["ranks"], batch_size=r["batch_size"])
        assert r["random"] == pytest.approx(expected.random)
        assert r["balanced"] == pytest.approx(expected.balanced)
        assert r["balanced"] < r["random"]
    status, out, _ = run(["balance", packed / "out", "--ranks", 8, 16], monkeypatch)
    assert status == 0 and "random" in out and f"{table.num_rows:,} rows" in out
    assert "d 4096, 32 layers" in out


def test_balance_command_packs_a_source_at_each_length(packed, monkeypatch):
    argv = ["balance", packed / "src.parquet", "--seq-len", 2048, 4096, "--ranks", 8]
    status, out, err = run([*argv, "--hidden-size", 1024, "--layers", 8], monkeypatch)
    assert status == 0, err
    assert "at seq_len 2048" in out and "at seq_len 4096" in out
    status, out, _ = run([*argv, "--attention-weight", 0, "--format", "json"], monkeypatch)
    results = json.loads(out)["results"]
    lengths = web_like_lengths(3000, seed=2)
    for r, seq_len in zip(results, (2048, 4096)):
        costs = row_costs(bfpack.pack(lengths, seq_len), attention_weight=0)
        assert r["balanced"] == pytest.approx(simulate(costs, num_replicas=8).balanced)


def test_balance_command_errors(packed, tmp_path, monkeypatch):
    status, _, err = run(["balance", packed / "src.parquet", "--ranks", 2], monkeypatch)
    assert status == 2 and "not a directory" in err
    (tmp_path / "empty").mkdir()
    status, _, err = run(["balance", tmp_path / "empty", "--ranks", 2], monkeypatch)
    assert status == 2 and "holds no Parquet shard" in err
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"input_ids": [[1, 2]]}), tmp_path / "raw" / "a.parquet")
    status, _, err = run(["balance", tmp_path / "raw", "--ranks", 2], monkeypatch)
    assert status == 2 and "add --seq-len" in err
    argv = ["balance", packed / "out", "--ranks", 2, "--attention-weight", 1, "--layers", 2]
    status, _, err = run(argv, monkeypatch)
    assert status == 2 and "--layers goes with --hidden-size" in err
    status, _, err = run(["balance", packed / "out", "--ranks", 0], monkeypatch)
    assert status == 2 and "num_replicas must be >= 1" in err
