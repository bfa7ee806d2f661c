"""Training glue: ``bfpack.torch.PackedCollator`` next to a training step.

Collation throughput (tokens per second) of a batch of 8 packed rows of
2048 tokens, in each layout, and the time of one training step (forward,
backward, AdamW) of a tiny randomly initialised Llama (2 layers, hidden
64, float32, SDPA, CPU) on a batch of 4 rows of 512 tokens, with the share
of that step the collation of its batch takes: a reader sees whether
collation could ever be the bottleneck (a real model's step is far slower
than this tiny one's). The rows are dicts of numpy arrays, as
``PackedDataset`` and a ``datasets.Dataset`` in numpy format yield them.
Skipped when torch or transformers is missing; in smoke mode the rows are
128 tokens and the step's batch 2 rows of 64.
"""

import numpy as np

import bfpack

from .common import MAX_DOCS, Benchmark, make_token_table, median_seconds

try:
    import torch
    import transformers

    from bfpack.torch import PackedCollator
except ImportError:  # the benchmarks below are skipped
    torch = transformers = PackedCollator = None

SMOKE = MAX_DOCS is not None
#: Collation: rows per batch and tokens per row.
COLLATE_ROWS, COLLATE_LEN = (2, 128) if SMOKE else (8, 2048)
#: The training step: rows per batch and tokens per row.
STEP_ROWS, STEP_LEN = (2, 64) if SMOKE else (4, 512)
#: The tiny model's vocabulary: token ids are taken modulo it.
VOCAB = 256

LAYOUTS = {
    "padding_free": dict(),
    "padded": dict(layout="padded"),
    "padded_mask": dict(layout="padded", attention_mask=True),
}


def require_torch():
    """Raise ``NotImplementedError`` (asv: skip) without torch and transformers."""
    if torch is None:
        raise NotImplementedError("torch and transformers are not installed")


def packed_rows(rows, seq_len):
    """``rows`` packed rows of ``seq_len`` tokens (ids below ``VOCAB``), as dicts of
    numpy arrays: the first rows of ``pack_table`` over web-like documents."""
    table = make_token_table(2 * rows * seq_len)
    packed = bfpack.pack_table(table, seq_len, seed=0).slice(0, rows)
    return [
        {
            "input_ids": np.asarray(row["input_ids"], dtype=np.int32) % VOCAB,
            "seq_lengths": np.asarray(row["seq_lengths"], dtype=np.int32),
        }
        for row in packed.to_pylist()
    ]


def collator(layout, seq_len):
    options = LAYOUTS[layout]
    if options.get("layout") == "padded":
        options = dict(options, seq_len=seq_len)
    return PackedCollator(**options)


def tiny_llama(seq_len):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=seq_len,
        attn_implementation="sdpa",
    )
    return transformers.LlamaForCausalLM(config)


class Collate(Benchmark):
    """``PackedCollator`` on 8 packed rows of 2048 tokens."""

    params = [list(LAYOUTS)]
    param_names = ["layout"]

    def setup(self, layout):
        require_torch()
        self.rows = packed_rows(COLLATE_ROWS, COLLATE_LEN)
        self.tokens = sum(int(r["seq_lengths"].sum()) for r in self.rows)
        self.collate = collator(layout, COLLATE_LEN)
        self.collate(self.rows)

    def time_collate(self, layout):
        self.collate(self.rows)

    def track_tokens_per_second(self, layout):
        return self.tokens / median_seconds(lambda: self.collate(self.rows), runs=7)

    track_tokens_per_second.unit = "tokens/s"


class TrainStep(Benchmark):
    """One training step of a tiny Llama on 4 packed rows of 512 tokens."""

    params = [["padding_free", "padded_mask"]]
    param_names = ["layout"]

    def setup(self, layout):
        require_torch()
        self.rows = packed_rows(STEP_ROWS, STEP_LEN)
        self.collate = collator(layout, STEP_LEN)
        self.model = tiny_llama(STEP_LEN).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.batch = self.collate(self.rows)
        self.step()  # first-call allocations and kernel selection

    def step(self):
        loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def time_train_step(self, layout):
        self.step()

    def track_collate_percent_of_step(self, layout):
        collate = median_seconds(lambda: self.collate(self.rows), runs=7)
        return 100 * collate / median_seconds(self.step, runs=3)

    track_collate_percent_of_step.unit = "% of a step"
