"""Extend or rebuild `qwenvl_diag/data/line_index.json`: for every transformers release from 4.45.0 on, the
line each catalogue entry's code sits on in that release's own file (from the release's wheel on PyPI), so
that `explain` maps a pasted `modeling_qwen2_5_vl.py:1334` to the releases and the bug it fits, offline.

By default it adds the releases on the package index that the index lacks; when the catalogue's entries
differ from those the index was built with (an entry added, renamed or its code changed: `--all`), it
rebuilds every release. Each wheel is downloaded once into a cache folder (about 10 MB a release):

    .venv/bin/python scripts/build_line_index.py [--all] [--cache DIR]

`make refresh` (scripts/refresh.py) runs this on release day, with the rest of the routine.
`tests/test_explain.py` checks that the shipped index covers every catalogue entry and agrees with the
installed release's own source.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from packaging.version import Version

from qwenvl_diag.bugs import CATALOGUE, find_in_source
from qwenvl_diag.explain.lines import INDEX
from qwenvl_diag.versions import OLDEST, released_versions

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "test-output" / "wheels"


def releases() -> list[str]:
    """transformers releases on the package index from OLDEST on, oldest first (no pre-releases)."""
    return [str(v) for v in sorted(released_versions("transformers")) if v >= OLDEST]


PYPI_JSON = "https://pypi.org/pypi/{package}/json"


def upload_times(package: str) -> dict[str, str]:
    """{release: first upload time (ISO)} of `package` on PyPI; {} when PyPI's JSON API cannot be read."""
    try:
        with urllib.request.urlopen(PYPI_JSON.format(package=package), timeout=60) as response:
            data = json.load(response)
    except OSError:
        return {}
    return {
        release: min(f["upload_time"] for f in files) for release, files in data["releases"].items() if files
    }


def wheel(release: str, cache: Path = WHEELS) -> Path:
    """The release's wheel, downloaded into `cache` once."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"transformers-{release}-*.whl"))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        subprocess.run([*command, f"transformers=={release}", "-d", str(cache)], check=True)
        found = sorted(cache.glob(f"transformers-{release}-*.whl"))
    return found[0]


def lines_of(release: str, cache: Path = WHEELS) -> dict[str, int]:
    """{entry id: line} for the entries whose code is in this release's file."""
    with zipfile.ZipFile(wheel(release, cache)) as archive, tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "transformers"
        names = set(archive.namelist())
        for bug in CATALOGUE:
            if f"transformers/{bug.file}" in names:
                archive.extract(f"transformers/{bug.file}", folder)
        return {bug.id: found[1] for bug in CATALOGUE if (found := find_in_source(bug, root))}


def read_index(path: Path = INDEX) -> dict:
    """The index file's data: `about`, `entries` (the catalogue ids it was built with), `releases`."""
    return json.loads(path.read_text())


def write_index(releases_lines: dict[str, dict[str, int]], path: Path = INDEX) -> None:
    """Write the index, releases oldest first, for the catalogue as it is now."""
    data = {
        "about": "transformers release -> {catalogue entry id: line of its code in that release's file}; "
        "built by scripts/build_line_index.py from the releases' wheels",
        "entries": sorted(bug.id for bug in CATALOGUE),
        "releases": {release: releases_lines[release] for release in sorted(releases_lines, key=Version)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def stale(data: dict) -> bool:
    """Whether the index was built for another catalogue (then every release must be rebuilt)."""
    return data.get("entries") != sorted(bug.id for bug in CATALOGUE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=WHEELS)
    parser.add_argument("--all", action="store_true", help="rebuild every release, not only the new ones")
    options = parser.parse_args()
    data = read_index() if INDEX.is_file() else {"releases": {}}
    rebuild = options.all or stale(data)
    index = {} if rebuild else dict(data["releases"])
    for release in releases():
        if release not in index:
            index[release] = lines_of(release, options.cache)
            print(release, index[release], flush=True)
    write_index(index)
    print(f"wrote {INDEX} ({len(index)} releases{', rebuilt' if rebuild else ''})")


if __name__ == "__main__":
    main()
