"""Build time and one plain-CPU forward per tiny model and twin, measured in this run.

Run: .venv/bin/python benchmarks/bench_models.py   (or `make bench`)
"""

from __future__ import annotations

import statistics
import time

import torch
import transformers

import qwenvl_diag as qd
from qwenvl_diag._compat import transformers_at_least
from qwenvl_diag.models.families import FAMILIES
from qwenvl_diag.models.twin import checkpoint_family


def _median_seconds(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(label: str, build) -> None:
    start = time.perf_counter()
    model, processor = build()
    built = time.perf_counter() - start
    inputs = qd.sample_inputs(processor, "image")
    with torch.no_grad():
        forward = _median_seconds(lambda: model(**inputs))
    params = sum(p.numel() for p in model.parameters())
    print(f"{label:36s} {params / 1e6:9.2f}M {built:9.2f}s {forward * 1000:11.1f}ms")


def main() -> None:
    versions = f"transformers {transformers.__version__}, torch {torch.__version__}"
    print(f"{versions}, {torch.get_num_threads()} threads")
    print(f"{'model':36s} {'params':>10s} {'build':>10s} {'forward':>13s}  (image input, median of 5)")
    for family in FAMILIES.values():
        if transformers_at_least(family.since):
            _row(f"tiny {family.name}", lambda f=family.name: qd.tiny_model(f))
    for checkpoint in list(qd.twins()["checkpoint"]):
        try:
            checkpoint_family(checkpoint)
        except qd.UnsupportedReleaseError:
            continue
        _row(f"twin {checkpoint}", lambda c=checkpoint: qd.twin(c))


if __name__ == "__main__":
    main()
