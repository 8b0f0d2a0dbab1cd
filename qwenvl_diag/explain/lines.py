"""Where each catalogue entry's code sits in each transformers release's own file: the shipped index
`qwenvl_diag/data/line_index.json`, built from the releases' wheels by `scripts/build_line_index.py`
(`make refresh` extends it when transformers ships a release). It lets a pasted line number,
`modeling_qwen2_5_vl.py:1334`, name the bug and the releases it fits without the code line.

A release newer than the index is not an error: the kit still matches by file, function and code, and says
so (`index_note`), instead of silently matching less."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from packaging.version import InvalidVersion, Version

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


def newest_indexed() -> str:
    """The newest transformers release in the line index (the newest the kit has seen)."""
    return str(max(Version(release) for release in line_index()))


def is_indexed(release: str) -> bool:
    """Whether `release` ("5.25.0"; dev and rc builds count as the release they lead to) is in the index."""
    try:
        return Version(release).base_version in line_index()
    except InvalidVersion:
        return False


def index_note(release: str | None) -> str | None:
    """What to tell a user whose transformers `release` is newer than the line index; None for an
    indexed or older release (or no version).

    >>> index_note("99.0.0")  # doctest: +ELLIPSIS
    "transformers 99.0.0 is newer than the kit's index (5.25.0): matched by code and function, ..."
    """
    try:
        newer = release is not None and Version(Version(release).base_version) > Version(newest_indexed())
    except InvalidVersion:
        return None
    if not newer:
        return None
    return (
        f"transformers {release} is newer than the kit's index ({newest_indexed()}): matched by code and "
        "function, not by line (`make refresh` in the kit's checkout indexes it)"
    )
