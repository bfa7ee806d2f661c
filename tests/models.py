"""The tiny causal language model of the integration tests (needs torch and transformers).

Built from a config, never downloaded; seeded, so every call gives the same
weights. A fresh one per check: a transformers ``Trainer`` writes
``use_cache=False`` into the config of the model it trains.
"""

import torch
import transformers


def tiny_llama(vocab_size=64, max_positions=64, attn_implementation="sdpa", **config):
    """A 2-layer Llama of hidden size 32 (``config``: more ``LlamaConfig`` fields)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        attn_implementation=attn_implementation,
        **config,
    )
    return transformers.LlamaForCausalLM(config)
