"""Each catalogue entry in the version lab: its scenario (`Scenario.transformers`, the release's whole
diagnosis) fails at the entry's real line on its first and its last affected release and not on its first
fixed one, and `bisect_versions` finds the fix release. Side environments come from the test cache
(test-output/envs), made once.

The releases are those on the package index: an entry's range can start at, or its fix land in, a release
the index does not carry (4.46.0 and 4.57.0 are not there), so each end is the nearest listed release
inside the range (or, for the fix, at or after it).
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from conftest import lab_runs_here
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import qwenvl_diag as qd
from qwenvl_diag import versions
from qwenvl_diag._compat import TRANSFORMERS_5, TRANSFORMERS_VERSION
from qwenvl_diag.bugs import CATALOGUE, find_in_source
from qwenvl_diag.explain.lines import is_indexed, line_in, newest_indexed

CACHE = Path(__file__).resolve().parents[1] / "test-output"
LAB_ENTRIES = [bug for bug in CATALOGUE if bug.kind != "usage"]
# Each entry's lab runs on one stack (each stack builds its own side environments): the legacy stack runs
# the entries whose ends are all before conftest.LAB_SPLIT (5.10: the releases its test_releases runs, so
# the side environments are shared), the current stack the others; the other stack checks the entry's ends
# as releases of the index, and runs its own release.


@pytest.fixture(scope="module", autouse=True)
def _cache(request):
    patch = pytest.MonkeyPatch()
    patch.setenv("QWENVL_DIAG_CACHE", str(CACHE))
    yield
    patch.undo()


def _releases() -> list[Version]:
    return sorted(versions.released_versions("transformers"))


def _indexed_releases() -> list[Version]:
    """The package index's releases that the kit's line index has: a release shipped after the kit's last
    refresh is not one (`test_a_release_newer_than_the_index_is_said_and_its_line_read_from_its_source`
    shows what the kit says of such a release)."""
    return [v for v in _releases() if is_indexed(str(v))]


def ends(bug) -> dict[str, str]:
    """The entry's first affected, last affected and first fixed release on the index; for a bug open
    upstream (no fix release), the release before the first affected one stands for the unaffected end,
    and the newest release the kit has indexed for the affected one (not the newest on the package index,
    which may be a release of this week)."""
    inside = [v for v in _indexed_releases() if SpecifierSet(bug.affected).contains(v)]
    if bug.fixed_in is None:
        before = [v for v in _releases() if v < inside[0]]
        return {
            "last unaffected": str(before[-1]),
            "first affected": str(inside[0]),
            "newest": str(inside[-1]),
        }
    fixed = [v for v in _releases() if v >= Version(bug.fixed_in)]
    return {"first affected": str(inside[0]), "last affected": str(inside[-1]), "first fixed": str(fixed[0])}


UNAFFECTED_ENDS = ("first fixed", "last unaffected")


def lab_here(bug) -> bool:
    """Whether this stack runs the entry's ends in the version lab (`conftest.lab_runs_here`)."""
    return lab_runs_here(*ends(bug).values())


def _check_affected(bug, release: str, diagnosis, line: int | None = None) -> None:
    """The run named the entry, in `release`, at its file, function and code, on its `line` (default: the
    line index's for that release)."""
    found = [b for b in diagnosis.known_bugs if b["id"] == bug.id]
    assert found and found[0]["version"] == release, (release, diagnosis.error, diagnosis.known_bugs)
    assert diagnosis.environment["transformers"] == release
    if bug.kind == "silent":
        assert diagnosis.ok and found[0]["videos"], found
        step = found[0]["videos"][0]
        assert step["ids"] != step["correct"] and len(set(step["ids"])) == 1  # every frame at one id
        return
    first = diagnosis.first_mismatch
    assert first["file"].replace("\\", "/").endswith("transformers/" + bug.file), first
    assert (first["function"], first["line"]) == (bug.function, line or line_in(bug.id, release)), first
    assert bug.quoted_in(first["code"]), first


def _check_ends_here(bug) -> None:
    """The other stack's part: the ends are on the index and fall where the range says. (What the
    installed release gives, named where affected and absent where not, is tests/test_bugs.py's
    test_the_signature_is_what_the_kits_reproduction_raises, for every entry in both stacks.)"""
    for end, release in ends(bug).items():
        assert bug.affects(release) == (end not in UNAFFECTED_ENDS), (end, release)


def _other_entries(bug, release: str, diagnosis) -> list[str]:
    """The catalogue entries, other than `bug`, that the run hit, each affecting `release`."""
    others = [b for b in diagnosis.known_bugs if b["id"] != bug.id]
    assert all(b["version_affected"] for b in others), others
    return [b["id"] for b in others]


@pytest.mark.parametrize("bug", LAB_ENTRIES, ids=lambda b: b.id)
def test_each_entry_fails_at_its_line_where_affected_and_passes_where_fixed(bug):
    """Affected ends fail at the entry's line, except where another entry of the same scenario raises
    first (Qwen2-VL's image batch on 4.47-4.48 fails at qwen2_vl-rope-index-input-mask before the causal
    mask): then that entry is named, and at least one end shows this one. The first fixed release does
    not show the entry; where its scenario still fails, it fails at another entry affecting that release
    (Qwen2-VL's text-only generate on 4.48.0 fails at qwen2_vl-text-generate-rope-deltas)."""
    if not lab_here(bug):
        _check_ends_here(bug)
        return
    shown = 0
    for end, release in ends(bug).items():
        diagnosis = qd.run(qd.Scenario.preset(bug.scenario, transformers=release))
        named = [b["id"] for b in diagnosis.known_bugs]
        if end in UNAFFECTED_ENDS:
            assert bug.id not in named, (release, diagnosis.known_bugs)
            assert diagnosis.ok or _other_entries(bug, release, diagnosis), (release, diagnosis.error)
        elif bug.id in named:
            _check_affected(bug, release, diagnosis)
            shown += 1
        else:
            assert _other_entries(bug, release, diagnosis), (release, diagnosis.error)
    assert shown, bug.id


# qd.bisect_versions end to end, on one entry of each kind of range (fixed once, open upstream, fixed,
# broken again and fixed again) and of each stack; every entry's ends are the test above's: the bisection
# between them ran the same two releases again (263 s of the current stack's run)
BISECTED = [
    "qwen2_5_vl-video-second-per-grid-ts",
    "qwen2_vl-text-generate-position-ids",
    "qwen3_vl-generate-split-vision-cpu-grid",
    "qwen3_vl-fsdp2-host-inv-freq-again",
    "qwen3_5-vision-split-pos-embeds-add",
]


def test_the_bisected_entries_cover_every_kind_of_range_on_both_stacks():
    entries = {bug.id: bug for bug in LAB_ENTRIES}
    bisected = [entries[name] for name in BISECTED]
    assert any(bug.fixed_in is None for bug in bisected)  # open upstream
    assert any(bug.id.endswith("-again") for bug in bisected)  # broken again
    assert {lab_runs_here(*ends(bug).values()) for bug in bisected} == {True, False}  # each stack's


@pytest.mark.parametrize("bug", [b for b in LAB_ENTRIES if b.id in BISECTED], ids=lambda b: b.id)
def test_bisect_finds_each_entrys_fix_release(bug):
    found = ends(bug)
    if not lab_here(bug):  # the ends straddle the entry's range: the bisection's precondition
        releases = [str(v) for v in _releases()]
        good, bad = list(found.values())[:2] if bug.fixed_in is None else list(found.values())[1:]
        assert releases.index(bad) == releases.index(good) + 1, found
        assert bug.affects(good) != bug.affects(bad), found
        return
    good, bad = (
        ("last unaffected", "first affected") if bug.fixed_in is None else ("last affected", "first fixed")
    )
    bisection = qd.bisect_versions(qd.Scenario.preset(bug.scenario), found[good], found[bad], progress=False)
    assert (bisection.last, bisection.first) == (found[good], found[bad])


INSTALLED = str(TRANSFORMERS_VERSION)
# "the newest release" in these tests: the newest the kit has indexed, not the package index's newest (a
# release of this week that the kit has not seen is the test above's business)
NEWEST = newest_indexed()


def test_a_usage_error_is_in_every_release_of_its_family():
    """Inputs left on the CPU fail in the family's first release on the index and in the newest; with
    generate, from 5.18 they fail at the vision tower's patch convolution, and 5.17 (whose generate got
    through) does not show that entry. The legacy stack runs its own release."""
    bug = next(b for b in CATALOGUE if b.id == "qwen2_5_vl-inputs-on-cpu")
    first = str(next(v for v in _releases() if SpecifierSet(bug.affected).contains(v)))
    for release in (first, NEWEST) if TRANSFORMERS_5 else (INSTALLED,):
        diagnosis = qd.run(qd.Scenario.preset(bug.scenario, transformers=release))
        assert [b["id"] for b in diagnosis.known_bugs] == [bug.id], (release, diagnosis.error)
        assert "index is on cpu" in diagnosis.error
    pixels = next(b for b in CATALOGUE if b.id == "qwen2_5_vl-pixel-values-on-cpu")
    cases = (("5.17.0", False), ("5.18.0", True), (NEWEST, True)) if TRANSFORMERS_5 else ((INSTALLED, False),)
    for release, named in cases:
        diagnosis = qd.run(qd.Scenario.preset(pixels.scenario, transformers=release))
        assert (pixels.id in [b["id"] for b in diagnosis.known_bugs]) == named, (release, diagnosis.error)
        if named:
            assert diagnosis.error.startswith("Input type (CPUFloatType) and weight type (CUDAFloatType)")


def test_the_silent_bug_is_named_on_4_52_4_at_fps_4_and_nowhere_else():
    """E: at fps 4 on 4.52.4 the video's two frames share one temporal id where 5.24 gives them two; at
    fps 2 nothing is reported. The legacy stack runs its own release (4.51.3, correct)."""
    silent = "qwen2_5_vl-video-fps-temporal-ids"
    named = {}
    for release in ("4.52.4", NEWEST) if TRANSFORMERS_5 else (INSTALLED,):
        for fps in (4.0, 2.0):
            diagnosis = qd.run(qd.Scenario.preset("video-fps4", transformers=release, fps=fps))
            assert diagnosis.ok, diagnosis.error
            named[release, fps] = [b for b in diagnosis.known_bugs if b["id"] == silent]
    assert [key for key, found in named.items() if found] == ([("4.52.4", 4.0)] if TRANSFORMERS_5 else [])
    if TRANSFORMERS_5:
        [found] = named["4.52.4", 4.0]
        assert found["videos"] == [
            {"video": 0, "second_per_grid_t": 0.5, "tokens_per_second": 2, "ids": [0, 0], "correct": [0, 1]}
        ]
        assert "temporal ids [0, 0], where a correct release gives [0, 1]" in found["found"]


# an entry that fails in the installed release: an open one on the current stack, any on the legacy one
FAILING_HERE = next(
    bug
    for bug in LAB_ENTRIES
    if bug.affects(TRANSFORMERS_VERSION)
    and (bug.fixed_in is None or not TRANSFORMERS_5)
    and bug.kind == "error"
)


def test_a_release_newer_than_the_index_is_said_and_its_line_read_from_its_source(monkeypatch):
    """The day a release ships, before `make refresh`: made real by a line index that ends before the
    installed release. The run of an entry that fails in it (an open one on the current stack, any on the
    legacy stack: `FAILING_HERE`) says the release is newer than the index, names the entry at its
    file, function and code, on the line where the installed source has it; the lab's row and the
    doctor's text carry the note, and explain says it of a paste from that release."""
    from qwenvl_diag import cli
    from qwenvl_diag.explain import lines

    bug = FAILING_HERE
    installed = str(TRANSFORMERS_VERSION)
    shipped = lines.line_index()
    older = {r: found for r, found in shipped.items() if Version(r) < TRANSFORMERS_VERSION}
    monkeypatch.setattr(lines, "line_index", lambda: older)
    newest = max(older, key=Version)
    note = (
        f"transformers {installed} is newer than the kit's index ({newest}): matched by code and function, "
        "not by line (`make refresh` in the kit's checkout indexes it)"
    )
    assert not lines.is_indexed(installed) and lines.index_note(installed) == note
    diagnosis = qd.run(qd.Scenario.preset(bug.scenario))
    assert diagnosis.notes == [note]
    _check_affected(bug, installed, diagnosis, line=find_in_source(bug)[1])
    assert f"_Note: {note}._" in diagnosis.to_markdown() and html.escape(note) in diagnosis._repr_html_()
    assert versions.outcome_fields(diagnosis.to_dict())["note"] == note
    assert f"  note: {note}\n" in cli._text(diagnosis)
    pasted = f"{diagnosis.error}\ntransformers {installed}"
    assert qd.explain(pasted).notes == (note,)
    monkeypatch.setattr(lines, "line_index", lambda: shipped)
    assert qd.run(qd.Scenario.preset(bug.scenario)).notes == []  # indexed: nothing to say
