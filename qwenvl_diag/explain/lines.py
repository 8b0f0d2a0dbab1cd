"""Where each catalogue entry's code sits in each transformers release's own file: the shipped index
`qwenvl_diag/data/line_index.json`, built from the releases' wheels by `scripts/build_line_index.py`
(rerun it when the catalogue gains an entry or transformers a release). It lets a pasted line number,
`modeling_qwen2_5_vl.py:1334`, name the bug and the releases it fits without the code line."""

from __future__ import annotations

import functools
import json
from pathlib import Path

INDEX = Path(__file__).resolve().parents[1] / "data" / "line_index.json"


@functools.cache
def line_index() -> dict[str, dict[str, int]]:
    """{release: {entry id: line}} for every release from 4.45.0 the index was built with."""
    return json.loads(INDEX.read_text())["releases"]


def releases_with_line(bug_id: str, line: int) -> list[str]:
    """The releases whose file has entry `bug_id`'s code on `line`, oldest first."""
    return [release for release, lines in line_index().items() if lines.get(bug_id) == line]


def line_in(bug_id: str, release: str) -> int | None:
    """The line of entry `bug_id`'s code in `release` (None: not in that release, or not indexed)."""
    return line_index().get(release, {}).get(bug_id)
