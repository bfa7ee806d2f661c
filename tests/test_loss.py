"""Honest loss: the packed loss is the loss over the documents alone.

``num_items_in_batch`` (what the HF Trainer and transformers' losses take),
``global_num_items`` (the divisor of one optimizer step over micro-batches
and ranks) and per-piece ``loss_weights`` with ``weighted_causal_lm_loss``,
checked against each document run alone through a tiny random Llama (no
download): with gradient accumulation under the HF Trainer, in a plain loop,
and on two ranks under DistributedDataParallel (gloo, CPU).
"""

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from integrations import need

pytestmark = pytest.mark.integration
torch = need("torch")
transformers = need("transformers")

import models  # noqa: E402

import bfpack  # noqa: E402
from bfpack.torch import (  # noqa: E402
    IGNORE_INDEX,
    PackedCollator,
    global_num_items,
    weighted_causal_lm_loss,
)

SEQ_LEN = 32
VOCAB = 64
# Every document fits in a row, so each is one piece: the loss over the
# pieces is the loss over the documents.
LENGTHS = [7, 20, 3, 13, 9, 16, 30, 5, 11, 2, 6]
# Completion-only labels: the first PROMPT[i] tokens of document i carry no
# target, so micro-batches hold very different numbers of targets.
PROMPT = [0, 15, 0, 2, 0, 10, 25, 0, 4, 0, 0]
TOL = dict(rtol=1e-4, atol=1e-6)


def tiny_llama():
    """A fresh tiny Llama, the same weights every call (seeded)."""
    return models.tiny_llama(VOCAB, SEQ_LEN)


def documents():
    rng = np.random.default_rng(0)
    ids = [rng.integers(1, VOCAB, n).tolist() for n in LENGTHS]
    labels = [[IGNORE_INDEX] * p + d[p:] for d, p in zip(ids, PROMPT, strict=True)]
    return ids, labels


@pytest.fixture(scope="module")
def rows():
    ids, labels = documents()
    table = pa.table({"input_ids": ids, "labels": labels})
    rows = bfpack.pack_table(table, SEQ_LEN, seed=0).to_pylist()
    assert len(rows) == 4 and sum(len(r["seq_lengths"]) for r in rows) == len(LENGTHS)
    return rows


@torch.no_grad()
def documents_alone(model):
    """Each document run on its own: its summed token loss and its target count."""
    out = []
    for ids, labels in zip(*documents(), strict=True):
        n = sum(x != IGNORE_INDEX for x in labels[1:])
        loss = model(
            input_ids=torch.tensor([ids]), labels=torch.tensor([labels]), use_cache=False
        ).loss
        out.append((float(loss) * n, n))
    return out


def grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def big_batch_grads(rows):
    """The reference: one batch of every row, the model's mean over all targets."""
    model = tiny_llama()
    loss = model(**PackedCollator()(rows)).loss
    loss.backward()
    return float(loss.detach()), grads(model)


# --- the collator's keys, against references written token by token --------


def naive_weights(rows):
    """Per-piece weights from the rows, token by token: ``1 / targets`` of the piece."""
    out = []
    for row in rows:
        labels, at, weights = row.get("labels", row["input_ids"]), 0, []
        for n in row["seq_lengths"]:
            piece = [IGNORE_INDEX] + list(labels[at + 1 : at + n])  # piece start masked
            count = sum(x != IGNORE_INDEX for x in piece)
            weights += [1 / count if x != IGNORE_INDEX else 0.0 for x in piece]
            at += n
        out.append(weights)
    return out


HAND_ROWS = [
    # two pieces, a one-token piece (no target), padding, a prompt mask
    {"input_ids": [5, 6, 7, 8, 9, 0, 0], "seq_lengths": [4, 1]},
    {"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, 3, 4, 5, -100], "seq_lengths": [3, 3]},
]


@pytest.mark.parametrize("layout", ["padding_free", "padded"])
def test_num_items_and_piece_weights_are_the_reference(layout):
    options = dict(seq_len=8) if layout == "padded" else {}
    batch = PackedCollator(layout, loss_weights="piece", **options)(HAND_ROWS)
    n = batch["num_items_in_batch"]
    assert n.dtype == torch.int64 and n.dim() == 0
    assert int(n) == int((batch["labels"] != IGNORE_INDEX).sum()) == 3 + 0 + 1 + 1
    w = batch["loss_weights"]
    assert w.dtype == torch.float32 and w.shape == batch["labels"].shape
    ref = naive_weights(HAND_ROWS)
    if layout == "padding_free":
        np.testing.assert_allclose(w[0], ref[0][:5] + ref[1], rtol=1e-6)
    else:
        np.testing.assert_allclose(w, [ref[0][:5] + [0.0] * 3, ref[1] + [0.0] * 2], rtol=1e-6)
    assert float(w.sum()) == pytest.approx(3)  # the pieces with a target
    assert "num_items_in_batch" not in PackedCollator(layout, num_items_in_batch=False, **options)(
        HAND_ROWS
    )
    assert "loss_weights" not in PackedCollator(layout, **options)(HAND_ROWS)


def test_collator_refuses_unknown_loss_weights():
    with pytest.raises(ValueError, match="loss_weights"):
        PackedCollator(loss_weights="document")
    with pytest.raises(TypeError, match="num_items_in_batch"):
        PackedCollator(num_items_in_batch="yes")
    assert "loss_weights='piece'" in repr(PackedCollator(loss_weights="piece"))
    assert "num_items_in_batch=False" in repr(PackedCollator(num_items_in_batch=False))


def test_global_num_items_adds_up_the_micro_batches():
    collate = PackedCollator(loss_weights="piece")
    a, b = collate(HAND_ROWS[:1]), collate(HAND_ROWS[1:])
    n = global_num_items([a, b])
    assert n.dtype == torch.int64 and int(n) == int(a["num_items_in_batch"]) + 2 == 5
    assert int(global_num_items(a)) == 3  # one batch
    # Without the key, the labels are counted as the HF Trainer counts them.
    c = PackedCollator(num_items_in_batch=False)(HAND_ROWS)
    assert int(global_num_items([c])) == 5
    w = global_num_items([a, b], key="loss_weights")
    assert w.dtype == torch.float64 and float(w) == pytest.approx(3)


def test_global_num_items_errors():
    with pytest.raises(ValueError, match="empty"):
        global_num_items([])
    with pytest.raises(TypeError, match="list of batches"):
        global_num_items(3)
    with pytest.raises(TypeError, match="batch 0"):
        global_num_items([3])
    with pytest.raises(ValueError, match="neither"):
        global_num_items([{"input_ids": torch.zeros(1, 3)}])
    with pytest.raises(ValueError, match="loss_weights='piece'"):
        global_num_items([PackedCollator()(HAND_ROWS)], key="loss_weights")
    with pytest.raises(ValueError, match="key"):
        global_num_items([PackedCollator()(HAND_ROWS)], key="labels")


def test_weighted_loss_errors():
    logits, labels = torch.zeros(1, 4, 5), torch.zeros(1, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="weights"):
        weighted_causal_lm_loss(logits, labels, torch.ones(1, 3))
    with pytest.raises(ValueError, match="logits"):
        weighted_causal_lm_loss(logits[0, 0], labels[0], torch.ones(4))
    with pytest.raises(TypeError, match="floating"):
        weighted_causal_lm_loss(logits, labels, labels)
    with pytest.raises(TypeError, match="labels"):
        weighted_causal_lm_loss(logits, labels.tolist(), torch.ones(1, 4))


# --- on the tiny Llama ---------------------------------------------------------


def test_trainer_accumulated_loss_is_the_documents_loss(rows, tmp_path):
    """The HF Trainer, 2 micro-batches of 2 packed rows accumulated into one step:
    its loss is the documents' summed token losses over their targets, not the
    mean of the micro-batches' means (the batch's own num_items_in_batch does
    not replace the Trainer's count over the accumulated micro-batches)."""
    model = tiny_llama()
    alone = documents_alone(model)
    expected = sum(s for s, _ in alone) / sum(n for _, n in alone)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=1,
        remove_unused_columns=False,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    collate = PackedCollator()
    halves = [collate(rows[:2]), collate(rows[2:])]
    assert int(halves[0]["num_items_in_batch"]) != int(halves[1]["num_items_in_batch"])
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=rows, data_collator=collate
    )
    got = trainer.train().training_loss
    assert got == pytest.approx(expected, rel=1e-5)


def test_plain_loop_accumulation_with_global_num_items(rows):
    """Two micro-batches, each divided by the step's target count: the gradient of
    one batch of every row (which a mean per micro-batch does not give)."""
    ref_loss, ref = big_batch_grads(rows)
    collate = PackedCollator()
    micro = [collate(rows[:1]), collate(rows[1:])]
    n = global_num_items(micro)
    model, total = tiny_llama(), 0.0
    for batch in micro:
        loss = model(**{**batch, "num_items_in_batch": n}).loss
        loss.backward()
        total += float(loss.detach())
    assert total == pytest.approx(ref_loss, rel=1e-5)
    for name, g in grads(model).items():
        torch.testing.assert_close(g, ref[name], **TOL, msg=name)
    # The usual mistake, each micro-batch's own mean over the steps, differs.
    wrong = tiny_llama()
    for batch in micro:
        (wrong(**batch).loss / len(micro)).backward()
    assert any(not torch.allclose(g, ref[k], **TOL) for k, g in grads(wrong).items())


def test_piece_weights_give_the_mean_of_document_means(rows):
    """Each document weighs the same: the loss is the mean over documents of each
    document's mean token loss, also accumulated over micro-batches."""
    model = tiny_llama()
    expected = float(np.mean([s / n for s, n in documents_alone(model)]))
    collate = PackedCollator(loss_weights="piece")
    micro = [collate(rows[:1]), collate(rows[1:])]
    n = global_num_items(micro, key="loss_weights")
    assert float(n) == pytest.approx(len(LENGTHS))  # one per document
    total = 0.0
    for batch in micro:
        weights = batch.pop("loss_weights")
        logits = model(**batch).logits
        loss = weighted_causal_lm_loss(logits, batch["labels"], weights, n)
        loss.backward()
        total += float(loss.detach())
    assert total == pytest.approx(expected, rel=1e-5)
    # One batch, the default divisor: the same loss and the same gradient.
    whole = collate(rows)
    weights = whole.pop("loss_weights")
    single = tiny_llama()
    logits = single(**whole).logits
    loss = weighted_causal_lm_loss(logits, whole["labels"], weights)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for name, g in grads(single).items():
        torch.testing.assert_close(g, grads(model)[name], **TOL, msg=name)
    with torch.no_grad():
        # The token-weighted loss of the same batch is another number.
        assert float(single(**whole).loss) != pytest.approx(expected, rel=1e-3)
        # The padded layout, with its 4-D mask: the same weighted loss.
        padded = PackedCollator(
            "padded", seq_len=SEQ_LEN, attention_mask=True, loss_weights="piece"
        )
        batch = padded(rows)
        weights, labels = batch.pop("loss_weights"), batch.pop("labels")
        loss = weighted_causal_lm_loss(single(**batch).logits, labels, weights)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_simulated_ranks_give_the_big_batch_gradient(rows):
    """Two ranks simulated in one process, two micro-batches each: every
    micro-batch divided by the count of all ranks (what global_num_items's
    all-reduce adds up), each rank's loss times the world size, the ranks'
    gradients averaged (what DDP does): the big batch's gradient. The real
    two-process run is test_two_ranks_give_the_big_batch_gradient (slow)."""
    ref_loss, ref = big_batch_grads(rows)
    collate, world = PackedCollator(), 2
    ranks = [[collate(rows[r::world][:1]), collate(rows[r::world][1:])] for r in range(world)]
    counts = [int(global_num_items(micro)) for micro in ranks]
    assert counts[0] != counts[1]  # each rank's own divisor would be wrong
    n = torch.tensor(sum(counts))
    averaged, total = {}, 0.0
    for micro in ranks:
        model = tiny_llama()
        for batch in micro:
            loss = model(**{**batch, "num_items_in_batch": n}).loss
            (loss * world).backward()
            total += float(loss.detach())
        for name, g in grads(model).items():
            averaged[name] = averaged.get(name, 0) + g / world
    assert total == pytest.approx(ref_loss, rel=1e-5)
    for name, g in averaged.items():
        torch.testing.assert_close(g, ref[name], **TOL, msg=name)


def _ddp_worker(rank, world, rows, init, out):
    """One rank: two micro-batches of its rows, the loss over the global count."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = torch.nn.parallel.DistributedDataParallel(tiny_llama())
        collate = PackedCollator()
        mine = rows[rank::world]  # rank 0: rows 0 and 2, rank 1: rows 1 and 3
        micro = [collate(mine[:1]), collate(mine[1:])]
        n = global_num_items(micro)
        total = torch.zeros(())
        for i, batch in enumerate(micro):
            sync = model.no_sync() if i == 0 else _nothing()
            with sync:
                loss = model(**{**batch, "num_items_in_batch": n}).loss
                (loss * world).backward()  # DDP averages the gradients over ranks
            total += loss.detach()
        dist.all_reduce(total)
        if rank == 0:
            torch.save({"loss": float(total), "grads": grads(model.module)}, out)
    finally:
        dist.destroy_process_group()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.slow  # two processes that import torch and transformers: ~20-35 s
def test_two_ranks_give_the_big_batch_gradient(rows, tmp_path):
    """DDP on two ranks (gloo, CPU), two accumulated micro-batches each, every
    micro-batch's loss over global_num_items: the gradient and loss of one
    batch of every row."""
    mp = need("torch.multiprocessing")
    out = tmp_path / "rank0.pt"
    init = f"file://{tmp_path / 'rendezvous'}"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_ddp_worker, args=(2, rows, init, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    ref_loss, ref = big_batch_grads(rows)
    assert got["loss"] == pytest.approx(ref_loss, rel=1e-5)
    for name, g in got["grads"].items():
        torch.testing.assert_close(g, ref[name], **TOL, msg=name)


def test_the_guides_loops_run():
    """The two loops of the training guide's loss section, as written there."""
    guide = (Path(__file__).parents[1] / "docs/guides/training.md").read_text()
    section = guide.split("## Loss:")[1].split("\n## ")[0]
    plain, weighted = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    scope: dict = {}
    exec(plain, scope)
    exec(weighted, scope)
    pieces = sum(len(r["seq_lengths"]) for r in scope["rows"][:4])
    assert float(scope["n"]) == pytest.approx(pieces)  # every document here has targets
