"""The release-day routine (`make refresh`): catch the kit up with a transformers release it has not seen.

For each release given (default: every release on the package index newer than the kit's line index):
1. the line index (`qwenvl_diag/data/line_index.json`) gains the release, read from its wheel, and the
   report says which entries' lines moved since the release before it;
2. the version lab's table (`qwenvl_diag/data/releases.json`) pairs a new minor release with the accelerate
   of the same weeks (the newest on the index when the release shipped, from PyPI's upload times);
3. every catalogue entry's scenario runs in the release (the version lab's side environment, or here when
   it is the installed one): does each open bug still fail, at its indexed line; does each fixed one stay
   fixed;
4. the release's Qwen model types with a vision or audio tower that no kit family knows are listed;
5. `requirements/current.txt` pins the release and its accelerate when it is newer than the pinned one.
It prints what changed as a short markdown report (and writes it with `--report FILE`).

    .venv/bin/python scripts/refresh.py [RELEASE ...] [--no-lab] [--entries ID ...]

Then run `make test`, read the report's verdicts, and update the catalogue where it says so.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from datetime import date
from pathlib import Path

from build_line_index import (
    INDEX,
    ROOT,
    WHEELS,
    lines_of,
    read_index,
    releases,
    upload_times,
    wheel,
    write_index,
)
from packaging.version import Version

from qwenvl_diag.bugs import CATALOGUE
from qwenvl_diag.models.families import FAMILIES
from qwenvl_diag.versions import ACCELERATE_FOR, RELEASES, released_versions

REQUIREMENTS = ROOT / "requirements" / "current.txt"
# what makes a model type multimodal: its configuration names a vision, audio or thinker sub-config
MULTIMODAL = re.compile(r"\b(vision|audio|thinker)_config\b")


def new_releases(index: dict, listed: list[str]) -> list[str]:
    """The `listed` releases (the package index's, oldest first) newer than the newest in `index`."""
    newest = max(Version(release) for release in index["releases"])
    return [release for release in listed if Version(release) > newest]


def accelerate_of_the_same_weeks(release: str) -> tuple[str, str]:
    """The newest final accelerate uploaded before the first release of transformers `release`'s minor
    was, and how it was found."""
    minor = Version(release).release[:2]
    shipped = min(
        (when for v, when in upload_times("transformers").items() if Version(v).release[:2] == minor),
        default=None,
    )
    uploaded = upload_times("accelerate")
    if shipped is None or not uploaded:
        newest = str(released_versions("accelerate")[0])
        return newest, "the newest on the index (PyPI's upload times could not be read)"
    before = [Version(v) for v, when in uploaded.items() if when <= shipped and not Version(v).is_prerelease]
    return str(max(before)), f"the newest on the index when {minor[0]}.{minor[1]} shipped ({shipped[:10]})"


def moved_lines(previous: dict[str, int], lines: dict[str, int]) -> dict[str, list]:
    """Which entries' lines `moved` (id -> [old, new]), `appeared` and are `gone` between two releases."""
    return {
        "moved": {
            i: [previous[i], lines[i]] for i in sorted(lines) if i in previous and previous[i] != lines[i]
        },
        "appeared": sorted(set(lines) - set(previous)),
        "gone": sorted(set(previous) - set(lines)),
    }


def unknown_model_types(release: str, cache: Path) -> list[str]:
    """The release's Qwen model types whose configuration has a vision, audio or thinker sub-config and
    that no kit family lists, each with the towers it names: "qwen3_5 (vision)"."""
    known = {model_type for family in FAMILIES.values() for model_type in family.model_types}
    found = []
    with zipfile.ZipFile(wheel(release, cache)) as archive:
        for name in archive.namelist():
            match = re.fullmatch(r"transformers/models/(qwen\w*)/configuration_\1\.py", name)
            towers = sorted(set(MULTIMODAL.findall(archive.read(name).decode()))) if match else []
            if match and match[1] not in known and towers:
                found.append(f"{match[1]} ({', '.join(towers)})")
    return sorted(found)


def verdict(bug, release: str, named: bool, line: int | None, indexed: int | None) -> str:
    """What one catalogue entry's run in `release` says about the entry."""
    if bug.affects(release) and named:
        return "still fails" + ("" if line == indexed else f" (at line {line}, the index says {indexed})")
    if bug.affects(release) and bug.fixed_in is None:
        return "passes now: fixed upstream? give the entry its fixed_in"
    if bug.affects(release):
        return "not shown: another entry fails first, or the range is wrong"
    return "fails again: a regression, widen its range" if named else "stays fixed"


def lab_rows(release: str, lines: dict[str, int], entries: list[str] | None = None) -> list[dict]:
    """Each catalogue entry's scenario (or only `entries`') run in `release`: outcome, line and verdict."""
    import qwenvl_diag as qd

    rows = []
    for bug in CATALOGUE:
        if entries is not None and bug.id not in entries:
            continue
        if bug.kind == "usage" or Version(release) < Version(FAMILIES[bug.families[0]].since):
            continue
        row = {"entry": bug.id, "affected": bug.affected, "line": None}
        try:
            diagnosis = qd.run(qd.Scenario.preset(bug.scenario, transformers=release))
        except qd.QwenVLDiagError as error:  # the kit cannot run it there: what release day must show
            message = str(error).splitlines()[0][:200]
            rows.append({**row, "outcome": "kit error", "verdict": f"the kit cannot run it there: {message}"})
            continue
        named = bug.id in [b["id"] for b in diagnosis.known_bugs]
        if named:
            row["line"] = (diagnosis.first_mismatch or {}).get("line")
        row["outcome"] = "passed" if diagnosis.ok else "failed"
        row["verdict"] = verdict(bug, release, named, row["line"], lines.get(bug.id))
        rows.append(row)
    return rows


def pin(release: str, accelerate: str, requirements: Path) -> str | None:
    """Pin `release` and `accelerate` in the current stack's requirements when `release` is newer than
    the pinned transformers; what changed, or None."""
    text = requirements.read_text()
    pinned = re.search(r"^transformers==(\S+)$", text, re.M)
    if pinned is None or Version(pinned[1]) >= Version(release):
        return None
    text = re.sub(r"^transformers==\S+$", f"transformers=={release}", text, flags=re.M)
    requirements.write_text(re.sub(r"^accelerate==\S+$", f"accelerate=={accelerate}", text, flags=re.M))
    return f"{requirements.name} pins transformers {release} (was {pinned[1]}) and accelerate {accelerate}"


def refresh(release: str, options: argparse.Namespace) -> str:
    """Steps 1-5 for one release; its part of the report."""
    data = read_index(options.index)
    lines = lines_of(release, options.cache)
    older = [r for r in data["releases"] if Version(r) < Version(release)]
    previous = max(older, key=Version) if older else None
    changes = moved_lines(data["releases"][previous], lines) if previous else None
    write_index({**data["releases"], release: lines}, options.index)

    table = json.loads(options.table.read_text())
    minor = f"{Version(release).major}.{Version(release).minor}"
    if minor in table["accelerate_for"]:
        paired = f"{minor} was in the table: accelerate {table['accelerate_for'][minor]}"
        accelerate = table["accelerate_for"][minor]
    else:
        accelerate, how = accelerate_of_the_same_weeks(release)
        table["accelerate_for"][minor] = accelerate
        ACCELERATE_FOR.setdefault(minor, accelerate)  # the lab runs below, in this process, pair it so
        options.table.write_text(json.dumps(table, indent=1) + "\n")
        paired = f"added {minor} -> accelerate {accelerate}, {how}"

    report = [
        f"## transformers {release}",
        "",
        f"- line index: added {release} ({len(lines)} entries' lines)",
    ]
    if changes is not None:
        moved = ", ".join(f"{i} {a} -> {b}" for i, (a, b) in changes["moved"].items()) or "none"
        report.append(f"- lines moved since {previous}: {moved}")
        for what in ("appeared", "gone"):
            if changes[what]:
                report.append(f"- entries whose code {what} since {previous}: {', '.join(changes[what])}")
    report.append(f"- version lab: {paired}")
    unknown = unknown_model_types(release, options.cache)
    unknown_text = ", ".join(unknown) or "none"
    report.append(f"- Qwen model types with a vision/audio tower that the kit does not know: {unknown_text}")
    if options.requirements and (pinned := pin(release, accelerate, options.requirements)):
        report.append(f"- current stack: {pinned}")
    if not options.no_lab:
        rows = lab_rows(release, lines, options.entries)
        report += ["", "| entry | affected | outcome | line | verdict |", "|---|---|---|---|---|"]
        report += [
            f"| {r['entry']} | {r['affected']} | {r['outcome']} | {r['line'] or ''} | {r['verdict']} |"
            for r in rows
        ]
        attention = [r["entry"] for r in rows if r["verdict"] not in ("still fails", "stays fixed")]
        report += ["", f"Entries to look at: {', '.join(attention) or 'none'}."]
    return "\n".join(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "releases", nargs="*", help="transformers releases (default: those newer than the index)"
    )
    parser.add_argument("--index", type=Path, default=INDEX, help="the line index to extend")
    parser.add_argument("--table", type=Path, default=RELEASES, help="the version lab's release table")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help="the current stack's pins")
    parser.add_argument("--cache", type=Path, default=WHEELS, help="where wheels are downloaded")
    parser.add_argument("--no-lab", action="store_true", help="skip running the catalogue in the releases")
    parser.add_argument(
        "--entries",
        nargs="+",
        metavar="ID",
        help="run only these catalogue entries in the releases (default: every one)",
    )
    parser.add_argument("--report", type=Path, help="also write the report to this file")
    options = parser.parse_args(argv)
    known = {bug.id for bug in CATALOGUE}
    if stray := [entry for entry in options.entries or [] if entry not in known]:
        parser.error(f"not a catalogue entry: {', '.join(stray)} (`qd.known_bugs()` lists them)")
    listed = releases()
    unknown = [release for release in options.releases if release not in listed]
    if unknown:  # before anything is written
        parser.error(
            f"not a transformers release on the package index from {listed[0]} on: {', '.join(unknown)} "
            f"(the newest there is {listed[-1]}; give releases like 5.25.0, or none for every new one)"
        )
    wanted = options.releases or new_releases(read_index(options.index), listed)
    parts = [f"# qwenvl-diag refresh, {date.today()}", ""]
    if not wanted:
        newest = max(read_index(options.index)["releases"], key=Version)
        parts.append(f"Nothing to do: the index has every release on the package index (newest {newest}).")
    parts += [refresh(release, options) + "\n" for release in sorted(wanted, key=Version)]
    text = "\n".join(parts).rstrip() + "\n"
    sys.stdout.write(text)
    if options.report:
        options.report.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
