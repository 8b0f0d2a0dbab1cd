"""`tiny_model(family)`: a small random Qwen-VL model with its real processor classes, offline."""

from __future__ import annotations

from .catalog import checkpoint_config
from .families import Family, get_family
from .processor import build_processor, checkpoint_or_reference_file, token_ids
from .shrink import renumber_tokens, set_depth, shrink_config
from .tokenizer import special_tokens

TEXT_LAYERS = 4
VISION_DEPTH = 4

# No Qwen2-VL config.json ships (no faithful copy was found, see configs/SOURCES.md), so its tiny model
# starts from this layout of Qwen2-VL-2B-Instruct; it is never offered as a twin of a real checkpoint.
_QWEN2_VL_LAYOUT = {
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "model_type": "qwen2_vl",
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "tie_word_embeddings": True,
    "vocab_size": 151936,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_chans": 3,
        "hidden_size": 1536,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}


def _layout(family: Family) -> dict:
    return dict(_QWEN2_VL_LAYOUT) if family.name == "qwen2_vl" else checkpoint_config(family.reference)


def tiny_config(family: Family) -> tuple[dict, dict]:
    """(config dict, generation config dict) of the family's tiny model, with compact token ids."""
    specials = special_tokens(checkpoint_or_reference_file(family, None, "tokenizer_config.json"))
    compact = token_ids(family, None, real_ids=False)
    real_to_compact = {real: compact[tok] for real, tok in specials.items()}
    vocab_size = 64 * (max(compact.values()) // 64 + 1)
    config = set_depth(shrink_config(_layout(family)), TEXT_LAYERS, VISION_DEPTH)
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
