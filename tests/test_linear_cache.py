"""The linear-attention cache frame: Qwen3.5's and Qwen4-Exp's gated delta-net states, per layer, against
the layer's device, on a map that splits the decoder layers over simulated GPUs."""

from __future__ import annotations

import pytest
import torch
from conftest import family_available

import qwenvl_diag as qd


def _split_map(model) -> dict:
    """Vision, embeddings and the first two decoder layers on GPU 0; the other layers, the rest of the
    text model (norm, Qwen4-Exp's hyper-connection mixer) and the head on GPU 1."""
    text = model.model.language_model
    placed = {"model.visual": 0, "lm_head": 1}
    for child, _ in text.named_children():
        placed[f"model.language_model.{child}"] = int(child not in ("embed_tokens", "rotary_emb"))
    del placed["model.language_model.layers"]
    return placed | {f"model.language_model.layers.{i}": int(i >= 2) for i in range(len(text.layers))}


def _cache(outputs):
    return getattr(outputs, "cache", None) or outputs.past_key_values  # 5.24 renamed it


@pytest.mark.parametrize("name", ["qwen3_5", "qwen4_exp"])
def test_each_linear_layer_keeps_its_states_on_its_own_gpu(name):
    if not family_available(name):  # the kit says which release the family needs
        with pytest.raises(
            qd.UnsupportedReleaseError, match=f"{name} needs transformers >= {qd.FAMILIES[name].since}"
        ):
            qd.tiny_model(name)
        return
    model, processor = qd.tiny_model(name)
    inputs = qd.sample_inputs(processor, "text")
    kinds = model.config.text_config.layer_types
    with qd.simulated_gpus(2, "24GiB"):
        qd.dispatch(model, _split_map(model))
        with torch.no_grad():
            frame = qd.linear_cache_frame(model, _cache(model(**inputs, use_cache=True)))
    assert list(frame.columns) == qd.LINEAR_CACHE_COLUMNS
    assert frame["layer"].tolist() == [i for i, kind in enumerate(kinds) if kind == "linear_attention"]
    assert frame["layer_device"].tolist() == [f"cuda:{int(i >= 2)}" for i in frame["layer"]]
    assert frame["with_layer"].all()  # created from each layer's own activations: no state crosses GPUs
    assert frame["conv_states"].tolist() == [[d] for d in frame["layer_device"]]


def test_a_state_on_another_gpu_than_its_layer_is_said():
    if not family_available("qwen3_5"):
        with pytest.raises(qd.UnsupportedReleaseError, match="qwen3_5 needs transformers >= 5.2.0"):
            qd.tiny_model("qwen3_5")
        return
    model, processor = qd.tiny_model("qwen3_5")
    with qd.simulated_gpus(2, "24GiB"):
        qd.dispatch(model, _split_map(model))
        with torch.no_grad():
            cache = _cache(model(**qd.sample_inputs(processor, "text"), use_cache=True))
        moved = qd.linear_cache_frame(model, cache).iloc[-1]  # a layer on GPU 1
        layer = cache.layers[moved["layer"]] if hasattr(cache, "layers") else None
        if layer is not None:  # 5.5+: a dict of states per layer
            layer.conv_states = {k: v.to("cuda:0") for k, v in layer.conv_states.items()}
        else:  # 5.2-5.4: one list entry per layer
            cache.conv_states[moved["layer"]] = cache.conv_states[moved["layer"]].to("cuda:0")
        frame = qd.linear_cache_frame(model, cache).set_index("layer")
    row = frame.loc[moved["layer"]]
    assert (row["layer_device"], row["conv_states"], row["with_layer"]) == ("cuda:1", ["cuda:0"], False)
    assert frame.drop(index=moved["layer"])["with_layer"].all()


def test_a_cache_without_linear_states_is_the_kits_clear_error():
    model, processor = qd.tiny_model("qwen2_5_vl")
    with torch.no_grad():
        outputs = model(**qd.sample_inputs(processor, "text"), use_cache=True)
    with pytest.raises(qd.QwenVLDiagError, match="holds no linear-attention states"):
        qd.linear_cache_frame(model, _cache(outputs))
