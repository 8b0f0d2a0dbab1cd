"""The version lab: first creation of a side environment, and a scenario run in a cached one
(goal for the run: <= 15 s wall).

Run: .venv/bin/python benchmarks/bench_versions.py [VERSION ...]   (default: 4.51.3 4.52.4)

Each release's environment is made in a fresh temporary cache (so the first creation is measured,
pip downloads included, as a user's first `run_in_versions` pays it), then the "seed-video" scenario
runs in it twice through `run_in_versions`: the first run after creation and a second one, both in
the cached environment. Needs the package index.
"""

from __future__ import annotations

import sys
import tempfile
import time

GOAL_RUN_SECONDS = 15.0


def measure(version: str, cache: str) -> dict:
    import qwenvl_diag as qd
    from qwenvl_diag.versions import side_env

    start = time.perf_counter()
    env = side_env(version, cache=cache)
    created = time.perf_counter() - start
    scenario = qd.Scenario.preset("seed-video")
    runs, outcome = [], None
    for _ in range(2):
        start = time.perf_counter()
        frame = qd.run_in_versions(scenario, [version], cache=cache, progress=False)
        runs.append(time.perf_counter() - start)
        outcome = frame.iloc[0]["outcome"]
    return {
        "transformers": env.transformers,
        "accelerate": env.accelerate,
        "created_s": created,
        "runs_s": runs,
        "outcome": outcome,
    }


def main(versions: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="qwenvl-diag-bench-envs-") as cache:
        for version in versions:
            result = measure(version, cache)
            best = min(result["runs_s"])
            verdict = "ok" if best <= GOAL_RUN_SECONDS else "over goal"
            print(
                f"transformers {result['transformers']} (accelerate {result['accelerate']}): first creation "
                f"{result['created_s']:.1f} s; seed-video in the cached environment "
                f"{', '.join(f'{s:.1f}' for s in result['runs_s'])} s "
                f"({verdict}, goal <= {GOAL_RUN_SECONDS:.0f} s); "
                f"outcome {result['outcome']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["4.51.3", "4.52.4"]))
