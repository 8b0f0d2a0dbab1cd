"""Twins: models with a real checkpoint's module tree at tiny widths, built offline."""

from __future__ import annotations

import torch

from .build import build_model, config_from_dict, model_class
from .catalog import checkpoint_config, resolve_checkpoint, shipped_checkpoints
from .families import Family, family_of_model_type, get_family
from .processor import build_processor, checkpoint_or_reference_file
from .shrink import shrink_config


def checkpoint_family(checkpoint: str) -> Family:
    """The family of a shipped checkpoint, checked against the installed transformers."""
    family = family_of_model_type(checkpoint_config(checkpoint)["model_type"])
    return get_family(family.name)


def twins() -> list[str]:
    """Hub ids of the checkpoints `twin()` can build (every shipped config)."""
    return list(shipped_checkpoints())


def real_model_on_meta(checkpoint: str) -> torch.nn.Module:
    """The real-size model of a shipped checkpoint on the meta device (no memory, no weights)."""
    checkpoint = resolve_checkpoint(checkpoint)
    checkpoint_family(checkpoint)
    config = checkpoint_config(checkpoint)
    with torch.device("meta"):
        return model_class(config)._from_config(config_from_dict(config))


def twin(checkpoint: str, seed: int = 0, attn_implementation: str = "sdpa"):
    """A twin of a shipped checkpoint and its processor: real module tree, tiny widths, random weights.

    Same decoder layers, vision blocks, module names, special-token ids, `_no_split_modules` and
    `tie_word_embeddings` as the real checkpoint, so a device map planned for the real model applies
    to the twin name for name. The processor uses the checkpoint's real preprocessor and tokenizer
    configs where they ship (else its family's reference checkpoint's).

    >>> model, processor = twin("Qwen/Qwen2.5-VL-7B-Instruct")
    """
    checkpoint = resolve_checkpoint(checkpoint)
    family = checkpoint_family(checkpoint)
    config = shrink_config(checkpoint_config(checkpoint))
    generation = checkpoint_or_reference_file(family, checkpoint, "generation_config.json")
    model = build_model(config, seed, attn_implementation, generation)
    model.name_or_path = checkpoint
    return model, build_processor(family, checkpoint, real_ids=True)
