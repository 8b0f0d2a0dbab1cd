"""The Qwen-VL families the kit knows, and what each needs from the installed transformers."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .._compat import TRANSFORMERS_VERSION, transformers_at_least
from ..errors import UnknownFamilyError, UnsupportedReleaseError


@dataclass(frozen=True)
class Family:
    """One Qwen-VL model family.

    `reference` is the shipped checkpoint whose tokenizer and preprocessor files the family's tiny
    model and twins borrow when a checkpoint ships none of its own.
    """

    name: str
    model_types: tuple[str, ...]
    processor_class: str
    since: str
    patch_size: int
    reference: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("qwen2_vl", ("qwen2_vl",), "Qwen2VLProcessor", "4.45.0", 14, "Qwen/Qwen2-VL-7B-Instruct"),
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
    )
}


def get_family(name: str) -> Family:
    """The family called `name`; a clear error for unknown names or a too-old transformers."""
    if not isinstance(name, str) or name not in FAMILIES:
        close = difflib.get_close_matches(str(name), FAMILIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownFamilyError(
            f"Unknown Qwen-VL family {name!r}.{hint} Known families: {', '.join(FAMILIES)}."
        )
    family = FAMILIES[name]
    if not transformers_at_least(family.since):
        raise UnsupportedReleaseError(
            f"{name} needs transformers >= {family.since}; this environment has {TRANSFORMERS_VERSION}. "
            f"Upgrade (pip install 'transformers>={family.since}') or pick another family."
        )
    return family


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
