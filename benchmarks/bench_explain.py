"""What `qwenvl-diag explain` costs against `python -c "import torch"`, measured in one run of fresh
interpreters (as bench_import measures): explain on a 200-line pasted traceback (a torchrun log of the
seed's batched failure, `[rank3]:` prefixes, colour codes, the environment report), and `--help`.
Goal for both: <= 0.3x (the parser and the catalogue are pure text and data; no torch).

Then how right it is on the corpus of real public reports (`tests/data/explain_corpus`): top-1 and top-3
accuracy on the development split and on the fifth held aside (never tuned on), and how often an answer
of each confidence level was right, and the ceiling: how many texts hold their answer at all (the
corpus' `answerable`), with top-1 on those. Goals (issue 25): top-1 >= 90% and top-3 >= 97% on the held
split.

Run: .venv/bin/python benchmarks/bench_explain.py [ROUNDS]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench_import import ROUNDS, compare

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import explain_corpus  # noqa: E402  (the corpus and its scoring live with the tests that hold the floor)

FRAME = (
    '[rank3]:   File "/opt/conda/lib/python3.10/site-packages/{path}", line {line}, in {function}\n'
    "[rank3]:     {code}\n"
)
ERROR = (
    "[rank3]: \x1b[31mRuntimeError\x1b[0m: Expected all tensors to be on the same device, but found at least "
    "two devices, cuda:1 and cuda:0!\n"
)
ENVIRONMENT = (
    "- `transformers` version: 4.51.3\n- Python version: 3.10.14\n"
    "- PyTorch version (GPU?): 2.6.0+cu124 (True)\n"
    "- Accelerate version: 1.6.0\nGPU 0: NVIDIA A100-SXM4-80GB\nGPU 1: NVIDIA A100-SXM4-80GB\n"
)


def _traceback(lines: int = 200) -> str:
    """A torchrun log of `lines` lines: frames through torch and accelerate, the library frame, the error."""
    frames = ["[rank3]: Traceback (most recent call last):\n"]
    while len("".join(frames).splitlines()) < lines - 10:
        depth = len(frames)
        frames.append(
            FRAME.format(
                path="torch/nn/modules/module.py",
                line=1700 + depth,
                function="_call_impl",
                code="return forward_call(*args, **kwargs)",
            )
        )
    frames.append(
        FRAME.format(
            path="transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py",
            line=1334,
            function="_prepare_4d_causal_attention_mask_with_cache_position",
            code="diagonal_attend_mask = torch.arange(target_length, device=device) > "
            "cache_position.reshape(-1, 1)",
        )
    )
    return "".join(frames) + ERROR + ENVIRONMENT


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        pasted = Path(folder) / "traceback.txt"
        pasted.write_text(_traceback())
        print(f"the pasted text: {len(pasted.read_text().splitlines())} lines")
        commands = {
            "torch": ["-c", "import torch"],
            "explain": ["-m", "qwenvl_diag.cli", "explain", str(pasted)],
            "cli help": ["-m", "qwenvl_diag.cli", "--help"],
        }
        compare(
            commands,
            [
                ("qwenvl-diag explain (200 lines) / import torch", "explain", "torch", 0.3),
                ("qwenvl-diag --help / import torch", "cli help", "torch", 0.3),
            ],
            rounds,
        )
    accuracy()


def accuracy() -> None:
    """Top-1 / top-3 per split and the calibration of each confidence level, on the corpus."""
    items = explain_corpus.load()
    measured = explain_corpus.evaluate(items)
    print(f"\nthe corpus: {len(items)} real pastes")
    for split, counts in sorted(measured["splits"].items()):
        n = counts["n"]
        print(
            f"  {split:5} split: top-1 {counts['top1'] / n:6.1%} ({counts['top1']}/{n}), "
            f"top-3 {counts['top3'] / n:6.1%} ({counts['top3']}/{n})"
        )
        # the ceiling: the items whose text alone holds the answer (`answerable`, graded once by a reader)
        answerable, right = counts["answerable"], counts["answerable_top1"]
        print(
            f"  {'':5}        the text holds the answer in {answerable / n:6.1%} ({answerable}/{n}, the "
            f"ceiling of top-1); top-1 on those {right / answerable:6.1%} ({right}/{answerable})"
        )
    for level in ("high", "medium", "low", "none"):
        if counts := measured["confidence"].get(level):
            said = "texts with no answer" if level == "none" else f"{level} answers"
            right, n = counts["right"], counts["n"]
            print(f"  {said} were right {right / n:6.1%} of the time ({right}/{n})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS)
