"""Sweeps: the per-scenario time of a 24-scenario sweep against one cold `qd.run` of one of its
scenarios (goal: <= 0.3x), and the wall time of the realistic sweep (every shipped checkpoint x
1/2/4/8 GPUs x 24/40/80 GiB x the four strategies x image/batch/video/text x forward/generate, on the
installed release and the newest 4.x; goal: under 15 minutes on a 2-core machine).

With `--ray` (needs the cluster extra: `.venv-legacy` has it), the same 24-scenario grid also runs on a
local Ray of as many CPUs as the pool has processes: Ray's time per scenario against the local pool's,
once cold (Ray started, the release's runtime environment built) and once warm (the same Ray again):
Ray's overhead as a ratio.

Run: .venv/bin/python benchmarks/bench_sweep.py [--no-realistic] [--ray] [--newest-4x 4.57.6] [--save F.json]

Both small measurements start in fresh Python processes that have imported the kit, torch and
transformers, so that each pays what a user's first call pays (twin, processor, planner, worker
processes). The realistic sweep runs in this process; `--save` writes its rows (JSON, `sweep_rows`) and
attrs for reading the findings. Its side environment comes from test-output/envs (made if missing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from qwenvl_diag.presets import PRESETS

GOAL_RATIO = 0.3
GOAL_REALISTIC_S = 15 * 60
CACHE = Path(__file__).resolve().parents[1] / "test-output" / "envs"
SMALL = dict(
    models=["Qwen/Qwen2.5-VL-7B-Instruct"],
    gpus=[2, 4, 8],
    memory=["24GiB", "80GiB"],
    strategies=["balanced", "sequential"],
    inputs=["batch", "text"],
    actions=["generate"],
)
COLD = PRESETS["seed-batched"]  # one of SMALL's scenarios
PRELUDE = (
    "import json, time, warnings; warnings.filterwarnings('ignore')\n"
    "import torch, transformers; import qwenvl_diag as qd\n"
)


def _fresh(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"the measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def small() -> None:
    cold = _fresh(
        f"s = qd.Scenario(**{COLD!r}); t = time.perf_counter(); d = qd.run(s)\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'ok': d.ok}))"
    )
    swept = _fresh(
        f"t = time.perf_counter(); f = qd.sweep(**{SMALL!r}, progress=False)\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'n': len(f), "
        "'runs': f.attrs['timings'][0]['unique_runs'], 'processes': f.attrs['processes']}))"
    )
    per = swept["s"] / swept["n"]
    ratio = per / cold["s"]
    print(
        f"{swept['n']}-scenario sweep: {swept['s']:.1f} s wall ({swept['runs']} unique runs, "
        f"{swept['processes']} processes), {per:.2f} s per scenario; one cold qd.run: {cold['s']:.2f} s; "
        f"ratio {ratio:.2f}x ({'ok' if ratio <= GOAL_RATIO else 'over goal'}, goal <= {GOAL_RATIO}x)"
    )


def ray_overhead() -> None:
    pool = _fresh(
        f"t = time.perf_counter(); f = qd.sweep(**{SMALL!r}, processes=2, progress=False)\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'n': len(f)}))"
    )
    on_ray = _fresh(
        "import ray; from qwenvl_diag.cluster import job_env\n"
        "t = time.perf_counter(); ray.init(num_cpus=2, runtime_env=job_env(), include_dashboard=False, "
        "log_to_driver=False)\n"
        f"f = qd.sweep(**{SMALL!r}, cluster='ray', progress=False); cold = time.perf_counter() - t\n"
        f"t = time.perf_counter(); g = qd.sweep(**{SMALL!r}, cluster='ray', progress=False)\n"
        "warm = time.perf_counter() - t; ray.shutdown()\n"
        "same = f[['outcome', 'known_bug']].astype(str).equals(g[['outcome', 'known_bug']].astype(str))\n"
        "print(json.dumps({'cold': cold, 'warm': warm, 'n': len(f), 'same': same}))"
    )
    per_pool = pool["s"] / pool["n"]
    for label in ("cold", "warm"):
        per = on_ray[label] / on_ray["n"]
        print(
            f"Ray ({label}) {on_ray[label]:.1f} s for {on_ray['n']} scenarios, {per:.2f} s per scenario; "
            f"local pool (2 processes) {per_pool:.2f} s per scenario; overhead ratio {per / per_pool:.2f}x"
        )
    print(f"Ray's two runs gave the same outcomes and bugs: {on_ray['same']}")


def realistic(newest_4x: str, save: str | None) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import qwenvl_diag as qd
    from qwenvl_diag.sweep import sweep_rows

    started = time.perf_counter()
    frame = qd.sweep(transformers=["installed", newest_4x], cache=CACHE, progress=sys.stderr.isatty())
    wall = time.perf_counter() - started
    for timing in frame.attrs["timings"]:
        print(
            f"  transformers {timing['transformers']}: {timing['scenarios']} scenarios, {timing['layouts']} "
            f"layouts, {timing['unique_runs']} unique runs, {timing['run_s']:.0f} s "
            f"({timing['processes']} process{'es' if timing['processes'] > 1 else ''})"
        )
    counts = frame.groupby(["transformers", "outcome"]).size().to_dict()
    print(f"  outcomes: {counts}")
    verdict = "ok" if wall <= GOAL_REALISTIC_S else "over goal"
    print(
        f"realistic sweep: {len(frame)} scenarios on {frame['transformers'].nunique()} releases in "
        f"{wall / 60:.1f} min wall ({verdict}, goal < {GOAL_REALISTIC_S // 60} min); interrupted: "
        f"{frame.attrs['interrupted']}"
    )
    if save:
        Path(save).write_text(json.dumps({"rows": sweep_rows(frame), "attrs": frame.attrs}, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-realistic", action="store_true", help="only the 24-scenario measurement")
    parser.add_argument("--newest-4x", default="4.57.6", help="the newest 4.x release (4.57.6)")
    parser.add_argument("--save", help="write the realistic sweep's rows and attrs to this JSON file")
    parser.add_argument("--ray", action="store_true", help="also Ray's overhead on the 24-scenario grid")
    options = parser.parse_args()
    small()
    if options.ray:
        ray_overhead()
    if not options.no_realistic:
        realistic(options.newest_4x, options.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
