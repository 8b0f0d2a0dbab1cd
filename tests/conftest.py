"""Shared test helpers. The suite runs unchanged in both stacks (`make test`)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from packaging.version import Version

from qwenvl_diag._compat import TRANSFORMERS_5, transformers_at_least
from qwenvl_diag.models.catalog import checkpoint_model_type
from qwenvl_diag.models.families import FAMILIES, family_of_model_type

ALL_FAMILIES = list(FAMILIES)

# The library lines of the seed's two failures (Qwen2.5-VL's modeling file, transformers 4.49-4.51.3), and
# where 4.51.3 has them (../shared/research/BUG_FACTS.md)
MASK_CODE = (
    "diagonal_attend_mask = torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)"
)
VIDEO_CODE = "time_tensor = expanded_range * second_per_grid_t"
SEED_LINES_4_51_3 = {MASK_CODE: 1334, VIDEO_CODE: 1645}

# What each catalogue fix (but upgrade_transformers) does to the seed's two failures on transformers
# 4.49-4.51.3 (BUG_FACTS.md); from 4.52.1 every one is "not needed".
SEED_FIX_VERDICTS = {
    "seed-batched": {
        "inputs_to_execution_device": "not fixed",
        "single_device": "fixed",
        "vision_with_embeddings": "fixed",
        "second_per_grid_ts_as_list": "not fixed",
        "rope_mask_hotfix": "fixed",
        "rope_deltas_to_cache_device": "not fixed",
    },
    "seed-video": {
        "inputs_to_execution_device": "not fixed",
        "single_device": "not fixed",
        "vision_with_embeddings": "not fixed",
        "second_per_grid_ts_as_list": "fixed",
        "rope_mask_hotfix": "fixed",
        "rope_deltas_to_cache_device": "not fixed",
    },
}


# The version lab's releases are split between the stacks at LAB_SPLIT, each release run by one of them, so
# that the two take the two cores about equally (measured: the 5.x releases alone kept the current stack
# 25 minutes longer than the legacy one; split at 5.13 the legacy stack took 59 min, the current about as
# long): the legacy stack runs the releases before it (4.45 to 5.9, in side environments built on its own
# site-packages), the current stack the others.
LAB_SPLIT = Version("5.10")


def lab_runs_here(*releases: str) -> bool:
    """Whether this stack runs these releases in the version lab: the legacy stack when every one is
    before LAB_SPLIT, else the current stack."""
    return all(Version(release) < LAB_SPLIT for release in releases) != TRANSFORMERS_5


def load_script(name: str, folder: str = "scripts") -> ModuleType:
    """`<folder>/<name>.py` of the repository as a module (scripts/ and docs/ are not packages)."""
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def family_available(family: str) -> bool:
    """Whether the installed transformers has `family` (else the kit must say which release it needs)."""
    return transformers_at_least(FAMILIES[family].since)


def checkpoint_family_name(checkpoint: str) -> str:
    """The family of a shipped checkpoint, read from its config's model_type."""
    return family_of_model_type(checkpoint_model_type(checkpoint)).name


def refusal(checkpoint: str) -> str:
    """The pattern of the kit's error for a checkpoint whose family this transformers lacks."""
    family = FAMILIES[checkpoint_family_name(checkpoint)]
    return re.escape(f"{family.name} needs transformers >= {family.since}")


def checkpoint_available(checkpoint: str) -> bool:
    """Whether the installed transformers has the family of a shipped checkpoint."""
    return family_available(checkpoint_family_name(checkpoint))


@pytest.fixture(scope="session")
def tiny_qwen25():
    import qwenvl_diag as qd

    return qd.tiny_model("qwen2_5_vl")


def vision_apart_map(model) -> dict:
    """The seed's layout: the vision tower on cuda:0, every text module and lm_head on cuda:1."""
    names = [n for n, _ in model.named_modules()]
    vision = min((n for n in names if n.endswith("visual")), key=len)
    text = min((n for n in names if n.endswith("embed_tokens")), key=len).rsplit(".", 1)[0]
    children = [f"{text}.{c}" for c, _ in model.get_submodule(text).named_children() if c != "layers"]
    layers = [f"{text}.layers.{i}" for i in range(len(model.get_submodule(f"{text}.layers")))]
    return {vision: 0, **dict.fromkeys(children + layers, 1), "lm_head": 1}
