"""Rebuild `qwenvl_diag/data/line_index.json`: for every transformers release from 4.45.0 on, the line
each catalogue entry's code sits on in that release's own file (from the release's wheel on PyPI), so
that `explain` maps a pasted `modeling_qwen2_5_vl.py:1334` to the releases and the bug it fits, offline.

Run it when the catalogue gains an entry or transformers a release (it downloads each wheel once, into
a cache folder; about 10 MB a release):

    .venv/bin/python scripts/build_line_index.py [--cache DIR]

`tests/test_explain.py` checks that the shipped index covers every catalogue entry and agrees with the
installed release's own source.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.version import Version

from qwenvl_diag.bugs import CATALOGUE, find_in_source

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "qwenvl_diag" / "data" / "line_index.json"
OLDEST = Version("4.45.0")


def releases() -> list[str]:
    """transformers releases on the index from OLDEST on, oldest first (no pre-releases)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "transformers"],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = next(line for line in done.stdout.splitlines() if line.startswith("Available versions:"))
    found = [Version(v.strip()) for v in listed.split(":", 1)[1].split(",")]
    return [str(v) for v in sorted(found) if v >= OLDEST and not v.is_prerelease]


def wheel(release: str, cache: Path) -> Path:
    found = sorted(cache.glob(f"transformers-{release}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"transformers=={release}",
                "-d",
                str(cache),
            ],
            check=True,
        )
        found = sorted(cache.glob(f"transformers-{release}-*.whl"))
    return found[0]


def lines_of(release: str, cache: Path) -> dict[str, int]:
    """{entry id: line} for the entries whose code is in this release's file."""
    with zipfile.ZipFile(wheel(release, cache)) as archive, tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "transformers"
        for bug in CATALOGUE:
            name = f"transformers/{bug.file}"
            if name in archive.namelist():
                archive.extract(name, folder)
        return {bug.id: found[1] for bug in CATALOGUE if (found := find_in_source(bug, root))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "test-output" / "wheels")
    options = parser.parse_args()
    options.cache.mkdir(parents=True, exist_ok=True)
    index = {}
    for release in releases():
        index[release] = lines_of(release, options.cache)
        print(release, index[release], flush=True)
    INDEX.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "about": "transformers release -> {catalogue entry id: line of its code in that release's file}; "
        "built by scripts/build_line_index.py from the releases' wheels",
        "entries": sorted(bug.id for bug in CATALOGUE),
        "releases": index,
    }
    INDEX.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    print(f"wrote {INDEX} ({len(index)} releases)")


if __name__ == "__main__":
    main()
