"""Twins: models with a real checkpoint's module tree at tiny widths, built offline."""

from __future__ import annotations

import pandas as pd
import torch

from .._compat import transformers_at_least
from .build import build_model, config_from_dict, model_class
from .catalog import (
    LIBRARY_DEFAULTS,
    checkpoint_config,
    checkpoint_model_type,
    config_sha256,
    provenance,
    resolve_checkpoint,
    shipped_checkpoints,
)
from .families import Family, family_of_model_type, get_family
from .processor import build_processor, checkpoint_or_reference_file
from .shrink import shrink_config, text_part

TWIN_COLUMNS = (
    "checkpoint",
    "family",
    "model_type",
    "provenance",
    "verified",
    "sha256",
    "text_layers",
    "hidden_size",
    "vision_depth",
    "experts",
)
"""Columns of `twins()`, one row per checkpoint. `provenance` is "published config" (a byte-for-byte copy
of the checkpoint's config.json), "key numbers only" (a copy whose key numbers were checked, not its
bytes) or "library defaults for <checkpoint>" (no faithful copy exists: the installed transformers'
configuration class at its defaults, which the class documents as that checkpoint); `verified` says how it
was checked (configs/SOURCES.md has each file's sources) and `sha256` is the shipped file's hash (None for
library defaults). `model_type` is that of the model the twin is: for an Omni checkpoint its thinker
("qwen3_omni_moe_thinker"). The key numbers (`text_layers`, `hidden_size`, `vision_depth`, `experts`: <NA>
for a dense model) are read from that model's config."""


def checkpoint_family(checkpoint: str) -> Family:
    """The family of a shipped checkpoint, checked against the installed transformers."""
    return get_family(family_of_model_type(checkpoint_model_type(checkpoint)).name)


def _twin_row(checkpoint: str) -> dict:
    model_type = checkpoint_model_type(checkpoint)
    family = family_of_model_type(model_type)
    if not transformers_at_least(family.since) and checkpoint in LIBRARY_DEFAULTS:
        # library defaults come from the installed transformers: a release without the family has none
        return {
            "checkpoint": checkpoint,
            "family": family.name,
            "model_type": model_type,
            "provenance": f"library defaults for {checkpoint}",
            "verified": f"needs transformers >= {family.since}",
            "sha256": None,
        }
    config = checkpoint_config(checkpoint)
    text = text_part(config)
    return {
        "checkpoint": checkpoint,
        "family": family.name,
        "model_type": config["model_type"],
        **provenance(checkpoint),
        "sha256": config_sha256(checkpoint),
        "text_layers": text["num_hidden_layers"],
        "hidden_size": text["hidden_size"],
        "vision_depth": config["vision_config"].get("depth", 32),  # Qwen2.5-VL-32B omits it: the default
        "experts": text.get("num_experts"),
    }


def twins() -> pd.DataFrame:
    """The checkpoints `twin()` builds, one row each, with where each config comes from (TWIN_COLUMNS).

    >>> qd.twins()[["checkpoint", "provenance"]]
    """
    frame = pd.DataFrame([_twin_row(c) for c in shipped_checkpoints()], columns=list(TWIN_COLUMNS))
    return frame.astype(dict.fromkeys(TWIN_COLUMNS[6:], "Int64"))


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
