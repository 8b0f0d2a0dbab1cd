"""Where the linear-attention cache of Qwen3.5 / Qwen4-Exp lives: per layer, the devices its conv and
recurrent states were created on, against the device of the layer that reads them.

A gated delta-net layer keeps two kinds of state between decode steps. transformers 5.2-5.4 hold them in a
model-local cache (`Qwen3_5DynamicCache`: lists `conv_states` / `recurrent_states`, one entry a layer);
from 5.5 each linear layer of the generic cache is a `LinearAttentionLayer` whose states (a dict, one entry
per state index: Qwen4-Exp's PLE adds two conv states) are created on the device of the first tensor the
layer writes. A state on another device than its layer is what a decode step would mix.
"""

from __future__ import annotations

import pandas as pd
import torch

from .errors import QwenVLDiagError

LINEAR_CACHE_COLUMNS = ["layer", "layer_device", "conv_states", "recurrent_states", "with_layer"]
"""Columns of `linear_cache_frame`, one row per linear-attention layer: its index, the device of its
parameters, the devices of its conv and recurrent states (a sorted list; empty before the layer wrote
any), and `with_layer`: whether every state is on the layer's device."""


def _states(entry) -> list[torch.Tensor]:
    """The tensors of one layer's conv or recurrent states (a tensor, a dict per state index, or None)."""
    values = entry.values() if isinstance(entry, dict) else [entry]
    return [v for v in values if isinstance(v, torch.Tensor)]


def _linear_layers(cache) -> dict[int, tuple[list, list]]:
    """{layer index: (conv states, recurrent states)} of the linear-attention layers in `cache`."""
    layers = getattr(cache, "layers", None)
    if layers is not None and any(hasattr(layer, "conv_states") for layer in layers):
        return {
            i: (_states(layer.conv_states), _states(layer.recurrent_states))
            for i, layer in enumerate(layers)
            if hasattr(layer, "conv_states")
        }
    if isinstance(getattr(cache, "conv_states", None), list):  # 5.2-5.4: Qwen3_5DynamicCache
        kinds = getattr(cache, "layer_types", None) or ["linear_attention"] * len(cache.conv_states)
        return {
            i: (_states(cache.conv_states[i]), _states(cache.recurrent_states[i]))
            for i, kind in enumerate(kinds)
            if kind == "linear_attention"
        }
    raise QwenVLDiagError(
        f"{type(cache).__name__} holds no linear-attention states: pass the cache of a Qwen3.5 or Qwen4-Exp "
        "model (outputs.past_key_values of a forward with use_cache=True, or of generate with "
        "return_dict_in_generate=True)."
    )


def _decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    text = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(getattr(text, "language_model", text), "layers", None)
    if layers is None:
        raise QwenVLDiagError(f"{type(model).__name__} has no decoder layers to compare the cache with.")
    return layers


def linear_cache_frame(model: torch.nn.Module, cache) -> pd.DataFrame:
    """The linear-attention cache of `model` (LINEAR_CACHE_COLUMNS): per layer, where its states are.

    >>> out = model(**inputs, use_cache=True)
    >>> qd.linear_cache_frame(model, out.past_key_values)
    """
    layers = _decoder_layers(model)
    rows = []
    for i, (conv, recurrent) in _linear_layers(cache).items():
        layer_device = str(next(layers[i].parameters()).device)
        conv_devices = sorted({str(t.device) for t in conv})
        recurrent_devices = sorted({str(t.device) for t in recurrent})
        rows.append(
            {
                "layer": i,
                "layer_device": layer_device,
                "conv_states": conv_devices,
                "recurrent_states": recurrent_devices,
                "with_layer": set(conv_devices + recurrent_devices) <= {layer_device},
            }
        )
    return pd.DataFrame(rows, columns=LINEAR_CACHE_COLUMNS)
