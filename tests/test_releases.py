"""Every minor transformers release from 4.45 to the newest the kit has indexed, in the version lab: a
scenario with a shipped checkpoint of two of the families the release has (in turn, so that every family
runs in several releases) runs there (passed, or failed at a real library line: never a kit error), a
family newer than the release (one a release, in turn) is the kit's clear refusal, and the kit's plans
for a checkpoint of each family it has equal what that release's from_pretrained(device_map=...)
computes (tests/planner_reference.py, run by the side environment's Python). Each release is its newest
indexed patch, in a side environment of the test cache.

Each minor release runs once, the sweep split between the stacks so that they take the two cores about
equally and both drive the version lab (conftest.LAB_SPLIT): 4.45 to 5.9 on the legacy stack (its side
environments are its own, built on its site-packages), 5.10 on on the current stack.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import checkpoint_family_name, lab_runs_here
from packaging.version import Version

import qwenvl_diag as qd
from qwenvl_diag import versions, workers
from qwenvl_diag.explain.lines import line_index, newest_indexed
from qwenvl_diag.models.families import FAMILIES

# the minor releases the kit knows (its version lab's table, which `make refresh` extends), not the package
# index's: a release of this week that the kit has not seen is not swept until the kit is refreshed
MINORS = sorted(versions.ACCELERATE_FOR, key=Version)
SWEPT = [m for m in MINORS if lab_runs_here(m)]
CACHE = Path(__file__).resolve().parents[1] / "test-output" / "envs"
TESTS = Path(__file__).resolve().parent
# one checkpoint per family and release, in turn, so that the sweep runs every shipped checkpoint
TWINS = list(qd.twins()["checkpoint"])
# too big for every layout of the lab (8 x 80 GiB), and the kit does not offload to disk: planned, not run
PLANNED_ONLY = ["Qwen/Qwen3.5-397B-A17B"]
# a family with no twin (Qwen4-Exp: no published config) runs and plans as its tiny model
BY_FAMILY = {
    f: [c for c in TWINS if checkpoint_family_name(c) == f and c not in PLANNED_ONLY] or [f"tiny/{f}"]
    for f in FAMILIES
}
RUN_PER_RELEASE = 2  # scenarios run per release: 8 a release kept the current stack 6 minutes longer
LAYOUTS = [
    (2, "24GiB", "auto"),
    (4, "24GiB", "balanced_low_0"),
    (8, "40GiB", "balanced"),
    (2, "80GiB", "sequential"),
]


def _scenario(checkpoint: str) -> qd.Scenario:
    """A seed-style scenario: an image forward on simulated GPUs that hold the whole model (72B: 4)."""
    return qd.Scenario(model=checkpoint, gpus=4 if "72B" in checkpoint else 2, memory="80GiB", inputs="image")


def newest_patch(minor: str) -> str:
    """The newest release of the minor release `minor` ("4.45" -> "4.45.2") that the kit has indexed."""
    major, number = (int(x) for x in minor.split("."))
    patches = [Version(r) for r in line_index() if (Version(r).major, Version(r).minor) == (major, number)]
    return str(max(patches))


def _plans_equal(python: str, layouts: list[list]) -> dict:
    """tests/planner_reference.py run by `python` (its worker): the kit's plan against the release's."""
    done = workers.run_script(python, str(TESTS / "planner_reference.py"), [json.dumps(layouts)], 600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _prepare(minor: str) -> versions.SideEnv:
    """The side environment of `minor`'s newest patch, its worker started (importing meanwhile)."""
    env = versions.side_env(newest_patch(minor), cache=CACHE)
    workers.start(env.python)
    return env


@pytest.fixture(scope="module")
def prepared(request):
    """{minor: future side environment}: while one release runs, the next selected one is made and its
    worker started in the background (the machine's other core), so that the sweep waits less."""
    selected = [
        item.callspec.params["minor"] for item in request.session.items if "minor" in item.fixturenames
    ]
    pool = ThreadPoolExecutor(max_workers=1)
    futures: dict = {}

    def get(minor: str, then_next: bool = False):
        if minor not in futures:
            futures[minor] = pool.submit(_prepare, minor)
        if then_next and minor in selected and selected.index(minor) + 1 < len(selected):
            get(selected[selected.index(minor) + 1])
        return futures[minor]

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.versions
@pytest.mark.parametrize("minor", SWEPT)
def test_a_scenario_runs_and_plans_as_each_release_does(minor, prepared):
    release = newest_patch(minor)
    turn = MINORS.index(minor)
    env = prepared(minor).result()
    assert env.transformers == release
    has = [f for f in FAMILIES.values() if Version(release) >= Version(f.since)]
    newer = [f for f in FAMILIES.values() if f not in has]
    checkpoints = [BY_FAMILY[f.name][turn % len(BY_FAMILY[f.name])] for f in has]
    assert checkpoints, f"transformers {release} has no Qwen-VL family"  # 4.45 has Qwen2-VL

    # the scenarios of RUN_PER_RELEASE families, in turn from release to release (every family runs in
    # several releases, and each entry's releases run in test_catalogue_lab); the plans of all of them
    run = [checkpoints[(turn + j) % len(checkpoints)] for j in range(min(RUN_PER_RELEASE, len(checkpoints)))]
    for k, checkpoint in enumerate(run):
        row = qd.run_in_versions(_scenario(checkpoint), [release], cache=CACHE, progress=False).iloc[0]
        if k == 0:
            prepared(minor, then_next=True)  # this release's worker is in use: prepare the next one
        assert (row["transformers"], row["accelerate"]) == (release, env.accelerate)
        assert row["outcome"] in ("passed", "failed"), f"{checkpoint} on {release}: {row['error']}"
        if row["outcome"] == "failed":  # a real library line mixed devices, as on real GPUs
            assert row["file"].startswith("transformers/") and row["line"] > 0, row["error"]
            assert "device" in row["error"]
    refused = [newer[turn % len(newer)]] if newer else []  # one a release, in turn: each family somewhere
    for family in refused:
        checkpoint = BY_FAMILY[family.name][turn % len(BY_FAMILY[family.name])]
        row = qd.run_in_versions(_scenario(checkpoint), [release], cache=CACHE, progress=False).iloc[0]
        assert row["outcome"] == "kit error"
        assert (
            f"{family.name} needs transformers >= {family.since}; this environment has {release}"
            in (row["error"])
        )

    layouts = [[c, *LAYOUTS[(turn + k) % len(LAYOUTS)]] for k, c in enumerate(checkpoints)]
    layouts.append([checkpoints[0], *LAYOUTS[(turn + len(checkpoints)) % len(LAYOUTS)]])
    layouts += [
        [c, *LAYOUTS[turn % len(LAYOUTS)]]
        for c in PLANNED_ONLY
        if Version(release) >= Version(FAMILIES[checkpoint_family_name(c)].since)
    ]
    compared = _plans_equal(env.python, layouts)
    assert compared["transformers"] == release
    unequal = [r for r in compared["results"] if not r["equal"]]
    assert unequal == [], unequal
    assert all(r["keys"] >= 1 for r in compared["results"])


def test_every_minor_release_is_swept_by_one_of_the_stacks():
    indexed = {f"{Version(r).major}.{Version(r).minor}" for r in line_index()}
    assert MINORS[0] == "4.45" and set(MINORS) == indexed  # the lab's table and the line index agree
    newest = Version(newest_indexed())
    assert MINORS[-1] == f"{newest.major}.{newest.minor}" and len(MINORS) >= 39  # 4.45 to 5.25 at least
    other = [m for m in MINORS if not lab_runs_here(m)]  # the other stack's share
    assert sorted(SWEPT + other, key=Version) == MINORS and len(SWEPT) >= 13 and len(other) >= 13
    assert {c for cs in BY_FAMILY.values() for c in cs if not c.startswith("tiny/")} | set(
        PLANNED_ONLY
    ) == set(TWINS)
    # each shipped checkpoint is planned on some release its family is in, and run on some release
    planned, ran, runs = set(), set(), {f: 0 for f in FAMILIES}
    for turn, minor in enumerate(MINORS):
        has = [f for f in FAMILIES.values() if Version(f"{minor}.99") >= Version(f.since)]
        checkpoints = [BY_FAMILY[f.name][turn % len(BY_FAMILY[f.name])] for f in has]
        planned |= set(checkpoints)
        for j in range(min(RUN_PER_RELEASE, len(checkpoints))):
            ran.add(checkpoints[(turn + j) % len(checkpoints)])
            runs[has[(turn + j) % len(has)].name] += 1
    assert planned == {*TWINS, "tiny/qwen4_exp"} - set(PLANNED_ONLY)
    assert ran == planned, planned - ran
    assert min(runs.values()) >= 2, runs  # every family runs in two releases at least
    refused = set()
    for turn, minor in enumerate(MINORS):
        newer = [f.name for f in FAMILIES.values() if Version(newest_patch(minor)) < Version(f.since)]
        refused |= {newer[turn % len(newer)]} if newer else set()
    assert refused == {f.name for f in FAMILIES.values() if Version(f.since) > Version("4.45.0")}
