"""The version lab: a side environment's first creation, and a scenario's run in a cached one against
the same scenario on the installed stack (goal: a cached version-lab run within 1.5x of the installed run).

Run: .venv/bin/python benchmarks/bench_versions.py [VERSION ...]   (default: 4.45.2 4.51.3 latest)

Each release's environment is made in a fresh temporary cache (so its first creation is measured,
downloads included unless uv's or pip's own cache has them; the line says which installer ran), then a
seed-style scenario (Qwen2-VL-7B, which every release from 4.45 has: an image forward on 2 simulated
GPUs) runs in it three times through `run_in_versions`: the first run starts the environment's worker
Python (its start and imports of torch and transformers), the next two reuse it. On the installed stack
the same scenario runs in a fresh `qwenvl-diag doctor` process (what the first version-lab run pays
too) and then three times in this process through `qd.run` (what the later ones compare to). Needs the
package index.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

GOAL_RATIO = 1.5
SCENARIO = {"model": "Qwen/Qwen2-VL-7B-Instruct", "gpus": 2, "inputs": "image"}


def _timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def installed() -> dict:
    """The scenario on the installed stack: a fresh doctor process, then `qd.run` in this one."""
    import qwenvl_diag as qd
    from qwenvl_diag.running import run

    scenario = qd.Scenario(**SCENARIO)
    command = [sys.executable, "-m", "qwenvl_diag.cli", "doctor", "--scenario", scenario.to_json()]
    fresh, _ = _timed(lambda: subprocess.run(command, capture_output=True, text=True, check=False))
    runs = [_timed(lambda: run(scenario))[0] for _ in range(3)]
    return {"fresh_s": fresh, "runs_s": runs}


def lab(version: str, cache: str) -> dict:
    import qwenvl_diag as qd
    from qwenvl_diag.versions import side_env

    created, env = _timed(lambda: side_env(version, cache=cache))
    scenario = qd.Scenario(**SCENARIO)
    runs, outcome = [], None
    for _ in range(3):
        seconds, frame = _timed(lambda: qd.run_in_versions(scenario, [version], cache=cache, progress=False))
        runs.append(seconds)
        outcome = frame.iloc[0]["outcome"]
    return {
        "env": env,
        "created_s": created,
        "runs_s": runs,
        "outcome": outcome,
    }


def main(releases: list[str]) -> int:
    from qwenvl_diag.workers import close_all

    base = installed()
    warm = min(base["runs_s"][1:])
    print(
        f"installed stack: fresh doctor process {base['fresh_s']:.1f} s; qd.run in this process "
        f"{', '.join(f'{s:.2f}' for s in base['runs_s'])} s"
    )
    with tempfile.TemporaryDirectory(prefix="qwenvl-diag-bench-envs-") as cache:
        for version in releases:
            result = lab(version, cache)
            close_all()  # each release's worker goes: the next release's first run starts its own
            env, runs = result["env"], result["runs_s"]
            installer, shown = env.details.get("installer", "?"), ", ".join(f"{s:.2f}" for s in runs)
            cached = min(runs[1:])
            ratio = cached / warm
            verdict = "ok" if ratio <= GOAL_RATIO else "over goal"
            print(
                f"transformers {env.transformers} (accelerate {env.accelerate}, {installer}): "
                f"environment made in {result['created_s']:.1f} s; runs {shown} s "
                f"(outcome {result['outcome']}); first run / fresh installed doctor "
                f"{runs[0] / base['fresh_s']:.2f}x; cached run / installed run {ratio:.2f}x "
                f"({verdict}, goal <= {GOAL_RATIO}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["4.45.2", "4.51.3", "latest"]))
