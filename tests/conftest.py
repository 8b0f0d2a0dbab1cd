"""Shared test helpers. The suite runs unchanged in both stacks (`make test`)."""

from __future__ import annotations

import pytest

from qwenvl_diag._compat import transformers_at_least
from qwenvl_diag.models.families import FAMILIES

ALL_FAMILIES = list(FAMILIES)


def family_available(family: str) -> bool:
    """Whether the installed transformers has `family` (else the kit must say which release it needs)."""
    return transformers_at_least(FAMILIES[family].since)


@pytest.fixture(scope="session")
def tiny_qwen25():
    import qwenvl_diag as qd

    return qd.tiny_model("qwen2_5_vl")
