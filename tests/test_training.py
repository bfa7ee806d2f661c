"""The proof: a causal LM on bfpack's packed batches sees each document alone.

A tiny randomly initialised Llama (built from a config, float32, CPU; no
download) gives, on a packed batch, the same logits as on each piece run
on its own, and the loss of a packed batch is the token-weighted mean of
the pieces' own losses: no attention and no target crosses a document
boundary. The same checks catch the usual mistakes (an all-ones attention
mask, labels kept at piece starts, a cache left on), so they can tell.
"""

import numpy as np
import pyarrow as pa
import pytest

from integrations import need

pytestmark = pytest.mark.integration
torch = need("torch")
transformers = need("transformers")

import models  # noqa: E402

import bfpack  # noqa: E402
from bfpack.torch import PackedCollator  # noqa: E402

SEQ_LEN = 32
VOCAB = 97
# Several pieces per row, a one-token document, and one longer than SEQ_LEN
# (split into a 32-token chunk and a remainder).
LENGTHS = [7, 20, 3, 13, 1, 9, 16, 40, 5, 11, 2, 25]
ATOL = 1e-5


def tiny_llama(attn_implementation):
    return models.tiny_llama(VOCAB, 2 * SEQ_LEN, attn_implementation).eval()


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, VOCAB, n).tolist() for n in LENGTHS]
    packed = bfpack.pack_table(pa.table({"input_ids": docs}), SEQ_LEN, seed=0)
    rows = packed.to_pylist()
    assert max(len(r["seq_lengths"]) for r in rows) >= 3  # rows of several pieces
    return rows


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(request):
    return tiny_llama(request.param)


def pieces_of(rows):
    """Every piece's tokens, row by row, as the collator lays them out."""
    out = []
    for row in rows:
        at = 0
        for n in row["seq_lengths"]:
            out.append(row["input_ids"][at : at + n])
            at += n
    return out


@torch.no_grad()
def alone(model, piece):
    """Logits of one piece run on its own, and its summed loss and target count."""
    ids = torch.tensor([piece])
    out = model(input_ids=ids, labels=ids, use_cache=False)
    targets = len(piece) - 1
    return out.logits[0], (out.loss * targets if targets else torch.tensor(0.0)), targets


def slots(batch, rows):
    """``(batch row, first slot)`` of every piece in the batch, in order."""
    if "cu_seq_lens_q" in batch:  # padding-free: one flat row
        return [(0, s) for s in batch["cu_seq_lens_q"][:-1].tolist()]
    out = []
    for b, row in enumerate(rows):
        starts = np.cumsum(row["seq_lengths"]) - row["seq_lengths"]
        out += [(b, int(s)) for s in starts]
    return out


@torch.no_grad()
def assert_documents_alone(model, batch, rows, **forward):
    """The packed batch gives each piece's own logits, and the mean of their losses."""
    out = model(**batch, **forward)
    pieces = pieces_of(rows)
    loss_sum, targets, worst = 0.0, 0, 0.0
    for (b, at), piece in zip(slots(batch, rows), pieces, strict=True):
        logits, piece_loss, piece_targets = alone(model, piece)
        got = out.logits[b, at : at + len(piece)]
        worst = max(worst, float((got - logits).abs().max()))
        loss_sum += float(piece_loss)
        targets += piece_targets
    assert worst < ATOL, f"logits differ from each document alone by {worst:.3g}"
    expected = loss_sum / targets
    assert abs(float(out.loss) - expected) < ATOL, (
        f"loss {float(out.loss):.6f} is not the token-weighted mean of the documents' "
        f"losses {expected:.6f}"
    )


def test_padding_free(model, rows):
    batch = PackedCollator()(rows)
    assert "attention_mask" not in batch
    assert_documents_alone(model, batch, rows)


def test_padded_with_the_4d_mask(model, rows):
    batch = PackedCollator("padded", seq_len=SEQ_LEN, attention_mask=True)(rows)
    assert batch["input_ids"].shape == (len(rows), SEQ_LEN)
    assert_documents_alone(model, batch, rows)
    # The 4-D mask keeps documents apart with the cache on, too.
    batch = PackedCollator("padded", seq_len=SEQ_LEN, attention_mask=True, disable_cache=False)(
        rows
    )
    assert_documents_alone(model, batch, rows)


def test_padded_with_position_ids_only(model, rows):
    # Padding slots sit at position 0, so each is a sequence of its own.
    batch = PackedCollator("padded", seq_len=SEQ_LEN)(rows)
    assert_documents_alone(model, batch, rows)


# ---------------------------------------------------------------------------
# The same checks on wrong batches must fail: they can tell.


def test_an_all_ones_mask_is_caught(model, rows):
    batch = PackedCollator()(rows)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    with pytest.raises(AssertionError, match="logits differ"):
        assert_documents_alone(model, batch, rows)
    padded = PackedCollator("padded", seq_len=SEQ_LEN)(rows)
    padded["attention_mask"] = torch.ones_like(padded["input_ids"])
    with pytest.raises(AssertionError, match="logits differ"):
        assert_documents_alone(model, padded, rows)


def test_labels_kept_at_piece_starts_are_caught(model, rows):
    for batch in (
        PackedCollator()(rows),
        PackedCollator("padded", seq_len=SEQ_LEN, attention_mask=True)(rows),
    ):
        starts = batch["labels"] == -100
        real = batch["position_ids"] == 0  # piece starts (and padding in the padded layout)
        batch["labels"] = torch.where(
            starts & real & (batch["input_ids"] != 0), batch["input_ids"], batch["labels"]
        )
        with pytest.raises(AssertionError, match="not the token-weighted mean"):
            assert_documents_alone(model, batch, rows)


def test_positions_without_use_cache_false_are_caught(model, rows):
    # transformers splits packed rows by their positions only without a cache.
    batch = PackedCollator(disable_cache=False)(rows)
    with pytest.raises(AssertionError, match="logits differ"):
        assert_documents_alone(model, batch, rows)
    model.train()  # no dropout in this config; the cache is the difference
    try:
        with pytest.raises(AssertionError, match="logits differ"):
            assert_documents_alone(model, batch, rows)
    finally:
        model.eval()
