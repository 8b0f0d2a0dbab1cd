"""What a tool's release says of the transformers beside it: the shipped table
`qwenvl_diag/data/transformers_pins.json`, built from the tools' own wheels by `scripts/build_pins.py`
(`make refresh` extends it). A report that states "llamafactory 0.9.1" and no transformers version ran a
transformers its requirement allows (`>=4.41.2,<=4.46.1`), which `rank` reads as a stated range.

A tool release the table lacks (newer than it, or a dev build) says nothing: the kit does not guess."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

PINS = Path(__file__).resolve().parents[1] / "data" / "transformers_pins.json"
PINNING = {
    "llamafactory": r"llama[-_]?factory",
    "ms-swift": r"(?:ms[-_])?swift",
    "axolotl": r"axolotl",
    "autoawq": r"auto[-_]?awq",
    "trl": r"trl",
    "verl": r"verl",
    "xtuner": r"xtuner",
    "lmms-eval": r"lmms[-_]eval",
}
"""The tools whose releases' transformers requirements the table holds, each with its name as people write
it beside a version (their wheels are small; vLLM's, SGLang's and LMDeploy's are hundreds of megabytes a
release, so the table leaves them out; PEFT requires any transformers)."""


@functools.cache
def pins() -> dict[str, dict[str, str]]:
    """{tool: {release: its transformers requirement ("" for any)}}."""
    return json.loads(PINS.read_text())["packages"]


def pinned_range(versions: dict[str, str]) -> tuple[str, str] | None:
    """(the transformers range, the tool releases it comes from) that the tool `versions` a text states
    allow together ("llamafactory": "0.9.1" -> (">=4.41.2,<=4.46.1", "llamafactory 0.9.1")); None when
    none of them is in the table or none restricts transformers."""
    found = []
    for tool, version in versions.items():
        try:
            release = str(Version(version))
        except InvalidVersion:
            continue
        if spec := pins().get(tool, {}).get(release):
            found.append((spec, f"{tool} {release}"))
    if not found:
        return None
    return str(SpecifierSet(",".join(spec for spec, _ in found))), ", ".join(source for _, source in found)
