"""Shrink a real checkpoint's config to tiny widths while keeping its module tree.

Depth (decoder layers, vision blocks, experts), module names, special-token ids, `tie_word_embeddings`
and every structural list (full-attention blocks, deepstack indexes) stay as in the real config; only
widths shrink. The config stays in the checkpoint's own JSON layout (flat text keys for Qwen2/2.5-VL,
`text_config` for Qwen3-VL), which every supported transformers release reads.
"""

from __future__ import annotations

import copy

TEXT_HIDDEN = 32
_TEXT_WIDTHS = {
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
_HEAD_DIM = TEXT_HIDDEN // _TEXT_WIDTHS["num_attention_heads"]
# Qwen3.5 / Qwen4-Exp: gated delta-net (linear attention) heads; value heads a multiple of key heads
_LINEAR_WIDTHS = {
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 8,
    "linear_value_head_dim": 8,
}
# Qwen4-Exp: hyper-connection rank, the PLE n-gram table (1000 rows a part, not 20M) and the QSA indexer,
# whose head must hold the rotary dims (its config's validate_architecture)
_QWEN4_EXP_WIDTHS = {
    "hc_lowrank": 4,
    "ple_embed_dim": TEXT_HIDDEN,
    "ngram_vocab_size_base": 1000,
    "split_ngram_parts": 1,
    "indexer_n_heads": 2,
    "indexer_kv_heads": 1,
    "indexer_head_dim": _HEAD_DIM,
    "indexer_budget": 8,
    "indexer_compress_ratio": 4,
}
# the Omni thinkers' audio encoder (Whisper-like); Qwen3-Omni's also has a conv downsampler
_AUDIO_WIDTHS = {
    "d_model": 32,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "output_dim": TEXT_HIDDEN,
}
# the M-RoPE sections Qwen2.5-Omni's text rotary assumes when its config names none, as its class's
# defaults do from 5.x (5.25.0 modeling_qwen2_5_omni.py L1315)
_OMNI_DEFAULT_MROPE = [16, 24, 24]
_VISION_WIDTHS = {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": TEXT_HIDDEN}
# Qwen2-VL's vision config names its width `embed_dim` and uses `hidden_size` for the merger output.
_QWEN2_VL_VISION_WIDTHS = {"embed_dim": 32, "num_heads": 2, "mlp_ratio": 2, "hidden_size": TEXT_HIDDEN}


def text_part(config: dict) -> dict:
    """The dict that holds the text model's keys: `text_config` when nested, else the config itself."""
    return config.get("text_config", config)


def _scaled_sections(sections: list[int], total: int) -> list[int]:
    """`sections` rescaled to sum to `total`, by largest remainder (e.g. [16, 24, 24] -> [2, 3, 3])."""
    exact = [s * total / sum(sections) for s in sections]
    scaled = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - scaled[i], reverse=True)
    for i in by_remainder[: total - sum(scaled)]:
        scaled[i] += 1
    return scaled


def _rope_dict(text: dict) -> dict | None:
    return text.get("rope_scaling") or text.get("rope_parameters")


def shrink_config(config: dict) -> dict:
    """A copy of a real Qwen-VL config dict with tiny widths and the same structure."""
    config = copy.deepcopy(config)
    text = text_part(config)
    text.update(_TEXT_WIDTHS)
    if "head_dim" in text:
        text["head_dim"] = _HEAD_DIM
    if "moe_intermediate_size" in text:
        text["moe_intermediate_size"] = 16
    if "shared_expert_intermediate_size" in text:
        text["shared_expert_intermediate_size"] = 16
    text.update({k: v for k, v in _LINEAR_WIDTHS.items() if k in text})
    if "ple_layer_ids" in text:
        text.update(_QWEN4_EXP_WIDTHS)
    rope = _rope_dict(text)
    if rope:  # M-RoPE sections share the rotary half of a head: head_dim * partial_rotary_factor / 2
        rotary_half = int(_HEAD_DIM * rope.get("partial_rotary_factor", 1.0)) // 2
        if "mrope_section" in rope or text.get("model_type") == "qwen2_5_omni_text":
            sections = rope.get("mrope_section", _OMNI_DEFAULT_MROPE)
            rope["mrope_section"] = _scaled_sections(sections, rotary_half)
    vision = config["vision_config"]
    if "embed_dim" in vision and "out_hidden_size" not in vision:  # Qwen2-VL
        vision.update(_QWEN2_VL_VISION_WIDTHS)
    else:
        vision.update(_VISION_WIDTHS)
        if "embed_dim" in vision:  # Qwen2.5-Omni's published configs repeat the width as embed_dim
            vision["embed_dim"] = _VISION_WIDTHS["hidden_size"]
    audio = config.get("audio_config")
    if audio is not None:
        audio.update(_AUDIO_WIDTHS)
        if "downsample_hidden_size" in audio:
            audio["downsample_hidden_size"] = 16
    config.pop("torch_dtype", None)
    config.pop("dtype", None)
    text.pop("dtype", None)
    return config


def set_depth(config: dict, text_layers: int, vision_depth: int) -> dict:
    """A copy of `config` with fewer layers and blocks, structural index lists fitted to them."""
    config = copy.deepcopy(config)
    text = text_part(config)
    text["num_hidden_layers"] = text_layers
    text.pop("max_window_layers", None)
    if text.get("layer_types"):  # Qwen3.5: the first layers of the pattern (3 linear-attention, 1 full)
        text["layer_types"] = text["layer_types"][:text_layers]
    if "ple_layer_ids" in text:  # Qwen4-Exp: the per-layer n-gram embedding on a linear layer (1-indexed)
        linear = [i + 1 for i, kind in enumerate(text["layer_types"]) if kind == "linear_attention"]
        text["ple_layer_ids"] = linear[1:2]
        text["number_of_conv_states"] = 3  # what __post_init__ derives, stale in a to_dict() copy
    vision = config["vision_config"]
    vision["depth"] = vision_depth
    audio = config.get("audio_config")
    if audio is not None:  # the Omni thinkers' audio encoder: as deep as the vision tower
        audio.update({k: vision_depth for k in ("encoder_layers", "num_hidden_layers") if k in audio})
    if "fullatt_block_indexes" in vision:  # Qwen2.5-VL: every 8th block attends globally
        vision["fullatt_block_indexes"] = list(range(1, vision_depth, 2))
    if "deepstack_visual_indexes" in vision:  # Qwen3-VL: blocks whose features feed text layers 0..k
        count = min(len(vision["deepstack_visual_indexes"]), vision_depth, text_layers)
        vision["deepstack_visual_indexes"] = list(range(vision_depth - count, vision_depth))
    return config


def renumber_tokens(config: dict, real_to_new: dict[int, int], vocab_size: int) -> dict:
    """A copy of `config` whose `*_token_id` (and `*_token_index`) fields follow `real_to_new` and whose
    vocab is `vocab_size`."""
    config = copy.deepcopy(config)

    def renumber(d: dict) -> None:
        for key, value in d.items():
            # Qwen2.5-Omni names its image, video and audio tokens `*_token_index`
            if key.endswith(("token_id", "token_index")) and isinstance(value, int):
                d[key] = real_to_new.get(value, value)
            elif key.endswith("token_id") and isinstance(value, list):
                d[key] = [real_to_new.get(v, v) for v in value]

    renumber(config)
    renumber(text_part(config))
    text_part(config)["vocab_size"] = vocab_size
    return config
