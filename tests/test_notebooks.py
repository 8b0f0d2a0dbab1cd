"""Every notebook runs top to bottom headless, in this stack's kernel, and shows what matters."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import SEED_FIX_VERDICTS
from nbclient import NotebookClient

from qwenvl_diag import VERDICT_COLOURS as COLOURS
from qwenvl_diag import versions
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least

NOTEBOOK_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# both seed failures were fixed in transformers 4.52.1: older stacks must show them, newer ones must pass
SEED_FIXED = transformers_at_least("4.52.1")
# the version lab's side environments, shared with test_versions (in LAB_CACHE/envs; git ignores it)
LAB_CACHE = Path(__file__).resolve().parents[1] / "test-output"


def _run(path: Path) -> tuple[str, float]:
    """Execute the notebook in a fresh kernel of this interpreter; (all outputs as text, seconds)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    )
    # the kernel must be this stack's interpreter, not whatever "python3" means elsewhere
    client.km_kwargs = {"kernel_cmd": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]}
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    text = "\n".join(
        output.get("text", "") + json.dumps(output.get("data", {}))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    return text, seconds


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name
        assert all(cell.get("execution_count") is None for cell in notebook.cells if cell.cell_type == "code")


def _reproduce_expected() -> list[str]:
    """What 01_reproduce.ipynb must print on this stack (its own cells assert the details)."""
    common = [
        "vision_embed_apart",
        "image/png",
        "## qwenvl-diag: `Qwen/Qwen2.5-VL-7B-Instruct`",
        "application/vnd.jupyter.widget-view+json",  # the diagnosis panel
    ]
    if SEED_FIXED:
        return common + [
            f"transformers {TRANSFORMERS_VERSION} is already fixed: the batched generate passed",
            f"transformers {TRANSFORMERS_VERSION} is already fixed: the video forward passed",
            f"transformers {TRANSFORMERS_VERSION} is already fixed: both seed failures passed above",
            "generate passed",
            # ... and the version lab shows the batched failure under 4.51.3 (BUG_FACTS.md: line 1334)
            "version lab: transformers 4.51.3 failed at "
            "transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py:1334 (qwen2_5_vl-batched-causal-mask)",
        ]
    return common + [
        # the batched failure: the error, the library line, the known bug
        "found at least two devices, cuda:1 and cuda:0!",
        "modeling_qwen2_5_vl.py",
        "_prepare_4d_causal_attention_mask_with_cache_position",
        "diagonal_attend_mask = torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)",
        "known bug: qwen2_5_vl-batched-causal-mask",
        # the video failure
        "in get_rope_index",
        "time_tensor = expanded_range * second_per_grid_t",
        "known bug: qwen2_5_vl-video-second-per-grid-ts",
        # the notebook's own assertions passed, and the report is the failing one
        f"reproduced on transformers {TRANSFORMERS_VERSION}: modeling_qwen2_5_vl.py:",
        "generate FAILED",
    ]


def _placement_expected() -> list[str]:
    """What 02_layer_placement.ipynb must show on this stack: the panel, figures, a flagged layout."""
    common = [
        "application/vnd.jupyter.widget-view+json",  # the placement panel
        "image/png",
        "balanced on 8 GPUs: ['vision_embed_apart']",
        "sequential on 8 GPUs: no flags",
        "layouts put the vision tower and embed_tokens on different GPUs",
        "vision on GPU 0: no flags",
        "vision on GPU 1: ['vision_embed_apart']",
    ]
    if SEED_FIXED:
        return common + [f"transformers {TRANSFORMERS_VERSION} is fixed: the flagged layout passes too"]
    return common + [
        "vision tower apart:             Expected all tensors to be on the same device, "
        "but found at least two devices, cuda:0 and cuda:1!",
        "the flagged layout fails at diagonal_attend_mask = torch.arange(target_length, device=device) > "
        "cache_position.reshape(-1, 1)",
    ]


def _fix_and_verify_expected() -> tuple[list[str], list[str]]:
    """What 03_fix_and_verify.ipynb must show on this stack (its own cells assert the details), and
    what it must not: red rows where transformers is fixed, grey-green ("not needed") ones where not."""
    green, grey, red = (f"background-color: {COLOURS[v]}" for v in ("fixed", "not needed", "not fixed"))
    common = [
        "image/png",  # the rope positions plot
        "application/vnd.jupyter.widget-view+json",  # the verify panel
        "rope positions with second_per_grid_ts_as_list equal the single-device reference",
        "video tokens 45-52: t takes [45, 47]",
        f"seed-batched: the verdicts expected on transformers {TRANSFORMERS_VERSION}",
        f"seed-video: the verdicts expected on transformers {TRANSFORMERS_VERSION}",
        "error: none, generate passed",  # the scenario that carries vision_with_embeddings
    ]
    if SEED_FIXED:
        lines = [f"{preset}: {fix} -> not needed" for preset, on in SEED_FIX_VERDICTS.items() for fix in on]
        return common + lines + [grey, "no red rows on transformers"], [red, green]
    lines = [f"{preset}: {fix} -> {v}" for preset, on in SEED_FIX_VERDICTS.items() for fix, v in on.items()]
    return common + lines + [
        green,
        red,
        "seed-batched: fixed by single_device, vision_with_embeddings, rope_mask_hotfix",
        "seed-video: fixed by second_per_grid_ts_as_list, rope_mask_hotfix",
        "leaves qwen2_5_vl-batched-causal-mask in place",
        "leaves qwen2_5_vl-video-second-per-grid-ts in place",
        "without a fix: no positions: No Qwen2_5_VLForConditionalGeneration.get_rope_index call returned",
    ], [grey]


FIX_AND_VERIFY, FIX_AND_VERIFY_ABSENT = _fix_and_verify_expected()

EXPECTED = {
    "01_reproduce.ipynb": _reproduce_expected(),
    "02_layer_placement.ipynb": _placement_expected(),
    "03_fix_and_verify.ipynb": FIX_AND_VERIFY,
}
ABSENT = {"03_fix_and_verify.ipynb": FIX_AND_VERIFY_ABSENT}  # snippets that must not show


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_headless(name, monkeypatch):
    monkeypatch.setenv("QWENVL_DIAG_CACHE", str(LAB_CACHE))  # the kernel inherits it
    if name == "01_reproduce.ipynb" and SEED_FIXED:
        versions.side_env("4.51.3")  # made before the notebook runs, as `make lab` does for users
    text, seconds = _run(NOTEBOOK_DIR / name)
    for snippet in EXPECTED[name]:
        assert snippet in text, (
            f"{name} (transformers {TRANSFORMERS_VERSION}, ran in {seconds:.1f} s): {snippet!r}"
        )
    for snippet in ABSENT.get(name, []):
        assert snippet not in text, f"{name} (transformers {TRANSFORMERS_VERSION}): {snippet!r}"
    if not SEED_FIXED:
        assert "is already fixed" not in text, f"{name} (ran in {seconds:.1f} s)"
    print(f"{name}: ran headless in {seconds:.1f} s on transformers {TRANSFORMERS_VERSION}")
