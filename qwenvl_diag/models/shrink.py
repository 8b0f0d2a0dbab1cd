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
    rope = _rope_dict(text)
    if rope and "mrope_section" in rope:
        rope["mrope_section"] = _scaled_sections(rope["mrope_section"], _HEAD_DIM // 2)
    vision = config["vision_config"]
    vision.update(_QWEN2_VL_VISION_WIDTHS if "embed_dim" in vision else _VISION_WIDTHS)
    config.pop("torch_dtype", None)
    config.pop("dtype", None)
    text.pop("dtype", None)
    return config


def set_depth(config: dict, text_layers: int, vision_depth: int) -> dict:
    """A copy of `config` with fewer layers and blocks, structural index lists fitted to them."""
    config = copy.deepcopy(config)
    text_part(config)["num_hidden_layers"] = text_layers
    text_part(config).pop("max_window_layers", None)
    vision = config["vision_config"]
    vision["depth"] = vision_depth
    if "fullatt_block_indexes" in vision:  # Qwen2.5-VL: every 8th block attends globally
        vision["fullatt_block_indexes"] = list(range(1, vision_depth, 2))
    if "deepstack_visual_indexes" in vision:  # Qwen3-VL: blocks whose features feed text layers 0..k
        count = min(len(vision["deepstack_visual_indexes"]), vision_depth, text_layers)
        vision["deepstack_visual_indexes"] = list(range(vision_depth - count, vision_depth))
    return config


def renumber_tokens(config: dict, real_to_new: dict[int, int], vocab_size: int) -> dict:
    """A copy of `config` whose `*_token_id` fields follow `real_to_new` and whose vocab is `vocab_size`."""
    config = copy.deepcopy(config)

    def renumber(d: dict) -> None:
        for key, value in d.items():
            if key.endswith("token_id") and isinstance(value, int):
                d[key] = real_to_new.get(value, value)
            elif key.endswith("token_id") and isinstance(value, list):
                d[key] = [real_to_new.get(v, v) for v in value]

    renumber(config)
    renumber(text_part(config))
    text_part(config)["vocab_size"] = vocab_size
    return config
