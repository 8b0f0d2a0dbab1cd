"""The version lab: side environments of another transformers release on top of the kit's environment,
the scenario's outcome there, bisection, the doctor's --transformers, and upgrade_transformers checked
by verify. Installs from the package index into a temporary cache (once per test session)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from packaging.version import Version

import qwenvl_diag as qd
from qwenvl_diag import cli, versions, workers
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least
from qwenvl_diag.explain.lines import newest_indexed

AFFECTED = not transformers_at_least("4.52.1")
# the other side of the fix: the newest release the kit has indexed from the legacy stack (not the package
# index's newest: a release of this week is test_catalogue_lab's business), a failing one from the current
SIDE_VERSION = newest_indexed() if AFFECTED else "4.51.3"
UNREACHABLE = ("--isolated", "--index-url", "http://127.0.0.1:9/simple", "--retries", "0", "--timeout", "3")


# side environments persist here between test runs (git ignores it, `make clean` removes it)
CACHE = Path(__file__).resolve().parents[1] / "test-output" / "envs"


@pytest.fixture(scope="module")
def lab():
    """The test cache of side environments, and the side environment of SIDE_VERSION in it."""
    return CACHE, versions.side_env(SIDE_VERSION, cache=CACHE)


def test_releases_and_their_accelerate():
    assert versions.resolve_version("4.51.3") == "4.51.3"
    assert versions.resolve_version("installed") == str(TRANSFORMERS_VERSION)
    assert versions.resolve_version("4.45.0") == "4.45.0"  # the first release with Qwen2-VL
    assert versions.matching_accelerate("4.45.2") == "0.34.2"
    assert versions.matching_accelerate("4.48.3") == "1.3.0"
    assert versions.matching_accelerate("4.49.0") == "1.4.0"
    assert versions.matching_accelerate("4.51.3") == "1.6.0"
    assert versions.matching_accelerate("4.52.4") == "1.7.0"
    with pytest.raises(qd.UnsupportedReleaseError, match=r">= 4\.45\.0 \(the first release with Qwen-VL"):
        versions.resolve_version("4.44.2")
    with pytest.raises(qd.InvalidArgumentError, match="not a release"):
        versions.resolve_version("four")


def test_an_unreachable_index_is_a_clear_error_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(qd.VersionLabError, match="nothing was left behind"):
        versions.side_env("4.50.3", cache=tmp_path, pip_args=UNREACHABLE)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(qd.VersionLabError, match="Cannot list the releases"):
        versions.side_env("latest", cache=tmp_path, pip_args=UNREACHABLE)
    assert list(tmp_path.iterdir()) == []


def test_without_build_a_side_environment_not_made_yet_is_an_error_that_says_how(tmp_path):
    with pytest.raises(qd.VersionLabError, match=r"4.50.3 is not made yet .* makes none. Make it once"):
        versions.side_env("4.50.3", cache=tmp_path, pip_args=UNREACHABLE, build=False)
    with pytest.raises(qd.VersionLabError, match="not made yet"):
        qd.run_in_versions(qd.Scenario(), ["4.50.3"], cache=tmp_path, progress=False, build=False)
    assert list(tmp_path.iterdir()) == []


def test_a_side_environment_shadows_transformers_and_keeps_the_kits_torch(lab):
    cache, env = lab
    import torch

    assert Path(env.python).is_relative_to(cache) and env.path.parent == cache
    assert Version(env.transformers) != TRANSFORMERS_VERSION
    assert env.details["transformers"] == env.transformers
    assert env.details["torch"] == torch.__version__
    assert Path(env.details["torch_file"]) == Path(torch.__file__)  # not reinstalled
    site = Path(env.details["site"])
    assert site.is_relative_to(env.path) and not (site / "torch").exists()
    again = versions.side_env(env.transformers, cache=cache)  # cached: reused, not rebuilt
    assert not again.created and again.python == env.python and again.accelerate == env.accelerate
    offline = versions.side_env(env.transformers, cache=cache, pip_args=UNREACHABLE, build=False)
    assert not offline.created and offline.python == env.python
    assert env.path.name.startswith(f"transformers-{env.transformers}-py")
    # its build left no temporary folder (the other stack may be building another release beside it)
    assert not [
        p for p in cache.iterdir() if p.name.startswith(f".building-transformers-{env.transformers}-")
    ]


def test_a_side_environment_hides_the_kits_packages_its_own_versions_break(lab):
    """The kit's packages show through a side environment, but not those the release's own environment
    would not have: transformers 5.25 brings `kernels` (an older transformers that finds it importable
    uses it and dies: 4.51 importing it, 5.8 calling it), hidden where the release does not require it."""
    import importlib.util
    import subprocess

    _, env = lab
    code = (
        "import importlib.util as u, json, sys\nprint(json.dumps([not u.find_spec(m) for m in sys.argv[1:]]))"
    )
    hidden = env.details["hidden"]
    done = subprocess.run([env.python, "-c", code, *hidden], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [True] * len(hidden)
    assert all(importlib.util.find_spec(name) is not None for name in hidden)  # the kit's own has them
    assert not {"qwenvl_diag", "torch", "qwen_vl_utils"} & set(hidden)  # what runs there is never hidden
    kit_has_kernels = importlib.util.find_spec("kernels") is not None
    requires = (  # what the side environment's transformers requires unconditionally
        "import importlib.metadata as md; from packaging.requirements import Requirement as R\n"
        "print([R(t).name for t in md.requires('transformers') if R(t).marker is None])"
    )
    wanted = subprocess.run([env.python, "-c", requires], capture_output=True, text=True, check=True).stdout
    assert ("kernels" in hidden) == (kit_has_kernels and "'kernels'" not in wanted), (hidden, wanted)
    models = "from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration"
    subprocess.run([env.python, "-c", models], check=True, capture_output=True)


def test_run_in_versions_shows_the_video_failure_where_the_catalogue_says(lab):
    cache, env = lab
    frame = qd.run_in_versions(qd.Scenario.preset("seed-video"), [SIDE_VERSION], cache=cache, progress=False)
    assert list(frame.columns) == versions.VERSION_COLUMNS
    row = frame.iloc[0]
    assert row["transformers"] == env.transformers and row["accelerate"] == env.accelerate
    if Version(env.transformers) < Version("4.52.1"):
        assert row["outcome"] == "failed" and row["known_bug"] == "qwen2_5_vl-video-second-per-grid-ts"
        assert row["file"] == "transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py"
        assert row["line"] == 1645  # 4.51.3, ../shared/research/BUG_FACTS.md
        assert "cuda:0 and cpu" in row["error"]
    else:
        assert row["outcome"] == "passed" and row["error"] is None and row["known_bug"] is None


def test_upgrade_transformers_is_verified_in_the_newest_release(lab, monkeypatch):
    """Against a package index whose newest release is the newest the kit has indexed (a fake index: the
    real one's newest may be a release of this week), so the verdict does not change when one ships."""
    cache, _ = lab
    monkeypatch.setenv("QWENVL_DIAG_CACHE", str(cache.parent))  # verify uses the default cache
    known = tuple(v for v in versions.released_versions("transformers") if v <= Version(newest_indexed()))
    monkeypatch.setattr(
        versions, "released_versions", lambda package="transformers", pip_args=(): known, raising=True
    )
    with pytest.raises(qd.FixError, match="qd.verify"):
        qd.get_fix("upgrade_transformers").apply(qd.Setup(None, {}, None))
    frame = qd.verify(qd.Scenario.preset("seed-video"), fix="upgrade_transformers")
    row = frame.iloc[0]
    assert row["fix"] == "upgrade_transformers"
    assert row["verdict"] == ("fixed" if AFFECTED else "not needed")
    assert row["error_after"] is None and row["same_generated_ids"] is True
    assert row["max_abs_logit_diff"] == 0.0
    newest_here = newest_indexed() == str(TRANSFORMERS_VERSION)
    assert ("is the newest release" if newest_here else "in a side environment") in row["why"]


def test_bisect_finds_the_first_release_whose_outcome_changes(monkeypatch):
    releases = tuple(Version(v) for v in ("4.52.4", "4.52.3", "4.52.2", "4.52.1", "4.51.3", "4.51.2"))
    ran = []

    def fake_run(scenario, versions_, **_):
        ran.append(versions_[0])
        failed = Version(versions_[0]) < Version("4.52.1")
        row = {c: None for c in versions.VERSION_COLUMNS}
        row.update(transformers=versions_[0], outcome="failed" if failed else "passed")
        return versions._frame([row])

    monkeypatch.setattr(versions, "released_versions", lambda package="transformers", pip_args=(): releases)
    monkeypatch.setattr(versions, "run_in_versions", fake_run)
    found = qd.bisect_versions(qd.Scenario.preset("seed-video"), "4.51.3", "4.52.4")
    assert (found.last, found.first) == ("4.51.3", "4.52.1")
    assert sorted(ran, key=Version) == list(found.probes["transformers"]) and len(ran) <= 4
    with pytest.raises(qd.VersionLabError, match="same outcome"):
        qd.bisect_versions(qd.Scenario.preset("seed-video"), "4.52.1", "4.52.4")


def test_doctor_transformers_option(capsys):
    assert cli.main(["doctor", "--preset", "seed-video", "--transformers", "4.40.0"]) == 2
    assert "transformers >= 4.45.0" in capsys.readouterr().err
    options = cli._parser().parse_args(["doctor", "--preset", "seed-video", "--transformers", "latest"])
    assert options.transformers == "latest"


def test_a_scenario_of_another_release_returns_its_whole_diagnosis(lab):
    """`Scenario.transformers` runs the scenario in that release's side environment and brings back the
    whole Diagnosis: the release's environment, frames with the installed run's columns, the first
    mismatch and known bugs, the same facts as the version lab's row."""
    from qwenvl_diag.diagnose import FRAMES

    cache, env = lab
    here = qd.run(qd.Scenario.preset("seed-video"))
    scenario = qd.Scenario.preset("seed-video", transformers=env.transformers)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QWENVL_DIAG_CACHE", str(cache.parent))
        there = qd.run(scenario)
    assert there.scenario is scenario and there.environment["transformers"] == env.transformers
    assert there.environment["accelerate"] == env.accelerate
    assert set(there.frames) == set(FRAMES)
    for name in FRAMES:
        assert list(there.frames[name].columns) == list(here.frames[name].columns), name
    row = qd.run_in_versions(scenario, [env.transformers], cache=cache, progress=False).iloc[0]
    assert (row["outcome"] == "failed") == (there.error is not None)
    assert row["known_bug"] == (there.known_bugs[0]["id"] if there.known_bugs else None)
    if there.error is not None:
        assert there.first_mismatch["line"] == row["line"] == 1645  # 4.51.3 from the current stack
        assert there.first_mismatch["function"] == "get_rope_index"
    assert here.ok != there.ok  # one side of the fix each
    with pytest.raises(qd.QwenVLDiagError, match="release like '4.52.4'"):
        qd.Scenario.preset("seed-video", transformers="four")


def test_side_environments_are_made_with_uv_when_the_kit_has_it_else_pip(tmp_path, monkeypatch):
    monkeypatch.setenv("UV_OFFLINE", "1")  # neither installer may reach an index: each says so
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))  # nor find the wheels in a cache
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    installer = "uv" if versions._uv() else "pip"
    envs = tmp_path / "envs"
    with pytest.raises(qd.VersionLabError, match=f"nothing was left behind. {installer} said"):
        versions.side_env("4.50.3", cache=envs)
    assert list(envs.iterdir()) == []


def test_a_side_environment_made_with_colour_forced_has_its_release(tmp_path, monkeypatch):
    """A Jupyter kernel forces colour on its children (FORCE_COLOR, CLICOLOR_FORCE): the installer's
    output must still be read right, so the side environment imports the release asked for."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("CLICOLOR_FORCE", "1")
    made = versions.side_env("4.51.3", cache=tmp_path / "envs")
    assert made.created and made.details["transformers"] == "4.51.3"
    assert made.details["accelerate"] == versions.ACCELERATE_FOR["4.51"]


def test_a_worker_answers_as_a_fresh_process_would_and_is_reused(tmp_path):
    python = sys.executable
    script = tmp_path / "hello.py"
    script.write_text("import os, sys\nprint(os.getpid(), sys.argv[1:])\nsys.exit(3)\n")
    first = workers.run_script(python, str(script), ["a b"], 300)
    second = workers.run_script(python, str(script), ["c"], 300)
    assert first.returncode == second.returncode == 3
    pid, argv = first.stdout.split(" ", 1)
    assert argv.strip() == "['a b']" and second.stdout.startswith(pid + " ")  # one process, kept
    refused = workers.run_cli(python, ["doctor", "--gpus", "0"], 300, "a check")
    assert refused.returncode == 2 and "gpus must be a positive int" in refused.stderr
    assert refused.stdout == ""
    workers.close_all()
    assert workers.run_script(python, str(script), ["d"], 300).stdout.split(" ", 1)[0] != pid  # a new one
    workers.close_all()
