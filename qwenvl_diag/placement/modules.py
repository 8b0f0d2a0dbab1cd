"""What each placed module of a Qwen-VL model is, what it holds, and where its tensors land under a map."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator

import torch

KINDS = ("vision", "merger", "audio", "embed", "decoder", "norm", "rotary", "head", "other")
_NUMBERED = re.compile(r"(?:^|\.)(?:layers|blocks)\.(\d+)(?:\.|$)")


def module_kind(name: str) -> str:
    """One of KINDS for a module path such as "model.language_model.layers.3", "visual.merger" or
    "model.audio_tower" (an Omni thinker's)."""
    parts = name.split(".")
    if any(p.startswith(("merger", "deepstack_merger")) for p in parts):
        return "merger"
    if "visual" in parts:
        return "vision"
    if "audio_tower" in parts:  # the Omni thinkers' audio encoder
        return "audio"
    if parts[-1] == "embed_tokens":
        return "embed"
    if "layers" in parts:
        return "decoder"
    if parts[-1] == "rotary_emb":
        return "rotary"
    if parts[-1] == "lm_head":
        return "head"
    if parts[-1] == "norm":
        return "norm"
    return "other"


def module_layer(name: str) -> int | None:
    """The decoder-layer or vision-block number in a module path, if any."""
    match = _NUMBERED.search(name)
    return int(match.group(1)) if match else None


def find_module(names: Iterable[str], last: str) -> str | None:
    """The shortest module path whose last part is `last` ("visual", "embed_tokens", "lm_head"), or None."""
    found = [n for n in names if n.split(".")[-1] == last]
    return min(found, key=len) if found else None


def prefixes(name: str) -> list[str]:
    """ "", "a", "a.b", "a.b.c" for "a.b.c": every map key that could place `name`, outermost first."""
    parts = name.split(".") if name else []
    return ["", *(".".join(parts[: i + 1]) for i in range(len(parts)))]


def covering_key(name: str, keys: Collection[str]) -> str | None:
    """The key of a device map that places `name`: `name` itself or its nearest listed ancestor, or None."""
    for prefix in reversed(prefixes(name)):
        if prefix in keys:
            return prefix
    return None


def unplaced(tensor_names: Iterable[str], keys: Collection[str]) -> list[str]:
    """The outermost modules (or tensors) holding tensors that no key covers, in model order."""
    above_keys = {p for key in keys for p in prefixes(key)}
    tops: dict[str, None] = {}
    for name in tensor_names:
        if covering_key(name, keys) is None:
            tops[next(p for p in prefixes(name) if p not in above_keys)] = None
    return list(tops)


def devices_of(module: str, device_map: dict, tensor_names: Iterable[str]) -> set:
    """The devices the tensors inside `module` land on under `device_map` (several when it is split)."""
    inside = (n for n in tensor_names if n.startswith(module + ".") or not module)
    placed = (covering_key(n, device_map) for n in inside)
    return {device_map[k] for k in placed if k is not None}


def named_tensors(model: torch.nn.Module, unique: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters then buffers under every name that holds them (a tied weight under each of its
    names), or with `unique` each tensor once, under the first name that holds it."""
    yield from model.named_parameters(remove_duplicate=unique)
    yield from model.named_buffers(remove_duplicate=unique)


def tied_weight_names(model: torch.nn.Module) -> set[str]:
    """Names of weights that load as copies of another (5.x lists them before tying; 4.x ties objects)."""
    return set(getattr(model, "all_tied_weights_keys", None) or ())


def lm_head_tied(model: torch.nn.Module) -> bool:
    """Whether the model's output projection shares the input embeddings' weight."""
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embed is None:
        return False
    names = {n for n, p in model.named_parameters(remove_duplicate=False) if p is head.weight}
    return head.weight is embed.weight or bool(names & tied_weight_names(model))


def placed_sizes(model: torch.nn.Module, keys: Collection[str]) -> dict[str, tuple[int, int, str | None]]:
    """{key: (parameters, bytes, dtype)} for each key of a device map, over the tensors it places.

    Every tensor counts once, at the dtype the model holds it in; a tied weight counts with the
    module that owns it (embed_tokens), not again with lm_head. `dtype` is the dtype of most of the
    key's parameters (of its buffers when it has none), or None when it holds nothing.
    """
    params, nbytes = dict.fromkeys(keys, 0), dict.fromkeys(keys, 0)
    param_dtypes: dict[str, Counter] = {k: Counter() for k in keys}
    buffer_dtypes: dict[str, Counter] = {k: Counter() for k in keys}
    tied, seen = tied_weight_names(model), set()
    for name, tensor in named_tensors(model):
        key = covering_key(name, keys)
        if key is None:
            continue
        is_param = isinstance(tensor, torch.nn.Parameter)
        counter = param_dtypes if is_param else buffer_dtypes
        counter[key][str(tensor.dtype).removeprefix("torch.")] += tensor.numel()
        if name in tied or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        params[key] += tensor.numel() if is_param else 0
        nbytes[key] += tensor.numel() * tensor.element_size()
    sizes = {}
    for key in keys:
        common = (param_dtypes[key] or buffer_dtypes[key]).most_common(1)
        sizes[key] = (params[key], nbytes[key], common[0][0] if common else None)
    return sizes
