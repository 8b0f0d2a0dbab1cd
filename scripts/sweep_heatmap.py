"""Draw the sweep heatmap of docs/guide/sweeps.md, `docs/images/sweep_heatmap.png`: Qwen2.5-VL-7B on
1/2/4/8 GPUs of 24 GiB x the four strategies x image/batch/video/text x generate, on the installed
transformers.

    .venv-legacy/bin/python scripts/sweep_heatmap.py [--output PATH]    # the picture is of 4.51.3
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import qwenvl_diag as qd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "images" / "sweep_heatmap.png"))
    options = parser.parse_args()
    warnings.filterwarnings("ignore")
    import matplotlib

    matplotlib.use("Agg")
    frame = qd.sweep("Qwen/Qwen2.5-VL-7B-Instruct", gpus=[1, 2, 4, 8], memory="24GiB", actions="generate")
    figure = qd.plot_sweep(frame)
    figure.axes[0].set_title(
        f"Qwen2.5-VL-7B, generate, transformers {frame['transformers'].iat[0]}: {len(frame)} scenarios, "
        f"{frame.attrs['timings'][0]['unique_runs']} runs",
        fontsize=10,
        pad=28,
    )
    figure.savefig(options.output, dpi=110, bbox_inches="tight")
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
