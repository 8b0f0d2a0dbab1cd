"""Time and peak memory to plan each shipped checkpoint (goal for the largest: <= 2 s, <= 500 MB).

Run: .venv/bin/python benchmarks/bench_plan.py   (or `make bench`)

Each checkpoint is measured in a fresh Python process, so its first plan pays what a user's first
plan pays: importing the model's transformers module and building the real-size model on the meta
device. "later" is the median of 32 more layouts of the same checkpoint (the model is cached).
Memory, measured two ways in the same run: the growth of the process's peak resident set over the
first plan (ru_maxrss, which also sees torch's own allocations; torch, transformers and the kit are
imported before), and tracemalloc's peak (Python allocations) over a second plan from an emptied
model cache (not timed: tracemalloc slows Python down).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

GOAL_SECONDS, GOAL_MB = 2.0, 500
MB = 2**20
LAYOUTS = [
    (g, m, s)
    for g in (1, 2, 4, 8)
    for m in ("24GiB", "80GiB")
    for s in ("auto", "balanced", "balanced_low_0", "sequential")
]


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def measure(checkpoint: str) -> dict:
    """Plan `checkpoint` on 4 x 24GiB balanced in this (fresh) process, then the other layouts."""
    import qwenvl_diag as qd
    from qwenvl_diag.placement.plan import _meta_model

    rss_before = _max_rss_bytes()
    start = time.perf_counter()
    plan = qd.plan_device_map(checkpoint, gpus=4, memory="24GiB", strategy="balanced")
    first = time.perf_counter() - start
    rss_growth = _max_rss_bytes() - rss_before
    _meta_model.cache_clear()  # build again, under tracemalloc (which slows Python down, so not timed)
    tracemalloc.start()
    qd.plan_device_map(checkpoint, gpus=4, memory="24GiB", strategy="balanced")
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    later = []
    for gpus, memory, strategy in LAYOUTS:
        start = time.perf_counter()
        qd.plan_device_map(checkpoint, gpus=gpus, memory=memory, strategy=strategy)
        later.append(time.perf_counter() - start)
    return {
        "checkpoint": checkpoint,
        "params": sum(plan.module_params.values()),
        "first_s": first,
        "later_s": statistics.median(later),
        "traced_mb": traced_peak / MB,
        "rss_mb": rss_growth / MB,
    }


def main() -> None:
    import accelerate
    import torch
    import transformers

    import qwenvl_diag as qd
    from qwenvl_diag.models.twin import checkpoint_family

    versions = (transformers.__version__, accelerate.__version__, torch.__version__)
    print("transformers {}, accelerate {}, torch {}".format(*versions))
    header = ("checkpoint", "params", "first", "later", "tracemalloc", "RSS growth")
    print("{:34s} {:>8s} {:>8s} {:>8s} {:>12s} {:>11s}".format(*header))
    rows = []
    for checkpoint in list(qd.twins()["checkpoint"]):
        try:
            checkpoint_family(checkpoint)
        except qd.UnsupportedReleaseError as error:
            print(f"{checkpoint:34s} skipped: {str(error).split(';')[0]}")
            continue
        child = subprocess.run(
            [sys.executable, __file__, checkpoint], capture_output=True, text=True, check=True
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{checkpoint:34s} {row['params'] / 1e9:7.2f}B {row['first_s']:7.2f}s {row['later_s']:7.3f}s "
            f"{row['traced_mb']:9.1f} MB {row['rss_mb']:8.1f} MB"
        )
    largest = max(rows, key=lambda r: r["params"])
    peak = max(largest["traced_mb"], largest["rss_mb"])
    met = largest["first_s"] <= GOAL_SECONDS and peak <= GOAL_MB
    print(
        f"largest: {largest['checkpoint']}: first plan {largest['first_s']:.2f} s, peak {peak:.0f} MB "
        f"(goal <= {GOAL_SECONDS} s, <= {GOAL_MB} MB): {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 2:
        print(json.dumps(measure(sys.argv[1])))
    else:
        main()
