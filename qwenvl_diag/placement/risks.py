"""Risk flags: layouts known to break Qwen-VL, or to cost more than users expect, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from .devices import OFFLOAD_DEVICES, device_label
from .modules import covering_key, devices_of, find_module

FLAG_COLUMNS = ["code", "modules", "devices", "why"]
"""Columns of `flags_frame`: the flag's stable `code`, the modules and devices involved, and why."""

FLAG_CODES = (
    "vision_embed_apart",
    "vision_split",
    "lm_head_apart_from_tied_embeddings",
    "offloaded",
    "unplaced_modules",
    "fsdp_cpu_offload",
    "fsdp_embedding_units",
    "main_gpu_empty",
    "experts_offloaded",
)
# MoE experts (Qwen3-VL-MoE, Qwen3.5-MoE, Qwen4-Exp) and Qwen4-Exp's per-layer n-gram embedding table (PLE)
_BIG_TABLES = (".experts.", ".ngram_embedding.")


@dataclass(frozen=True)
class RiskFlag:
    """One risky property of a layout: a stable `code`, the modules and devices involved, and why."""

    code: str
    modules: tuple[str, ...]
    devices: tuple[str, ...]
    why: str


def _labels(devices: set) -> tuple[str, ...]:
    return tuple(sorted(device_label(d) for d in devices))


def find_risks(
    device_map: dict,
    module_names: list[str],
    tensor_names: list[str],
    tie_word_embeddings: bool,
    unplaced: list[str] = (),
    for_gpus: bool = False,
) -> list[RiskFlag]:
    """Flags for `device_map` over a model with these modules and tensors (parameters and buffers).

    Codes (FLAG_CODES): vision_embed_apart, vision_split, lm_head_apart_from_tied_embeddings,
    offloaded, unplaced_modules, main_gpu_empty, experts_offloaded. A module's devices are those its
    tensors land on. Modules on "cpu" count as offloaded when the map also uses a GPU or was planned
    `for_gpus`; "disk" always does.
    """
    flags = []
    vision = find_module(module_names, "visual")
    embed = find_module(module_names, "embed_tokens")
    head = find_module(module_names, "lm_head")

    def devices(module: str | None) -> set:
        return devices_of(module, device_map, tensor_names) if module is not None else set()

    vision_devices, embed_devices, head_devices = devices(vision), devices(embed), devices(head)
    if vision and embed and vision_devices != embed_devices:
        flags.append(
            RiskFlag(
                "vision_embed_apart",
                (vision, embed),
                _labels(vision_devices | embed_devices),
                "The vision tower and the text embeddings are on different devices. accelerate's root hook "
                "moves every forward argument (input_ids, attention_mask, pixel values, and the "
                "cache_position generate() passes) to the map's first GPU, where the vision tower is, "
                "while inputs_embeds are made where embed_tokens lives; model code that combines the two "
                "kinds of tensor without moving one fails. This is the layout behind the batched-inference "
                "failure of transformers 4.49-4.51.3: generate() on a padded batch builds the causal mask "
                "on the embeddings' GPU from a cache_position on the first GPU.",
            )
        )
    if vision and len(vision_devices) > 1:
        flags.append(
            RiskFlag(
                "vision_split",
                (vision,),
                _labels(vision_devices),
                "The vision tower itself is split across devices: its hidden states, and the position and "
                "window tensors it builds once at its start, cross GPUs between blocks. accelerate moves a "
                "block's arguments to its device; any tensor a block reaches otherwise stays behind.",
            )
        )
    if tie_word_embeddings and head and embed and head_devices != embed_devices:
        flags.append(
            RiskFlag(
                "lm_head_apart_from_tied_embeddings",
                (head, embed),
                _labels(head_devices | embed_devices),
                "lm_head shares its weight with embed_tokens (tie_word_embeddings), but the map puts them "
                "on different devices: the one weight can live on one of them only, so accelerate copies "
                "it to the other device at every forward: memory for a second copy the plan did not count, "
                "and a transfer per step.",
            )
        )
    on_gpu = for_gpus or any(isinstance(d, int) for d in device_map.values())
    offloaded = sorted(k for k, d in device_map.items() if d == "disk" or (on_gpu and d in OFFLOAD_DEVICES))
    if offloaded:
        flags.append(
            RiskFlag(
                "offloaded",
                tuple(offloaded),
                _labels({device_map[k] for k in offloaded}),
                "These modules are offloaded (they did not fit on the GPUs, or the map says so): accelerate "
                "keeps their weights on cpu/disk and copies them to the main GPU at every forward, which is "
                "slow; from_pretrained also needs an offload_folder for disk.",
            )
        )
    gpus = [d for d in device_map.values() if isinstance(d, int)]
    if gpus and 0 not in gpus:  # dispatch_model's main device is the map's first GPU, in map order
        main = gpus[0]
        first = next(k for k, d in device_map.items() if d == main)
        flags.append(
            RiskFlag(
                "main_gpu_empty",
                (first,),
                _labels({main}),
                f"The map leaves GPU 0 empty and starts on {device_label(main)} (balanced_low_0 keeps "
                "GPU 0 for generate's outputs, or a no-split block, such as a whole audio or vision encoder "
                "or a PLE decoder layer, was bigger than what GPU 0 had left). accelerate's root hook then "
                "moves the forward arguments to that GPU, and model.device says so too; code that sends "
                "tensors to 'cuda' or 'cuda:0' puts them on a GPU no layer runs on.",
            )
        )
    offloaded_tables = {
        key: device_map[key]
        for name in tensor_names
        if any(t in f".{name}." for t in _BIG_TABLES)
        and (key := covering_key(name, device_map)) is not None
        and (device_map[key] == "disk" or (on_gpu and device_map[key] in OFFLOAD_DEVICES))
    }
    if offloaded_tables:
        flags.append(
            RiskFlag(
                "experts_offloaded",
                tuple(sorted(offloaded_tables)),
                _labels(set(offloaded_tables.values())),
                "MoE experts (or Qwen4-Exp's n-gram embedding table) are kept on cpu/disk: each expert "
                "is one fused parameter per layer, so accelerate copies all of a layer's experts to the GPU "
                "at every forward, whichever few the router picks; decoding is bound by that copy. Give "
                "these layers GPU memory first (max_memory), or quantise the experts.",
            )
        )
    if unplaced:
        flags.append(
            RiskFlag(
                "unplaced_modules",
                tuple(unplaced),
                (),
                "The explicit map gives no device to these modules: accelerate's dispatch_model and "
                "from_pretrained refuse such a map. Add them, or a parent module, to the map.",
            )
        )
    return flags


def risks_frame(flags: list[RiskFlag]) -> pd.DataFrame:
    """Risk flags as a DataFrame with columns FLAG_COLUMNS, one row a flag."""
    return pd.DataFrame([asdict(f) for f in flags], columns=FLAG_COLUMNS)
