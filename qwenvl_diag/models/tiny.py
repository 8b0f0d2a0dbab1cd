"""`tiny_model(family)`: a small random Qwen-VL model with its real processor classes, offline."""

from __future__ import annotations

from .catalog import checkpoint_config
from .families import Family, get_family
from .processor import build_processor, checkpoint_or_reference_file, token_ids
from .shrink import renumber_tokens, set_depth, shrink_config
from .tokenizer import special_tokens

TEXT_LAYERS = 4
VISION_DEPTH = 4


def tiny_config(family: Family) -> tuple[dict, dict]:
    """(config dict, generation config dict) of the family's tiny model, with compact token ids."""
    specials = special_tokens(checkpoint_or_reference_file(family, None, "tokenizer_config.json"))
    compact = token_ids(family, None, real_ids=False)
    real_to_compact = {real: compact[tok] for real, tok in specials.items()}
    vocab_size = 64 * (max(compact.values()) // 64 + 1)
    config = set_depth(shrink_config(checkpoint_config(family.reference)), TEXT_LAYERS, VISION_DEPTH)
    config = renumber_tokens(config, real_to_compact, vocab_size)
    reference = checkpoint_or_reference_file(family, None, "generation_config.json")
    greedy = {k: reference[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in reference}
    generation = renumber_tokens({"text_config": {}, **greedy}, real_to_compact, vocab_size)
    generation.pop("text_config")
    return config, generation


def tiny_model(family: str = "qwen2_5_vl", seed: int = 0, attn_implementation: str = "sdpa"):
    """A small random model of `family` ("qwen2_vl", "qwen2_5_vl", "qwen3_vl") and its processor.

    The model has 4 decoder layers and 4 vision blocks at tiny widths; the processor is the family's
    real processor class with a character-level tokenizer, the real special tokens and chat template.
    Same seed, same weights.

    >>> model, processor = tiny_model("qwen2_5_vl")
    """
    from .build import build_model

    fam = get_family(family)
    config, generation = tiny_config(fam)
    model = build_model(config, seed, attn_implementation, generation)
    return model, build_processor(fam, None, real_ids=False)
