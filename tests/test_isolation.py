"""check_isolation: every piece of a packed batch alone against the batch, on a tiny Llama.

It passes on PackedCollator's batches (both layouts, SDPA and eager, train
and eval, a config with its cache on), and catches each of the usual
mistakes: the cache left on, an all-ones mask, a tokenizer's 2-D mask on
the padded batch, transformers' DataCollatorWithFlattening and
DataCollatorForLanguageModeling (SFTTrainer's defaults: tests/test_trainers.py).
Also FlexAttention's document BlockMask against the 4-D mask.
"""

import warnings

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
    IsolationError,
    PackedCollator,
    Piece,
    check_isolation,
    document_block_mask,
    document_mask_mod,
)

SEQ_LEN = 32
VOCAB = 64
LENGTHS = [7, 20, 3, 13, 1, 9, 16, 40, 5, 11, 2, 25]


def tiny_llama(attn_implementation="sdpa", **config):
    """A model and its config, the cache on as transformers' default has it."""
    return models.tiny_llama(VOCAB, 2 * SEQ_LEN, attn_implementation, **config)


@pytest.fixture(scope="module")
def model():
    return tiny_llama(use_cache=True)


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, VOCAB, n).tolist() for n in LENGTHS]
    return bfpack.pack_table(pa.table({"input_ids": docs}), SEQ_LEN, seed=0).to_pylist()


def truth(rows):
    """(row, index, start, length) of every piece, one batch row per packed row."""
    out = []
    for r, row in enumerate(rows):
        start = 0
        for i, n in enumerate(row["seq_lengths"]):
            out.append((r, i, start, n))
            start += n
    return out


def pieces(report):
    return list(
        zip(*(a.tolist() for a in (report.rows, report.pieces, report.starts, report.lengths)))
    )


COLLATORS = {
    "padding_free": lambda: PackedCollator(),
    "padded": lambda: PackedCollator("padded", seq_len=SEQ_LEN),
    "padded_4d": lambda: PackedCollator("padded", seq_len=SEQ_LEN, attention_mask=True),
}


@pytest.mark.parametrize(
    "attn, layout", [("sdpa", "padding_free"), ("sdpa", "padded_4d"), ("eager", "padded")]
)
def test_packed_collator_batches_are_isolated(model, rows, attn, layout):
    # use_cache=True in the config (transformers' default): the batch's own
    # use_cache=False turns it off, in eval() and in train() alike.
    model = model if attn == "sdpa" else tiny_llama(attn, use_cache=True)
    model.train()
    batch = COLLATORS[layout]()(rows)
    assert batch["use_cache"] is False
    for train in (False, True):
        report = check_isolation(model, batch, train=train)
        assert report.ok and report.max_abs_error < 1e-5, report
        assert report.num_pieces == sum(len(r["seq_lengths"]) for r in rows)
    assert model.training  # the mode it was given back in
    model.model.layers[0].eval()  # modes are restored module by module
    check_isolation(model, batch)
    assert model.training and not model.model.layers[0].training
    model.train()
    if layout != "padding_free":  # pieces found from positions, padding left out
        assert pieces(report) == truth(rows)
    given = check_isolation(model, batch, seq_lengths=rows, strict=True)
    assert given.ok and given.num_pieces == report.num_pieces


def test_the_cache_left_on_is_caught_in_eval_and_train(model, rows):
    # Mistake 1: a batch without use_cache=False, a config with the cache on.
    batch = PackedCollator(disable_cache=False)(rows)
    assert "use_cache" not in batch
    for train in (False, True):
        report = check_isolation(model, batch, train=train)
        assert not report.ok and report.max_abs_error > 0.05, report
        assert report.worst.piece > 0  # a row's first piece sees nothing before it
    padded = PackedCollator("padded", seq_len=SEQ_LEN, disable_cache=False)(rows)
    assert not check_isolation(model.eval(), padded).ok


def test_an_all_ones_mask_is_caught(model, rows):
    # Mistake 2.
    for collate in (PackedCollator(), PackedCollator("padded", seq_len=SEQ_LEN)):
        batch = collate(rows)
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        report = check_isolation(model, batch)
        assert not report.ok and report.leaking.shape[0] > 0
        with pytest.raises(IsolationError, match=r"piece \d+ of batch row \d+.*use_cache=False"):
            report.raise_if_leaking()
        with pytest.raises(IsolationError, match="attention_mask"):
            check_isolation(model, batch, strict=True)


def test_a_tokenizers_2d_mask_on_the_padded_batch_is_caught(model, rows):
    # Mistake 3: ones on the tokens, zeros on the padding, as tokenizer.pad gives.
    batch = PackedCollator("padded", seq_len=SEQ_LEN)(rows)
    used = torch.tensor([sum(r["seq_lengths"]) for r in rows])
    batch["attention_mask"] = (torch.arange(SEQ_LEN)[None] < used[:, None]).long()
    report = check_isolation(model, batch)
    assert not report.ok and report.worst.piece > 0


def test_data_collator_with_flattening_is_caught(model, rows):
    # Mistake 4: it reads each packed row as one document; the rows' own
    # seq_lengths tell check_isolation where the pieces are.
    collate = transformers.DataCollatorWithFlattening()
    batch = collate([{"input_ids": r["input_ids"]} for r in rows])
    report = check_isolation(model, batch, seq_lengths=rows)
    assert not report.ok and report.num_pieces == len(truth(rows))


def test_hf_data_collator_for_language_modeling_is_caught(model, rows):
    # Mistake 5: padded rows with a 2-D mask and no positions.
    tokenizer = char_tokenizer()
    collate = transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False)
    batch = collate([{"input_ids": r["input_ids"]} for r in rows])
    with pytest.raises(ValueError, match="pass seq_lengths="):
        check_isolation(model, batch)
    report = check_isolation(model, batch, seq_lengths=rows)
    assert not report.ok and report.worst.piece > 0


def char_tokenizer():
    """A tokenizer defined here (one token per id, nothing downloaded)."""
    tokenizers = need("tokenizers")
    vocab = {f"t{i}": i for i in range(VOCAB)}
    inner = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t1"))
    inner.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=inner, pad_token="t0", eos_token="t2"
    )


def test_max_pieces_spreads_the_checked_pieces(model, rows):
    batch = PackedCollator("padded", seq_len=SEQ_LEN)(rows)
    report = check_isolation(model, batch, max_pieces=3)
    everything = truth(rows)
    assert report.num_pieces == len(everything) and len(report.errors) == 3
    assert pieces(report) == [everything[0], everything[len(everything) // 2], everything[-1]]
    assert report.worst in [Piece(*p) for p in pieces(report)]
    assert "checked=3 of" in repr(report)


class Toy(torch.nn.Module):
    """Not a transformers model: logits from each token and, with ``look_back``,
    the sum of the tokens before it in its row (across documents)."""

    def __init__(self, look_back):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, VOCAB)
        self.look_back = look_back

    def forward(self, input_ids, labels=None, position_ids=None):
        x = self.embed(input_ids)
        return x.cumsum(1) if self.look_back else x


def test_any_module_returning_logits(rows):
    batch = PackedCollator(
        "padded", seq_len=SEQ_LEN, disable_cache=False, num_items_in_batch=False
    )(rows)
    assert check_isolation(Toy(look_back=False), batch).ok
    report = check_isolation(Toy(look_back=True), batch)
    assert not report.ok and report.worst.piece > 0
    flat = Toy(look_back=False)
    flat.forward = lambda input_ids, **kwargs: input_ids.float()  # [B, T]: no vocabulary
    with pytest.raises(TypeError, match="logits of shape"):
        check_isolation(flat, batch)


def test_tolerance(model, rows):
    batch = PackedCollator(disable_cache=False)(rows)
    report = check_isolation(model.eval(), batch)
    assert report.tolerance == 1e-4
    loose = check_isolation(model, batch, tolerance=10.0)
    assert loose.ok and loose.max_abs_error == report.max_abs_error


def test_the_arguments_are_checked(model, rows):
    batch = PackedCollator()(rows)
    cases = [
        (dict(model=lambda **kw: None), TypeError, "torch.nn.Module"),
        (dict(batch=[1, 2]), TypeError, "mapping"),
        (dict(batch={"input_ids": [[1, 2]]}), ValueError, r"\[B, T\].*PackedCollator"),
        (dict(tolerance="1e-4"), TypeError, "tolerance must be a number"),
        (dict(tolerance=0.0), ValueError, "tolerance must be > 0"),
        (dict(max_pieces=0), ValueError, "max_pieces"),
        (dict(train=1), TypeError, "train"),
        (dict(seq_lengths="3"), TypeError, "list of the packed rows"),
        (dict(seq_lengths=[[0, 3]]), ValueError, "piece lengths >= 1"),
        (dict(seq_lengths=[[500]]), ValueError, "add up to 500 tokens"),
    ]
    for change, error, message in cases:
        args = dict(model=model, batch=batch) | change
        with pytest.raises(error, match=message):
            check_isolation(args.pop("model"), args.pop("batch"), **args)
    padded = PackedCollator("padded", seq_len=SEQ_LEN)(rows)
    with pytest.raises(ValueError, match="one per batch row"):
        check_isolation(model, padded, seq_lengths=rows[:2])
    flat = dict(padded, cu_seq_lens_q=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="padding-free, one row"):
        check_isolation(model, flat)


# ---------------------------------------------------------------------------
# FlexAttention


def test_document_block_mask_is_the_block_diagonal_causal_mask(rows):
    from torch.nn.attention.flex_attention import create_mask, flex_attention

    padded = PackedCollator("padded", seq_len=SEQ_LEN, attention_mask=True, document_ids=True)(rows)
    dense = padded["attention_mask"][:, 0] == 0  # the collator's 4-D mask: True = attend
    ids = padded["document_ids"]
    mod = document_mask_mod(ids)
    made = create_mask(mod, len(rows), None, SEQ_LEN, SEQ_LEN, device="cpu")[:, 0]
    assert torch.equal(made, dense)
    # The BlockMask itself: flex attention with it is SDPA with the dense mask.
    block = document_block_mask(ids, block_size=8)
    q, k, v = torch.randn(3, len(rows), 2, SEQ_LEN, 8).unbind(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex attention unfused on CPU
        got = flex_attention(q, k, v, block_mask=block)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense[:, None])
    assert (got - want).abs().max() < 1e-5
    # Padding-free: pieces numbered across the one flattened row.
    flat = PackedCollator(document_ids=True)(rows)
    n = flat["input_ids"].shape[1]
    doc = flat["document_ids"][0]
    reference = (doc[:, None] == doc[None]) & torch.ones(n, n, dtype=torch.bool).tril()
    made = create_mask(document_mask_mod(flat["document_ids"]), 1, None, n, n, device="cpu")
    assert torch.equal(made[0, 0], reference)
    with pytest.raises(TypeError, match="PackedCollator\\(document_ids=True\\)"):
        document_block_mask([[0, 0, 1]])
    with pytest.raises(ValueError, match="integer tensor of shape"):
        document_block_mask(torch.zeros(4))
