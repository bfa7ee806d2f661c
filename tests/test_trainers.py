"""Every training route end to end on a tiny Llama, each with the logits check.

HF Trainer and TRL's SFTTrainer on bfpack's packed rows: the batch each
passes to the model (captured by a forward hook) goes through
check_isolation. TRL's defaults mix documents (caught, and refused by
bfpack.trl.check_sft_config); the Trainer's default remove_unused_columns
is refused with the fix. The README's Training examples run as written
(the DDP one under torchrun).
"""

import contextlib
import re
from pathlib import Path

import numpy as np
import pytest

from integrations import need

pytestmark = pytest.mark.integration
torch = need("torch")
transformers = need("transformers")

import models  # noqa: E402

datasets = need("datasets")
trl = need("trl")

from bfpack.hf import pack_dataset  # noqa: E402
from bfpack.torch import PackedCollator, check_isolation  # noqa: E402
from bfpack.trl import RECIPE, check_sft_config, sft_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEQ_LEN = 32
VOCAB = 64


def tiny_llama():
    """A fresh model and config per check: a Trainer writes use_cache=False into its config."""
    return models.tiny_llama(VOCAB, 2 * SEQ_LEN)


def tokenizer():
    tokenizers = need("tokenizers")
    vocab = {f"t{i}": i for i in range(VOCAB)}
    inner = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t1"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=inner, pad_token="t0")


@pytest.fixture(scope="module")
def packed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 30)
    docs = datasets.Dataset.from_dict(
        {"input_ids": [rng.integers(3, VOCAB, n).tolist() for n in lengths]}
    )
    return pack_dataset(docs, SEQ_LEN, seed=0)


@contextlib.contextmanager
def first_forward(model):
    """The keyword arguments of the model's first call, as the trainer passed them."""
    seen = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True
    )
    try:
        yield seen
    finally:
        hook.remove()


def as_batch(kwargs):
    # TRL asks its patched forward for log-probabilities instead of logits;
    # the attention (what is checked) is the same.
    return {k: v for k, v in kwargs.items() if k != "fused_lm_head"}


def rows_of(batch, packed):
    """The packed rows of a padded batch's rows, found by their tokens."""
    by_tokens = {tuple(r["input_ids"]): r for r in packed.to_list()}
    used = batch["attention_mask"].sum(1).tolist()
    return [by_tokens[tuple(ids[:n])] for ids, n in zip(batch["input_ids"].tolist(), used)]


def run(trainer_class, model, **kwargs):
    with first_forward(model) as seen:
        trainer_class(model, **kwargs).train()
    return as_batch(seen[0])


def trainer_args(tmp_path, **options):
    return transformers.TrainingArguments(
        str(tmp_path), max_steps=1, per_device_train_batch_size=4, report_to=[],
        save_strategy="no", use_cpu=True, **options,
    )  # fmt: skip


def sft_args(tmp_path, **options):
    base = dict(max_steps=1, per_device_train_batch_size=4, report_to=[], save_strategy="no")
    base.update(use_cpu=True, bf16=False)  # float32: bf16 autocast would stay on the forward
    return base | options | dict(output_dir=str(tmp_path))


def test_hf_trainer_with_packed_collator(packed, tmp_path):
    model = tiny_llama()
    args = trainer_args(tmp_path, remove_unused_columns=False)
    batch = run(transformers.Trainer, model, args=args, train_dataset=packed,
                data_collator=PackedCollator())  # fmt: skip
    assert batch["use_cache"] is False and "attention_mask" not in batch
    report = check_isolation(model, batch)
    assert report.ok and report.num_pieces > 4, report
    # Evaluation runs the model in eval(), where a cache is on by default.
    model.config.use_cache = True
    trainer = transformers.Trainer(model, args, eval_dataset=packed.select(range(4)),
                                   data_collator=PackedCollator())  # fmt: skip
    with first_forward(model) as seen:
        trainer.evaluate()
    assert check_isolation(model, as_batch(seen[0])).ok


def test_hf_trainer_default_columns_name_the_fix(packed, tmp_path):
    trainer = transformers.Trainer(
        tiny_llama(), trainer_args(tmp_path), train_dataset=packed, data_collator=PackedCollator()
    )
    with pytest.raises(
        ValueError, match=re.escape("TrainingArguments(remove_unused_columns=False)")
    ):
        trainer.train()


def test_sft_trainer_recipe(packed, tmp_path):
    model = tiny_llama()
    args = sft_config(**sft_args(tmp_path))
    assert (args.padding_free, args.max_length, args.packing) == (True, None, False)
    batch = run(trl.SFTTrainer, model, args=args, train_dataset=packed,
                processing_class=tokenizer())  # fmt: skip
    report = check_isolation(model, batch)
    assert report.ok and report.num_pieces > 4, report
    starts = batch["cu_seq_lens_q"][:-1].long()
    assert (batch["labels"][0, starts] == -100).all()  # no target crosses a boundary


def test_sft_trainer_with_packed_collator(packed, tmp_path):
    model = tiny_llama()
    collate = PackedCollator()
    options = sft_args(tmp_path, max_length=None, packing=False)
    args = trl.SFTConfig(**options)
    check_sft_config(args, data_collator=collate)
    batch = run(trl.SFTTrainer, model, args=args, train_dataset=packed,
                processing_class=tokenizer(), data_collator=collate)  # fmt: skip
    assert check_isolation(model, batch).ok


def test_sft_trainer_defaults_mix_documents_and_are_refused(packed, tmp_path):
    # Mistake 6: SFTTrainer's defaults pad each packed row with a 2-D mask.
    model = tiny_llama()
    args = trl.SFTConfig(**sft_args(tmp_path))
    with pytest.raises(ValueError, match=re.escape("padding_free=True, max_length=None")):
        check_sft_config(args)
    batch = run(trl.SFTTrainer, model, args=args, train_dataset=packed,
                processing_class=tokenizer())  # fmt: skip
    report = check_isolation(model, batch, seq_lengths=rows_of(batch, packed))
    assert not report.ok and report.worst.piece > 0, report


def test_check_sft_config_refuses_each_leak(tmp_path):
    def config(**options):
        options = {**RECIPE, **options}
        return trl.SFTConfig(output_dir=str(tmp_path), report_to=[], bf16=False, **options)

    check_sft_config(config())
    cases = [
        (config(packing=True, max_length=SEQ_LEN), {}, "packing=True makes TRL pack"),
        (config(eval_packing=True), {}, "eval_packing=False"),
        (config(max_length=1024), {}, r"max_length=None"),
        (config(padding_free=False), {}, "padding_free=False makes TRL's collator"),
        (config(), dict(data_collator=PackedCollator()), "padding_free=False with data_coll"),
        (
            config(padding_free=False),
            dict(data_collator=transformers.DataCollatorWithFlattening()),
            "DataCollatorWithFlattening reads each packed row as one",
        ),
        (
            config(padding_free=False),
            dict(data_collator=trl.trainer.sft_trainer.DataCollatorForLanguageModeling(0)),
            "without padding_free=True",
        ),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            check_sft_config(args, **kwargs)
    with pytest.raises(TypeError, match="trl.SFTConfig"):
        check_sft_config(transformers.TrainingArguments(str(tmp_path)))
    with pytest.raises(ValueError, match="packing=True"):
        sft_config(output_dir=str(tmp_path), packing=True, max_length=SEQ_LEN, bf16=False)


# ---------------------------------------------------------------------------
# The README's Training section, run as written.


def readme_blocks():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Training: four routes")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_has_one_block_per_route():
    blocks = readme_blocks()
    assert len(blocks) == 4
    assert ["check_isolation(" in b and "strict=True" in b for b in blocks] == [True] * 4


@pytest.mark.parametrize("route", [0, 1, 2], ids=["loop", "trainer", "sft"])
def test_the_readmes_example_runs(route, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the trainers' output directories
    code = readme_blocks()[route]
    exec(compile(code, f"README.md route {route}", "exec"), {"__name__": "__readme__"})


# The fourth route, DDP with BalancedSampler over a packed directory, is the
# loop of docs/guides/balanced-steps.md: tests/test_balance_torch.py checks
# that the README shows it and runs it under torchrun on two processes.
