"""Twins keep the real checkpoint's module tree, token ids and structure at tiny widths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import checkpoint_available, checkpoint_family_name

import qwenvl_diag as qd
from qwenvl_diag.models.catalog import checkpoint_config
from qwenvl_diag.models.shrink import text_part
from qwenvl_diag.models.twin import TWIN_COLUMNS, checkpoint_family, real_model_on_meta

CONFIGS = Path(qd.__file__).parent / "models" / "configs"


PUBLISHED = [
    "Qwen/Qwen2-VL-2B-Instruct",
    "Qwen/Qwen2-VL-72B-Instruct",
    "Qwen/Qwen2-VL-7B-Instruct",
    "Qwen/Qwen2.5-VL-32B-Instruct",
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2.5-VL-72B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen3-VL-2B-Instruct",
    "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "Qwen/Qwen3-VL-32B-Instruct",
    "Qwen/Qwen3-VL-4B-Instruct",
    "Qwen/Qwen3-Omni-30B-A3B-Instruct",
    "Qwen/Qwen3-VL-8B-Instruct",
    "Qwen/Qwen3.5-0.8B",
    "Qwen/Qwen3.5-27B",
    "Qwen/Qwen3.5-35B-A3B",
    "Qwen/Qwen3.5-397B-A17B",
]
# no faithful copy of its config.json exists: built from Qwen2_5OmniConfig's defaults, which document it
LIBRARY_DEFAULTS = ["Qwen/Qwen2.5-Omni-7B"]
TWINS = list(qd.twins()["checkpoint"])


def test_twins_are_the_collected_checkpoints_each_with_its_provenance_and_hash():
    frame = qd.twins()
    assert list(frame.columns) == list(TWIN_COLUMNS)
    assert TWINS == sorted(PUBLISHED + LIBRARY_DEFAULTS)
    for row in frame.itertuples():  # the hash of the file as it ships
        path = CONFIGS / row.checkpoint.replace("/", "--") / "config.json"
        if row.checkpoint in LIBRARY_DEFAULTS:
            assert not path.exists() and pd.isna(row.sha256)
        else:
            assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row.family == checkpoint_family_name(row.checkpoint)
    by_name = frame.set_index("checkpoint")
    omni = by_name.loc["Qwen/Qwen2.5-Omni-7B"]
    assert omni.provenance == "library defaults for Qwen/Qwen2.5-Omni-7B"
    if checkpoint_available("Qwen/Qwen2.5-Omni-7B"):
        assert (omni.family, omni.model_type, omni.text_layers) == (
            "qwen2_5_omni",
            "qwen2_5_omni_thinker",
            28,
        )
        assert omni.verified.startswith("the qwen2_5_omni configuration class of transformers ")
    else:  # the defaults are the installed release's: one without the family has none to show
        assert (omni.family, omni.model_type, omni.verified) == (
            "qwen2_5_omni",
            "qwen2_5_omni",
            "needs transformers >= 4.52.1",
        )
        assert pd.isna(omni.text_layers)
    frame = frame[~frame.checkpoint.isin(LIBRARY_DEFAULTS)]
    by_name = frame.set_index("checkpoint")
    assert (
        by_name.loc["Qwen/Qwen2.5-VL-72B-Instruct", ["provenance", "verified"]]
        == [
            "key numbers only",
            "key numbers only, not hash-verified",
        ]
    ).all()
    assert (by_name.drop(index="Qwen/Qwen2.5-VL-72B-Instruct").provenance == "published config").all()
    # the new families' published configs (configs/SOURCES.md): key numbers as the research found them
    assert by_name.loc["Qwen/Qwen3.5-27B", ["model_type", "text_layers", "hidden_size"]].tolist() == [
        "qwen3_5",
        64,
        5120,
    ]
    assert by_name.loc["Qwen/Qwen3.5-35B-A3B", ["family", "experts", "text_layers"]].tolist() == [
        "qwen3_5_moe",
        256,
        40,
    ]
    assert (
        by_name.loc["Qwen/Qwen3.5-0.8B", "sha256"]
        == "b90b86f35c8e6925ef74ee04d0e758f0a845c83a42089ad82bbaa948de9b4204"
    )
    assert (
        by_name.loc["Qwen/Qwen3.5-27B", "sha256"]
        == "f8d190c5b89c1521220f935d2567a587d6e291ed69066a45a106560b05a2174c"
    )
    # an Omni checkpoint's twin is its thinker: the config.json's thinker_config, hashed as the whole file
    assert by_name.loc[
        "Qwen/Qwen3-Omni-30B-A3B-Instruct", ["model_type", "experts", "text_layers"]
    ].tolist() == [
        "qwen3_omni_moe_thinker",
        128,
        48,
    ]
    assert (
        by_name.loc["Qwen/Qwen3-Omni-30B-A3B-Instruct", "sha256"]
        == "eab5093d47807aaf894119506b238b2b1cee70d08456e894fee9a012d88f2e0d"
    )
    moe = by_name.loc["Qwen/Qwen3-VL-30B-A3B-Instruct"]
    assert (moe.family, moe.model_type, moe.experts, moe.text_layers) == ("qwen3_vl", "qwen3_vl_moe", 128, 48)
    assert by_name.loc["Qwen/Qwen3-VL-8B-Instruct", "experts"] is pd.NA


@pytest.mark.parametrize("checkpoint", TWINS)
def test_twin_has_the_real_module_tree(checkpoint):
    if not checkpoint_available(checkpoint):
        since = qd.FAMILIES[checkpoint_family_name(checkpoint)].since
        with pytest.raises(qd.UnsupportedReleaseError, match=f"needs transformers >= {since}"):
            qd.twin(checkpoint)
        return
    model, processor = qd.twin(checkpoint)
    real = real_model_on_meta(checkpoint)
    assert [n for n, _ in model.named_modules()] == [n for n, _ in real.named_modules()]
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == [
        (n, type(m).__name__) for n, m in real.named_modules()
    ]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in real.named_parameters()]
    assert model._no_split_modules == real._no_split_modules
    assert model.config.tie_word_embeddings == real.config.tie_word_embeddings
    assert all(p.device.type == "meta" for p in real.parameters())
    # far smaller than the real thing, which is billions of parameters
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in real.parameters()) / 100

    raw = checkpoint_config(checkpoint)
    assert model.config.get_text_config().num_hidden_layers == text_part(raw)["num_hidden_layers"]
    # Qwen2.5-VL-32B's config lists no vision depth: the class default (32) is the checkpoint's
    assert model.config.vision_config.depth == raw["vision_config"].get("depth", 32)
    assert model.config.vision_config.depth == real.config.vision_config.depth
    # Qwen2.5-Omni names its media tokens `*_token_index`
    image_key = "image_token_id" if "image_token_id" in raw else "image_token_index"
    for key in (
        image_key,
        image_key.replace("image", "video"),
        "vision_start_token_id",
        "vision_end_token_id",
    ):
        assert getattr(model.config, key) == raw[key]
        token = processor.tokenizer.convert_ids_to_tokens(raw[key])
        assert processor.tokenizer.convert_tokens_to_ids(token) == raw[key]
    assert processor.tokenizer.convert_ids_to_tokens(raw[image_key]) == processor.image_token


def test_twin_of_7b_runs_image_and_video_with_real_token_ids():
    model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
    for kind in ("image", "video"):
        inputs = qd.sample_inputs(processor, kind)
        assert int((inputs["input_ids"] >= 151643).sum()) > 0  # real special-token ids, not compact ones
        with torch.no_grad():
            logits = model(**inputs).logits
        assert logits.shape[-1] == 152064
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["Qwen2.5-VL-7B-Instruct", "qwen/qwen2.5-vl-7b-instruct"])
def test_checkpoint_names_resolve_without_the_org_and_in_any_case(name):
    assert checkpoint_family(name).name == "qwen2_5_vl"
