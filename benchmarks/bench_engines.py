"""The FSDP2 engine against the device_map engine: the same tiny scenario (2 simulated GPUs, a text
forward) run by `qd.run` with engine="device_map" (accelerate's dispatch of the planned map) and with
engine="fsdp2" (fully_shard over 2 ranks, each diagnosed in turn), with and without CPU offload.
Goal: an FSDP2 run within 3x of the device_map run.

Run: .venv/bin/python benchmarks/bench_engines.py [MODEL]   (default: tiny/qwen2_5_vl)

Each scenario runs once first (imports, first-call caches: not measured), then REPEATS times; the
median is compared. One run prints everything.
"""

from __future__ import annotations

import statistics
import sys
import time

GOAL_RATIO = 3.0
REPEATS = 5


def _median_seconds(scenario) -> float:
    import qwenvl_diag as qd

    qd.run(scenario)  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        diagnosis = qd.run(scenario)
        times.append(time.perf_counter() - start)
        assert diagnosis.ok, diagnosis.error
    return statistics.median(times)


def main() -> int:
    import qwenvl_diag as qd

    model = sys.argv[1] if len(sys.argv) > 1 else "tiny/qwen2_5_vl"
    base = {"model": model, "gpus": 2, "inputs": "text", "action": "forward"}
    device_map = _median_seconds(qd.Scenario(**base))
    print(f"{model}, 2 simulated GPUs, text forward; median of {REPEATS} runs")
    print(f"  engine=device_map:                 {device_map:6.2f} s")
    worst = 0.0
    for offload in (False, True):
        seconds = _median_seconds(qd.Scenario(**base, engine="fsdp2", cpu_offload=offload))
        ratio = seconds / device_map
        worst = max(worst, ratio)
        print(f"  engine=fsdp2, 2 ranks, offload={offload!s:5}: {seconds:6.2f} s  ({ratio:.2f}x device_map)")
    verdict = "within" if worst <= GOAL_RATIO else "over"
    print(f"worst FSDP2 / device_map: {worst:.2f}x ({verdict} the {GOAL_RATIO:g}x goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
