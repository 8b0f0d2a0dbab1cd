"""Each notebook executed headless (nbclient, a fresh kernel of this interpreter), top to bottom, timed.

Budget: <= 60 s per notebook on a 2-core machine; goal for 01_reproduce: <= 30 s. The time includes
the kernel's start and `import qwenvl_diag`. On the current stack, 01 also runs the version lab's
batched case under transformers 4.51.3 when that side environment is made (`make lab-envs`).

Run: .venv/bin/python benchmarks/bench_notebooks.py   (and .venv-legacy/bin/python for the legacy stack)
"""

from __future__ import annotations

import sys
from pathlib import Path

import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # as pytest puts it
from test_notebooks import NOTEBOOKS, _execute  # noqa: E402  the tests' way to execute a notebook

BUDGET_S = 60.0
GOALS_S = {"01_reproduce.ipynb": 30.0}


def main() -> None:
    print(f"transformers {transformers.__version__}, {sys.executable}")
    for path in NOTEBOOKS:
        seconds = _execute(path, {}).seconds
        goal = GOALS_S.get(path.name, BUDGET_S)
        verdict = "ok" if seconds <= goal else "OVER"
        print(f"{path.name:28s} {seconds:6.1f} s   (goal {goal:.0f} s, budget {BUDGET_S:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
