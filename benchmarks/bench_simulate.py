"""Simulated forward / plain CPU forward, for the tiny Qwen2.5-VL and the 7B twin, measured in one run.

For each input kind: the plain CPU forward; the same model on one simulated GPU (`model.to("cuda:0")`,
the simulator's own cost); split over 2 and 4 simulated GPUs by accelerate's planner (adds
accelerate's hooks, as on real GPUs). Medians of interleaved repeats. Goal: split / plain <= 5x.

Run: .venv/bin/python benchmarks/bench_simulate.py
"""

from __future__ import annotations

import copy
import functools
import statistics
import time

import torch
import transformers
from accelerate import dispatch_model, infer_auto_device_map
from accelerate.utils import get_balanced_memory

import qwenvl_diag as qd

REPEATS = 7


def _split(model: torch.nn.Module, gpus: int) -> torch.nn.Module:
    """`device_map="balanced"` over `gpus` simulated GPUs, as from_pretrained plans it."""
    no_split = model._no_split_modules
    unlimited = dict.fromkeys(range(gpus), 2**40)
    budget = get_balanced_memory(model, max_memory=unlimited, no_split_module_classes=no_split)
    device_map = infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split)
    assert len(set(device_map.values())) >= 2, device_map
    return dispatch_model(model, device_map)


def _medians(runs: dict) -> dict:
    """Median seconds per run, the runs interleaved so that machine noise hits them alike."""
    times = {name: [] for name in runs}
    with torch.no_grad():
        for run in runs.values():
            run()  # warm-up
        for _ in range(REPEATS):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _bench(label: str, build) -> None:
    model, processor = build()
    with qd.simulated_gpus(4):
        one = copy.deepcopy(model).to("cuda:0")
        two = _split(copy.deepcopy(model), 2)
        four = _split(copy.deepcopy(model), 4)
        for kind in qd.INPUT_KINDS:
            inputs = qd.sample_inputs(processor, kind)
            on_gpu = qd.sample_inputs(processor, kind).to("cuda:0")  # BatchFeature.to moves in place
            median = _medians(
                {
                    "plain": functools.partial(model, **inputs),
                    "1 GPU": functools.partial(one, **on_gpu),
                    "2 GPUs": functools.partial(two, **inputs),
                    "4 GPUs": functools.partial(four, **inputs),
                }
            )
            base = median["plain"]
            ratios = "  ".join(f"{n} {median[n] / base:4.2f}x" for n in ("1 GPU", "2 GPUs", "4 GPUs"))
            print(f"{label:10s} {kind:6s} plain {base * 1000:7.1f} ms   {ratios}")


def main() -> None:
    versions = f"transformers {transformers.__version__}, torch {torch.__version__}"
    print(f"{versions}, {torch.get_num_threads()} threads")
    print(f"simulated forward / plain CPU forward (median of {REPEATS} interleaved runs)")
    _bench("tiny", lambda: qd.tiny_model("qwen2_5_vl"))
    _bench("twin 7B", lambda: qd.twin("Qwen/Qwen2.5-VL-7B-Instruct"))


if __name__ == "__main__":
    main()
