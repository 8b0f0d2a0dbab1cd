"""Extend `qwenvl_diag/data/transformers_pins.json`: for each tool that pins transformers (trainers, an
evaluation kit, a quantizer), the transformers requirement each of its releases declares, read from the
release's own wheel (its METADATA's `Requires-Dist`), so that `explain` reads "llamafactory 0.9.1" in a
report that states no transformers version as the range it implies, offline.

Only releases uploaded since Qwen2-VL's month (August 2024) are read, and only tools whose wheels are small
(vLLM's, SGLang's and LMDeploy's are hundreds of megabytes a release: not read). A release already in the
file is not read again; a release without a wheel is skipped. Each wheel is downloaded once into a cache
folder:

    .venv/bin/python scripts/build_pins.py [--cache DIR]

`make refresh` (scripts/refresh.py) runs this with the rest of the release-day routine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from build_line_index import ROOT, upload_times
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from qwenvl_diag.explain.pins import PINNING, PINS

CACHE = ROOT / "test-output" / "pin-wheels"
SINCE = "2024-08-01"  # Qwen2-VL's month: older releases of these tools never ran a Qwen-VL model


def releases_since(package: str, since: str = SINCE) -> list[str]:
    """The final releases of `package` first uploaded on or after `since`, oldest first (none when PyPI's
    JSON API cannot be read)."""
    found = []
    for release, uploaded in upload_times(package).items():
        try:
            version = Version(release)
        except InvalidVersion:
            continue
        if not version.is_prerelease and uploaded >= since:
            found.append(release)
    return sorted(found, key=Version)


def transformers_requirement(metadata: str) -> str | None:
    """The specifier a wheel's METADATA puts on transformers outside its extras ("" for any release),
    None when it requires no transformers.

    >>> transformers_requirement("Requires-Dist: transformers<=4.46.1,>=4.41.2\\nRequires-Dist: x")
    '<=4.46.1,>=4.41.2'
    """
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        try:
            requirement = Requirement(line.split(":", 1)[1].strip())
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != "transformers":
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        return str(requirement.specifier)
    return None


def pin_of(package: str, release: str, cache: Path = CACHE) -> str | None:
    """The transformers requirement of `package` `release`, from its wheel (downloaded into `cache` once);
    None when it requires none or has no wheel pip can fetch."""
    folder = cache / package
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{canonicalize_name(package).replace('-', '_')}-{release}-"
    found = sorted(path for path in folder.glob("*.whl") if path.name.lower().startswith(prefix))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        done = subprocess.run([*command, f"{package}=={release}", "-d", str(folder)], check=False)
        if done.returncode != 0:
            return None
        found = sorted(path for path in folder.glob("*.whl") if path.name.lower().startswith(prefix))
    with zipfile.ZipFile(found[0]) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return transformers_requirement(archive.read(name).decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    options = parser.parse_args()
    data = json.loads(PINS.read_text()) if PINS.is_file() else {"packages": {}}
    packages = {package: dict(data["packages"].get(package, {})) for package in PINNING}
    for package, pins in packages.items():
        if not (listed := releases_since(package)):
            print(f"{package}: no releases read (PyPI's JSON API unreachable?); its pins stay as they were")
        for release in listed:
            if release not in pins and (pin := pin_of(package, release, options.cache)) is not None:
                pins[release] = pin
                print(package, release, pin or "(any)", flush=True)
    PINS.write_text(
        json.dumps(
            {
                "about": "tool -> {release: the transformers requirement its wheel declares}; built by "
                f"scripts/build_pins.py from the releases uploaded since {SINCE}",
                "packages": {
                    package: {release: pins[release] for release in sorted(pins, key=Version)}
                    for package, pins in packages.items()
                },
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {PINS} ({sum(map(len, packages.values()))} releases of {len(packages)} tools)")


if __name__ == "__main__":
    main()
