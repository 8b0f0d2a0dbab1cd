"""`tiny_model(family)`: a small random Qwen-VL model with its real processor classes, offline."""

from __future__ import annotations

from .catalog import checkpoint_config
from .families import tiny_source
from .processor import build_processor, checkpoint_or_reference_file, family_specials, token_ids
from .shrink import renumber_tokens, set_depth, shrink_config

TEXT_LAYERS = 4
VISION_DEPTH = 4


def tiny_config(name: str) -> tuple[dict, dict]:
    """(config dict, generation config dict) of the tiny model `name`, with compact token ids."""
    family, source = tiny_source(name)
    specials = family_specials(family, source)
    compact = token_ids(family, source, real_ids=False)
    real_to_compact = {real: compact[tok] for real, tok in specials.items()}
    vocab_size = 64 * (max(compact.values()) // 64 + 1)
    config = set_depth(shrink_config(checkpoint_config(source)), TEXT_LAYERS, VISION_DEPTH)
    config = renumber_tokens(config, real_to_compact, vocab_size)
    text = config.get("text_config", config)
    if text.get("ple_layer_ids") and text.get("eos_token_id") is None:  # Qwen4-Exp's PLE needs one
        text["eos_token_id"] = compact["<|endoftext|>"]
    reference = checkpoint_or_reference_file(family, source, "generation_config.json") or {}
    greedy = {k: reference[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in reference}
    generation = renumber_tokens({"text_config": {}, **greedy}, real_to_compact, vocab_size)
    generation.pop("text_config")
    return config, generation


def tiny_model(family: str = "qwen2_5_vl", seed: int = 0, attn_implementation: str = "sdpa"):
    """A small random model of `family` and its processor: a family name ("qwen2_vl", "qwen2_5_vl",
    "qwen3_vl", "qwen3_5", "qwen3_5_moe", "qwen4_exp") or a family's variant ("qwen3_vl_moe").

    The model has 4 decoder layers and 4 vision blocks at tiny widths; the processor is the family's
    real processor class with a character-level tokenizer, the real special tokens and chat template.
    Same seed, same weights.

    >>> model, processor = tiny_model("qwen3_5")
    """
    from .build import build_model

    config, generation = tiny_config(family)
    model = build_model(config, seed, attn_implementation, generation)
    fam, source = tiny_source(family)
    return model, build_processor(fam, source, real_ids=False)
