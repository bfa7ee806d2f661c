"""TRL: an ``SFTConfig`` that trains bfpack's packed rows with each document alone.

``pip install 'bfpack[trl]'``. Imported only when used.

TRL's ``SFTTrainer`` reads a packed row's ``seq_lengths`` (its own packing
writes the same column), but only with ``padding_free=True``. With its
defaults (``padding_free=False``) it pads every packed row with a 2-D
attention mask, and the documents of a row attend to each other, with no
warning. :func:`sft_config` builds the config that keeps them apart;
:func:`check_sft_config` refuses one that would not, naming the fix.
"""

from __future__ import annotations

from typing import Any

from ._optional import requires

# trl first: it brings transformers and torch, so the one to install is named.
with requires("trl", needed_by="bfpack.trl"):
    from trl import SFTConfig
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as _TRLCollator
with requires("trl", needed_by="bfpack.trl"):
    import transformers

__all__ = ["RECIPE", "check_sft_config", "sft_config"]

#: Collators that read each packed row as one document.
_WRONG = (transformers.DataCollatorWithFlattening, transformers.DataCollatorForLanguageModeling)

#: The SFTConfig options that keep bfpack's packed documents apart.
RECIPE = {"padding_free": True, "max_length": None, "packing": False}


def sft_config(**options: Any) -> SFTConfig:
    """An ``SFTConfig`` for bfpack's packed rows (``RECIPE`` and your options).

    Parameters
    ----------
    **options
        Any other ``SFTConfig`` option (``output_dir``, ``learning_rate``,
        ``per_device_train_batch_size``, ...). One that would let documents
        attend to each other is refused (see :func:`check_sft_config`).

    Returns
    -------
    trl.SFTConfig
        Give it to ``SFTTrainer(args=...)`` with the packed dataset as
        ``train_dataset`` and no ``data_collator``: TRL's padding-free
        collator reads each row's ``seq_lengths``.

    Examples
    --------
    >>> config = sft_config(output_dir="out", max_steps=100)      # doctest: +SKIP
    >>> trainer = trl.SFTTrainer(model, args=config, train_dataset=packed,
    ...                          processing_class=tokenizer)     # doctest: +SKIP
    """
    config = SFTConfig(**{**RECIPE, **options})
    check_sft_config(config)
    return config


def check_sft_config(config: Any, *, data_collator: Any = None) -> None:
    """Refuse an ``SFTConfig`` (and collator) under which packed documents would mix.

    Parameters
    ----------
    config : trl.SFTConfig
        The config ``SFTTrainer`` will train bfpack's packed rows with.
    data_collator : callable, optional
        The ``data_collator`` given to ``SFTTrainer``, if any. ``None``: TRL's
        own collator, which keeps documents apart only with
        ``padding_free=True``. :class:`bfpack.torch.PackedCollator` keeps
        them apart with ``padding_free=False`` (TRL refuses a collator with
        ``padding_free=True``).

    Raises
    ------
    TypeError
        ``config`` is not an ``SFTConfig``.
    ValueError
        The config would let documents attend to each other, drop their
        boundaries or cut rows; the message names the option to change.
    """
    if not isinstance(config, SFTConfig):
        raise TypeError(
            f"config must be a trl.SFTConfig, got {type(config).__name__}; build one with "
            f"bfpack.trl.sft_config(output_dir=...)"
        )
    fix = "SFTConfig(padding_free=True, max_length=None, packing=False)"
    for option in ("packing", "eval_packing"):
        if getattr(config, option, None):
            raise ValueError(
                f"{option}=True makes TRL pack bfpack's rows again: it drops their "
                f"seq_lengths and reads each packed row as one document, whose pieces then "
                f"attend to each other. The rows are packed already: pass {option}=False, "
                f"as in {fix}"
            )
    if data_collator is None:
        if not config.padding_free:
            raise ValueError(
                f"padding_free=False makes TRL's collator pad each packed row with an "
                f"attention_mask of ones, so its documents attend to each other: pass "
                f"{fix}, or padding_free=False with "
                f"data_collator=bfpack.torch.PackedCollator()"
            )
    elif config.padding_free:
        raise ValueError(
            "SFTTrainer refuses a data_collator with padding_free=True: pass "
            "padding_free=False with data_collator=bfpack.torch.PackedCollator(), or "
            f"no data_collator with {fix}"
        )
    elif isinstance(data_collator, _TRLCollator) and not data_collator.padding_free:
        raise ValueError(
            "trl's DataCollatorForLanguageModeling without padding_free=True pads each "
            "packed row with an attention_mask of ones, so its documents attend to each "
            "other: use data_collator=bfpack.torch.PackedCollator()"
        )
    elif isinstance(data_collator, _WRONG):
        raise ValueError(
            f"transformers' {type(data_collator).__name__} reads each packed row as one "
            f"document, so its pieces attend to each other: use "
            f"data_collator=bfpack.torch.PackedCollator()"
        )
    if config.max_length is not None:
        raise ValueError(
            f"max_length={config.max_length} makes TRL cut every row to that many tokens "
            f"but not its seq_lengths; bfpack's rows are at most seq_len tokens already: "
            f"pass max_length=None, as in {fix}"
        )
