"""The Qwen vision-language families the kit knows, and what each needs from the installed transformers.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL (dense and MoE), the natively multimodal families after them:
Qwen3.5 (dense and MoE, linear attention) and Qwen4-Exp, which run on Qwen3-VL's processor, and the Omni
thinkers (Qwen2.5-Omni, Qwen3-Omni): the part of an Omni checkpoint that reads images, video, audio and text.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .._compat import TRANSFORMERS_VERSION, transformers_at_least
from ..errors import UnknownFamilyError, UnsupportedReleaseError


@dataclass(frozen=True)
class Family:
    """One Qwen-VL model family.

    `reference` is the checkpoint whose config the family's tiny model shrinks, and whose tokenizer and
    preprocessor files the family's twins borrow when a checkpoint ships none of its own. `borrows` names
    the checkpoint whose tokenizer and preprocessor files stand in when the reference ships none either
    (Qwen3.5 and Qwen4-Exp run on Qwen3-VL's processor; see `processor.family_specials`). `thinker` is the
    class the kit builds for an Omni checkpoint: its thinker, not the talker that speaks. `previews` are
    the git refs of transformers (a commit, a tag) that the family's README told people to install before
    its first release: code no release ships, which `explain` says when a report names one.
    `preview_api` are patterns (the name in a group `name`) of the names only those previews had (a class, a
    keyword that the first release renamed): a report whose code uses one ran a preview.
    """

    name: str
    model_types: tuple[str, ...]
    processor_class: str
    since: str
    patch_size: int
    reference: str
    borrows: str | None = None
    thinker: str | None = None
    previews: tuple[str, ...] = ()
    preview_api: tuple[str, ...] = ()


_QWEN3_VL = "Qwen/Qwen3-VL-8B-Instruct"
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        # the preview: QwenLM/Qwen2-VL's README, August-September 2024 ("build from source with command")
        Family(
            "qwen2_vl",
            ("qwen2_vl",),
            "Qwen2VLProcessor",
            "4.45.0",
            14,
            "Qwen/Qwen2-VL-7B-Instruct",
            previews=("21fac7abba2a37fae86106f87fcf9974fd1e3830",),
        ),
        Family(
            "qwen2_5_vl", ("qwen2_5_vl",), "Qwen2_5_VLProcessor", "4.49.0", 14, "Qwen/Qwen2.5-VL-7B-Instruct"
        ),
        Family(
            "qwen3_vl",
            ("qwen3_vl", "qwen3_vl_moe"),
            "Qwen3VLProcessor",
            "4.57.0",
            16,
            "Qwen/Qwen3-VL-8B-Instruct",
        ),
        Family("qwen3_5", ("qwen3_5",), "Qwen3VLProcessor", "5.2.0", 16, "Qwen/Qwen3.5-27B", _QWEN3_VL),
        Family(
            "qwen3_5_moe",
            ("qwen3_5_moe",),
            "Qwen3VLProcessor",
            "5.2.0",
            16,
            "Qwen/Qwen3.5-35B-A3B",
            _QWEN3_VL,
        ),
        Family("qwen4_exp", ("qwen4_exp",), "Qwen3VLProcessor", "5.16.0", 16, "Qwen/Qwen4-Exp", _QWEN3_VL),
        # PyPI has no 4.52.0; the 7B's config is its class's defaults, the 3B ships the processor files
        Family(
            "qwen2_5_omni",
            ("qwen2_5_omni", "qwen2_5_omni_thinker"),
            "Qwen2_5OmniProcessor",
            "4.52.1",
            14,
            "Qwen/Qwen2.5-Omni-7B",
            "Qwen/Qwen2.5-Omni-3B",
            "Qwen2_5OmniThinkerForConditionalGeneration",
            # the previews: QwenLM/Qwen2.5-Omni's README and model card, March (the commit) and April 2025
            previews=("f742a644ca32e65758c3adb36225aef1731bd2a8", "v4.51.3-Qwen2.5-Omni-preview"),
            # the previews' top class and generate's voice keyword, which 4.52.1 (its wheel, checked) renamed
            # Qwen2_5OmniForConditionalGeneration and `speaker`; 4.52.1 still names the old class in one
            # warning's text ("Qwen2_5OmniModel is using Qwen2_5OmniSdpaAttention, but ...")
            preview_api=(
                r"\b(?P<name>Qwen2_5OmniModel)\b(?! is using)",
                r"\.generate\([^)]*\b(?P<name>spk)\s*=",
            ),
        ),
        Family(
            "qwen3_omni_moe",
            ("qwen3_omni_moe", "qwen3_omni_moe_thinker"),
            "Qwen3OmniMoeProcessor",
            "4.57.0",
            16,
            "Qwen/Qwen3-Omni-30B-A3B-Instruct",
            thinker="Qwen3OmniMoeThinkerForConditionalGeneration",
        ),
    )
}
# tiny models that are a family's variant, built from another of its checkpoints: {name: (family, checkpoint)}
_TINY_VARIANTS = {"qwen3_vl_moe": ("qwen3_vl", "Qwen/Qwen3-VL-30B-A3B-Instruct")}
TINY_MODELS: dict[str, tuple[str, str]] = {
    **{name: (name, family.reference) for name, family in FAMILIES.items()},
    **_TINY_VARIANTS,
}


def _unknown(name: object, known) -> UnknownFamilyError:
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownFamilyError(f"Unknown Qwen-VL family {name!r}.{hint} Known families: {', '.join(known)}.")


def get_family(name: str) -> Family:
    """The family called `name`; a clear error for unknown names or a too-old transformers."""
    if not isinstance(name, str) or name not in FAMILIES:
        raise _unknown(name, FAMILIES)
    family = FAMILIES[name]
    if not transformers_at_least(family.since):
        raise UnsupportedReleaseError(
            f"{name} needs transformers >= {family.since}; this environment has {TRANSFORMERS_VERSION}. "
            f"Upgrade (pip install 'transformers>={family.since}') or pick another family."
        )
    return family


def tiny_source(name: str) -> tuple[Family, str]:
    """(family, checkpoint whose config it shrinks) of the tiny model `name` ("qwen3_5", "qwen3_vl_moe")."""
    if not isinstance(name, str) or name not in TINY_MODELS:
        raise _unknown(name, TINY_MODELS)
    family, checkpoint = TINY_MODELS[name]
    return get_family(family), checkpoint


def family_of_model_type(model_type: str) -> Family | None:
    """The family a config's `model_type` belongs to, or None when it is not Qwen-VL."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    return None


def family_of_processor(processor: object) -> Family | None:
    """The family of a processor instance, by its class, or None when it is not a Qwen-VL processor."""
    names = {cls.__name__ for cls in type(processor).__mro__}
    for family in FAMILIES.values():
        if family.processor_class in names:
            return family
    return None
