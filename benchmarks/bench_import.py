"""What starting the kit costs, as ratios measured in one run of fresh interpreters.

- `import qwenvl_diag` / `import torch, transformers, accelerate` (goal <= 1.3x), and the same with
  every public name resolved (`getattr(qd, name)` for all of `qd.__all__`: what a notebook using the
  whole API pays; goal <= 1.3x too: nothing heavy beyond the three libraries, no torchvision, widgets,
  plotting or image processing);
- `qwenvl-diag --help` / `import torch` (goal <= 0.3x: the CLI's parser imports no torch).

Each round runs every command once in a fresh subprocess, in an order rotated from round to round so
that machine noise hits them alike; the ratios are medians of the per-round ratios.

Run: .venv/bin/python benchmarks/bench_import.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROUNDS = 9
COMMANDS = {
    "libraries": ["-c", "import torch, transformers, accelerate"],
    "kit": ["-c", "import qwenvl_diag"],
    "kit API": ["-c", "import qwenvl_diag as qd\nfor name in qd.__all__: getattr(qd, name)"],
    "torch": ["-c", "import torch"],
    "cli help": ["-m", "qwenvl_diag.cli", "--help"],
}
RATIOS = [  # (label, measured, against, goal)
    ("import qwenvl_diag / import torch, transformers, accelerate", "kit", "libraries", 1.3),
    ("whole public API / import torch, transformers, accelerate", "kit API", "libraries", 1.3),
    ("qwenvl-diag --help / import torch", "cli help", "torch", 0.3),
]
# the kit of this checkout, also where it is installed elsewhere (worktrees)
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(commands: dict[str, list[str]], ratios: list[tuple], rounds: int = ROUNDS) -> None:
    """Time each of `commands` (python arguments) in fresh interpreters, `rounds` rotated rounds, and
    print the median seconds and each of `ratios` ((label, measured, against, goal))."""
    names = list(commands)
    for name in names:
        _seconds(commands[name])  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_seconds(commands[name]))
    print(f"fresh interpreters, {rounds} rounds, median seconds ({sys.executable}):")
    for name in names:
        print(f"  {name:10s} {statistics.median(times[name]):6.2f} s   python {' '.join(commands[name])!r}")
    for label, measured, against, goal in ratios:
        ratio = statistics.median(m / a for m, a in zip(times[measured], times[against], strict=True))
        verdict = "ok" if ratio <= goal else "MISSED"
        print(f"{label}: {ratio:.2f}x (goal <= {goal}x) {verdict}")


if __name__ == "__main__":
    compare(COMMANDS, RATIOS, int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS)
