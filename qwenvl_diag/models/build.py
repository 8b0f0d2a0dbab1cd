"""Instantiate a Qwen-VL model class from a config dict, deterministically and offline."""

from __future__ import annotations

import torch
import transformers
from transformers import GenerationConfig, PretrainedConfig

from .._compat import TRANSFORMERS_VERSION
from ..errors import UnsupportedReleaseError


def config_from_dict(config: dict) -> PretrainedConfig:
    """The installed transformers' config object for a checkpoint-style config dict."""
    from transformers import CONFIG_MAPPING  # the auto mappings of every model type (~0.5 s): when used

    if config["model_type"] in CONFIG_MAPPING:
        return CONFIG_MAPPING[config["model_type"]].from_dict(config)
    # an Omni thinker's config type is in the auto mapping only from 5.x: its model class names it
    return model_class(config).config_class.from_dict(config)


def model_class(config: dict) -> type:
    """The model class named by the config's `architectures`."""
    name = config["architectures"][0]
    cls = getattr(transformers, name, None)
    if cls is None:
        raise UnsupportedReleaseError(
            f"transformers {TRANSFORMERS_VERSION} has no {name}; upgrade transformers to build this model."
        )
    return cls


def build_model(
    config: dict,
    seed: int,
    attn_implementation: str,
    generation_config: dict | None = None,
) -> torch.nn.Module:
    """A randomly initialised model in eval mode; torch's global RNG state is left untouched."""
    cls = model_class(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls._from_config(config_from_dict(config), attn_implementation=attn_implementation)
    if generation_config is not None:
        model.generation_config = GenerationConfig.from_dict(generation_config)
    return model.eval()
