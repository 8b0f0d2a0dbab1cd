"""The families after Qwen3-VL (Qwen3.5 dense and MoE, Qwen4-Exp, the Omni thinkers) and Qwen3-VL-MoE through
the whole flow: their tiny models and twins on simulated GPUs, the way their model cards build inputs."""

from __future__ import annotations

import importlib.util
import inspect
import re

import pytest
from conftest import family_available

import qwenvl_diag as qd
from qwenvl_diag.models.families import FAMILIES, TINY_MODELS

NEW_TINY = ["qwen3_vl_moe", "qwen3_5", "qwen3_5_moe", "qwen4_exp", "qwen2_5_omni", "qwen3_omni_moe"]
NEW_TWINS = [
    "Qwen/Qwen3.5-0.8B",
    "Qwen/Qwen3.5-27B",
    "Qwen/Qwen3.5-35B-A3B",
    "Qwen/Qwen2.5-Omni-7B",
    "Qwen/Qwen3-Omni-30B-A3B-Instruct",
]


def _passed_or_failed_in_the_library(diagnosis: qd.Diagnosis) -> None:
    """A run on simulated GPUs either passes or stops at a real library line, as a real GPU would."""
    if diagnosis.error is None:
        return
    assert "on the same device" in diagnosis.error
    first = diagnosis.first_mismatch
    assert first["file"].replace("\\", "/").split("site-packages/")[-1].startswith("transformers/")
    assert first["line"] > 0 and first["code"]


@pytest.mark.parametrize("name", NEW_TINY)
def test_each_new_tiny_model_runs_a_four_gpu_generate_with_an_image(name):
    family = TINY_MODELS[name][0]
    scenario = qd.Scenario(f"tiny/{name}", gpus=4, memory="24GiB", inputs="image", action="generate")
    if not family_available(family):
        with pytest.raises(qd.UnsupportedReleaseError, match=f"{family} needs transformers"):
            qd.run(scenario)
        return
    diagnosis = qd.run(scenario)
    placed = set(diagnosis.frames["placement"]["device"])
    assert len(placed) >= 2 and placed <= {"cuda:0", "cuda:1", "cuda:2", "cuda:3"}  # split across GPUs
    _passed_or_failed_in_the_library(diagnosis)


@pytest.mark.parametrize("checkpoint", NEW_TWINS)
def test_each_new_twin_runs_the_seed_style_generate_on_four_24_gib_gpus(checkpoint):
    scenario = qd.Scenario.preset("seed-batched", model=checkpoint, gpus=4, memory="24GiB")
    family = qd.FAMILIES[qd.twins().set_index("checkpoint").loc[checkpoint, "family"]]
    if not family_available(family.name):
        with pytest.raises(qd.UnsupportedReleaseError, match=f"needs transformers >= {family.since}"):
            qd.run(scenario)
        return
    diagnosis = qd.run(scenario)
    assert diagnosis.error is None, diagnosis.error
    assert set(diagnosis.frames["placement"]["device"]) <= {"cuda:0", "cuda:1", "cuda:2", "cuda:3"}


def _refused_before_5_2(call) -> bool:
    """On a release without Qwen3.5, `call` is the kit's clear refusal (True): the test has nothing more."""
    if family_available("qwen3_5"):
        return False
    with pytest.raises(qd.UnsupportedReleaseError, match=r"qwen3_5 needs transformers >= 5\.2\.0"):
        call()
    return True


@pytest.mark.parametrize("kind", ["image", "video", "text"])
def test_qwen3_5_inputs_carry_mm_token_type_ids_and_real_token_ids(kind):
    """Qwen3.5's processor (Qwen3-VL's) marks each token's kind, as the model needs from 5.4; the borrowed
    tokenizer's special tokens sit at Qwen3.5's ids (<|image_pad|> 248056, <|endoftext|> 248044)."""
    if _refused_before_5_2(lambda: qd.twin("Qwen/Qwen3.5-27B")):
        return
    model, processor = qd.twin("Qwen/Qwen3.5-27B")
    inputs = qd.sample_inputs(processor, kind)
    kinds = inputs["mm_token_type_ids"]
    assert kinds.shape == inputs["input_ids"].shape
    vision = {"image": model.config.image_token_id, "video": model.config.video_token_id}.get(kind)
    if vision is None:
        assert int(kinds.sum()) == 0
    else:
        assert int((kinds != 0).sum()) == int((inputs["input_ids"] == vision).sum()) > 0
    assert processor.tokenizer.convert_ids_to_tokens(248056) == "<|image_pad|>"
    assert processor.tokenizer.convert_ids_to_tokens(248044) == "<|endoftext|>"
    assert processor.tokenizer.convert_ids_to_tokens(model.config.text_config.eos_token_id) == "<|endoftext|>"


def test_plans_that_leave_gpu_0_empty_or_keep_experts_on_the_host_are_flagged_and_others_are_not():
    if _refused_before_5_2(lambda: qd.plan_device_map("Qwen/Qwen3.5-27B", 4, "24GiB")):
        return

    def codes(plan) -> set:
        return set(qd.flags_frame(plan)["code"])

    empty_first = qd.plan_device_map("Qwen/Qwen3.5-27B", 4, "24GiB", strategy="balanced_low_0")
    assert 0 not in empty_first.device_map.values() and "main_gpu_empty" in codes(empty_first)
    flag = qd.flags_frame(empty_first).set_index("code").loc["main_gpu_empty"]
    assert flag.devices == ("cuda:1",) and empty_first.device_map[flag.modules[0]] == 1
    moe_on_host = qd.plan_device_map("Qwen/Qwen3.5-35B-A3B", 4, "8GiB")
    flag = qd.flags_frame(moe_on_host).set_index("code").loc["experts_offloaded"]
    assert set(flag.devices) <= {"cpu", "disk"} and flag.modules
    assert all(moe_on_host.device_map[m] in ("cpu", "disk") for m in flag.modules)
    for fits in (
        qd.plan_device_map("Qwen/Qwen3.5-27B", 4, "24GiB"),
        qd.plan_device_map("Qwen/Qwen3.5-35B-A3B", 4, "80GiB"),
    ):
        assert not codes(fits) & {"main_gpu_empty", "experts_offloaded"}


@pytest.mark.parametrize("family", [f for f in FAMILIES.values() if f.preview_api], ids=lambda f: f.name)
def test_a_previews_own_api_is_in_no_release_of_the_stack(family):
    """`Family.preview_api` names what only a preview had (`explain` reads a report that uses it as a
    preview's): the installed release has none of it, neither a class nor a keyword of generate."""
    import transformers

    names = [re.search(r"\(\?P<name>(\w+)\)", pattern)[1] for pattern in family.preview_api]
    assert all(not hasattr(transformers, name) for name in names)
    if not family_available(family.name):
        assert importlib.util.find_spec(f"transformers.models.{family.model_types[0]}") is None
        return
    module = importlib.import_module(
        f"transformers.models.{family.model_types[0]}.modeling_{family.model_types[0]}"
    )
    generates = [
        cls.generate for cls in vars(module).values() if inspect.isclass(cls) and "generate" in vars(cls)
    ]
    assert generates
    for name in names:
        assert not hasattr(module, name)
        assert all(name not in inspect.signature(generate).parameters for generate in generates)
