"""Tiny models of every family (and Qwen3-VL-MoE): forward and generate on every input kind, in both
stacks."""

from __future__ import annotations

import pytest
import torch
from conftest import family_available

import qwenvl_diag as qd
from qwenvl_diag.models.families import TINY_MODELS


@pytest.fixture(scope="module", params=list(TINY_MODELS))
def family_model(request):
    name = request.param
    family = TINY_MODELS[name][0]
    if not family_available(family):
        since = qd.FAMILIES[family].since
        with pytest.raises(qd.UnsupportedReleaseError, match=rf"{family} needs transformers >= {since}"):
            qd.tiny_model(name)
        return family, None, None
    model, processor = qd.tiny_model(name)
    return family, model, processor


@pytest.mark.parametrize("kind", qd.INPUT_KINDS)
def test_forward_and_generate(family_model, kind):
    family, model, processor = family_model
    if model is None:  # the fixture asserted the clear "needs transformers >= ..." error
        assert not family_available(family)
        return
    inputs = qd.sample_inputs(processor, kind)
    batch, length = inputs["input_ids"].shape
    assert batch == (2 if kind == "batch" else 1)
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert logits.shape == (batch, length, model.config.get_text_config().vocab_size)
    assert torch.isfinite(logits).all()
    assert generated.shape == (batch, length + 3)
    assert torch.equal(generated[:, :length], inputs["input_ids"])


@pytest.mark.parametrize("kind", ["image", "batch", "video"])
def test_vision_tokens_match_grids(family_model, kind):
    """The processor expands each image/video pad to one token per merged patch of its grid."""
    family, model, processor = family_model
    if model is None:
        assert not family_available(family)
        return
    inputs = qd.sample_inputs(processor, kind)
    key, token = (
        ("video_grid_thw", "video_token_id") if kind == "video" else ("image_grid_thw", "image_token_id")
    )
    merge = processor.image_processor.merge_size
    expected = int(inputs[key].prod(dim=-1).sum()) // merge**2
    assert int((inputs["input_ids"] == getattr(model.config, token)).sum()) == expected


def test_same_seed_same_weights_other_seed_other_weights():
    first, _ = qd.tiny_model("qwen2_5_vl", seed=3)
    again, _ = qd.tiny_model("qwen2_5_vl", seed=3)
    other, _ = qd.tiny_model("qwen2_5_vl", seed=4)
    a, b, c = first.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_building_a_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    qd.tiny_model("qwen2_vl")
    assert torch.equal(torch.rand(3), expected)


def test_sdpa_is_the_default_attention_and_eager_can_be_asked_for():
    sdpa, _ = qd.tiny_model("qwen2_5_vl")
    eager, _ = qd.tiny_model("qwen2_5_vl", attn_implementation="eager")
    assert sdpa.config._attn_implementation == "sdpa"
    assert eager.config._attn_implementation == "eager"
