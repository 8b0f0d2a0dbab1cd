"""The release-day routine, `make refresh` (scripts/refresh.py), run on the installed release as if it had
just shipped: a copy of the kit's data without it (line index, the lab's release table, the current stack's
pins) is caught up, and the report says what changed. Its expectations come from the kit's shipped data for
that release, so they hold whichever release is the newest on the package index. The wheel is downloaded
once into test-output/wheels. The catalogue runs (the slow part) are the current stack's; the legacy stack
refreshes its own release without them."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from qwenvl_diag._compat import TRANSFORMERS_5, TRANSFORMERS_VERSION
from qwenvl_diag.bugs import CATALOGUE
from qwenvl_diag.explain.lines import INDEX
from qwenvl_diag.models.families import FAMILIES
from qwenvl_diag.versions import ACCELERATE_FOR, RELEASES

ROOT = Path(__file__).resolve().parents[1]
RELEASE = str(TRANSFORMERS_VERSION)
MINOR = f"{TRANSFORMERS_VERSION.major}.{TRANSFORMERS_VERSION.minor}"


# the entries whose scenario can run in the installed release; the routine runs one that still fails there
# and one that stays fixed (test_catalogue_lab runs every entry at the ends of its range)
RUNNABLE = [
    bug
    for bug in CATALOGUE
    if bug.kind != "usage" and TRANSFORMERS_VERSION >= Version(FAMILIES[bug.families[0]].since)
]
LAB_SAMPLE = [
    found.id
    for affected in (True, False)
    if (found := next((bug for bug in RUNNABLE if bug.affects(RELEASE) == affected), None))
]


@pytest.fixture(scope="module")
def refresh_module():
    sys.path.insert(0, str(ROOT / "scripts"))  # the script imports its neighbour, build_line_index
    try:
        yield importlib.import_module("refresh")
    finally:
        sys.path.remove(str(ROOT / "scripts"))


@pytest.fixture(scope="module")
def caught_up(refresh_module, tmp_path_factory):
    """The routine run on the installed release, on copies of the kit's data that lack it."""
    folder = tmp_path_factory.mktemp("refresh")
    index = json.loads(INDEX.read_text())
    index["releases"].pop(RELEASE)
    (folder / "index.json").write_text(json.dumps(index))
    table = json.loads(RELEASES.read_text())
    table["accelerate_for"].pop(MINOR)
    (folder / "releases.json").write_text(json.dumps(table))
    (folder / "requirements.txt").write_text("torch==2.14.1\ntransformers==4.45.0\naccelerate==0.34.2\n")
    argv = [RELEASE, "--report", str(folder / "report.md")]
    for name, path in (
        ("index", "index.json"),
        ("table", "releases.json"),
        ("requirements", "requirements.txt"),
    ):
        argv += [f"--{name}", str(folder / path)]
    assert refresh_module.main(argv + (["--entries", *LAB_SAMPLE] if TRANSFORMERS_5 else ["--no-lab"])) == 0
    return folder, (folder / "report.md").read_text()


def test_the_line_index_gains_the_release_as_the_kit_ships_it(caught_up):
    folder, report = caught_up
    shipped = json.loads(INDEX.read_text())["releases"]
    made = json.loads((folder / "index.json").read_text())["releases"]
    assert made == shipped  # the release's lines, from its wheel, and every other release untouched
    assert list(made) == sorted(made, key=Version)
    previous = max((r for r in shipped if Version(r) < TRANSFORMERS_VERSION), key=Version)
    moved = [
        f"{i} {shipped[previous][i]} -> {n}"
        for i, n in shipped[RELEASE].items()
        if shipped[previous].get(i, n) != n
    ]
    assert f"## transformers {RELEASE}" in report
    assert f"- line index: added {RELEASE} ({len(shipped[RELEASE])} entries' lines)" in report
    assert f"- lines moved since {previous}: {', '.join(sorted(moved)) or 'none'}" in report


def test_the_lab_table_pairs_the_release_with_the_accelerate_of_its_weeks(caught_up):
    folder, report = caught_up
    table = json.loads((folder / "releases.json").read_text())["accelerate_for"]
    assert table == ACCELERATE_FOR  # as the kit ships it: the same rule made the shipped entry
    assert (
        f"- version lab: added {MINOR} -> accelerate {ACCELERATE_FOR[MINOR]}, the newest on the index"
        in report
    )


def test_the_current_stack_pins_the_release(caught_up):
    folder, report = caught_up
    pins = (folder / "requirements.txt").read_text().splitlines()
    assert pins == ["torch==2.14.1", f"transformers=={RELEASE}", f"accelerate=={ACCELERATE_FOR[MINOR]}"]
    assert f"pins transformers {RELEASE} (was 4.45.0)" in report


def test_qwen_model_types_the_kit_does_not_know_are_listed(caught_up):
    _, report = caught_up
    [line] = [line for line in report.splitlines() if "that the kit does not know" in line]
    listed = re.findall(r"(\w+) \(([\w, ]+)\)", line.split(": ", 1)[1])
    assert listed or line.endswith(": none"), line
    known = {model_type for family in FAMILIES.values() for model_type in family.model_types}
    import transformers

    models = Path(transformers.__file__).parent / "models"
    for name, towers in listed:
        assert name not in known and (models / name).is_dir(), name
        assert set(towers.split(", ")) <= {"vision", "audio", "thinker"}, towers
    assert not [model_type for model_type in known if f" {model_type} (" in line]
    if "qwen3_5" in [p.name for p in models.iterdir()] and "qwen3_5" not in known:
        assert ("qwen3_5", "vision") in listed


def test_the_catalogue_entries_asked_for_are_run_and_judged_in_the_release(caught_up):
    """The current stack runs the entries asked for (`--entries`: one open in the release, one fixed) in
    the release: the kit is current, so the open one still fails (at its indexed line) and the fixed one
    stays fixed; nothing to look at."""
    _, report = caught_up
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| qwen")]
    if not TRANSFORMERS_5:  # --no-lab
        assert rows == [] and "Entries to look at" not in report
        return
    judged = {row[0].lstrip("| "): row for row in rows}
    assert sorted(judged) == sorted(LAB_SAMPLE) and LAB_SAMPLE
    for bug in (bug for bug in RUNNABLE if bug.id in LAB_SAMPLE):
        verdict = judged[bug.id][4].rstrip(" |")
        assert verdict == ("still fails" if bug.affects(RELEASE) else "stays fixed"), judged[bug.id]
    assert "Entries to look at: none." in report


def test_with_nothing_new_the_routine_says_so(refresh_module, tmp_path, monkeypatch, capsys):
    """An index whose newest release is the package index's newest (a fake index of the kit's own
    releases): nothing to do, and nothing written."""
    known = sorted(json.loads(INDEX.read_text())["releases"], key=Version)
    monkeypatch.setattr(refresh_module, "releases", lambda: known)
    index = tmp_path / "index.json"
    index.write_text(INDEX.read_text())
    assert refresh_module.main(["--index", str(index), "--table", str(tmp_path / "absent.json")]) == 0
    assert f"Nothing to do: the index has every release on the package index (newest {known[-1]})" in (
        capsys.readouterr().out
    )
    assert index.read_text() == INDEX.read_text()


def test_a_release_not_on_the_package_index_is_refused_and_nothing_is_written(
    refresh_module, tmp_path, capsys
):
    index = tmp_path / "index.json"
    index.write_text(INDEX.read_text())
    for wrong in ("99.0.0", "five"):
        with pytest.raises(SystemExit) as exit_:
            refresh_module.main([wrong, "--index", str(index), "--table", str(tmp_path / "absent.json")])
        assert exit_.value.code == 2
        assert (
            f"not a transformers release on the package index from 4.45.0 on: {wrong}"
            in capsys.readouterr().err
        )
    assert index.read_text() == INDEX.read_text()


def test_an_entry_the_catalogue_lacks_is_refused_before_anything_is_written(refresh_module, tmp_path, capsys):
    index = tmp_path / "index.json"
    index.write_text(INDEX.read_text())
    with pytest.raises(SystemExit) as exit_:
        refresh_module.main(["--index", str(index), "--entries", CATALOGUE[0].id, "qwen9-nothing"])
    assert exit_.value.code == 2
    assert "not a catalogue entry: qwen9-nothing" in capsys.readouterr().err
    assert index.read_text() == INDEX.read_text()


def test_each_verdict_says_what_to_do_with_the_entry(refresh_module):
    """The verdict of an entry's run, for each way it can go (an open entry, a fixed one, where it ran)."""
    verdict = refresh_module.verdict
    open_bug = next(b for b in CATALOGUE if b.fixed_in is None and b.kind == "error")
    fixed = next(b for b in CATALOGUE if b.fixed_in is not None and b.kind == "error")
    inside, after = "99.0.0", fixed.fixed_in  # an open entry affects every later release
    assert verdict(open_bug, inside, True, 7, 7) == "still fails"
    assert verdict(open_bug, inside, True, 8, 7) == "still fails (at line 8, the index says 7)"
    assert verdict(open_bug, inside, False, None, 7).startswith("passes now: fixed upstream?")
    assert verdict(fixed, after, False, None, None) == "stays fixed"
    assert verdict(fixed, after, True, 3, None).startswith("fails again: a regression")


def test_a_scenario_the_kit_cannot_run_in_the_release_is_a_row_not_a_crash(refresh_module, monkeypatch):
    """Release day's worst case: the new release breaks the kit. Each entry gets a "kit error" row that
    says so (here made by a run that raises the kit's error), and the routine goes on."""
    import qwenvl_diag as qd

    def cannot_run(scenario):
        raise qd.VersionLabError(
            f"The scenario could not run under transformers {scenario.transformers}: boom"
        )

    monkeypatch.setattr(qd, "run", cannot_run)
    rows = refresh_module.lab_rows(RELEASE, {})
    assert rows and {row["outcome"] for row in rows} == {"kit error"}
    assert (
        rows[0]["verdict"]
        == f"the kit cannot run it there: The scenario could not run under transformers {RELEASE}: boom"
    )
