"""The seed's two failures, raised by the real transformers code on simulated GPUs (no patching).

transformers 4.49-4.51.3 raise them; from 4.52.1 both are fixed, so on the current stack the same
runs pass and give the single-device result.
"""

from __future__ import annotations

import copy
import inspect
import traceback
from pathlib import Path

import pytest
import torch
from accelerate import dispatch_model
from conftest import MASK_CODE, SEED_LINES_4_51_3, VIDEO_CODE, vision_apart_map

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least

AFFECTED = not transformers_at_least("4.52.1")
SIMULATOR = str(Path(qd.__file__).parent / "simulate")
SAME_DEVICE = "Expected all tensors to be on the same device, but found at least two devices, "
KNOWN_LINES = {"4.51.3": SEED_LINES_4_51_3}


def _raising_frame(error: BaseException) -> traceback.FrameSummary:
    """The innermost frame outside torch and the simulator: the library line that mixed devices."""
    frames = traceback.extract_tb(error.__traceback__)
    torch_dir = str(Path(torch.__file__).parent)
    return [f for f in frames if not f.filename.startswith((SIMULATOR, torch_dir))][-1]


def _source_line(model: torch.nn.Module, text: str) -> int:
    """The line of the installed modeling file that holds `text` (there must be exactly one)."""
    path = inspect.getsourcefile(type(model))
    lines = [i for i, line in enumerate(Path(path).read_text().splitlines(), 1) if text in line]
    assert len(lines) == 1, lines
    return lines[0]


def _assert_raised_at(error: BaseException, model, text: str, message: str) -> None:
    assert str(error) == message
    frame = _raising_frame(error)
    assert frame.filename == inspect.getsourcefile(type(model))
    assert frame.filename.endswith("models/qwen2_5_vl/modeling_qwen2_5_vl.py")
    assert text in frame.line
    assert frame.lineno == _source_line(model, text)
    known = KNOWN_LINES.get(str(TRANSFORMERS_VERSION))
    if known:
        assert frame.lineno == known[text]


@pytest.mark.parametrize("action", ["forward", "generate"])
@pytest.mark.parametrize("layout", ["one GPU, inputs.to(model.device)", "two GPUs, device_map"])
def test_video_failure_with_a_tensor_second_per_grid_ts(action, layout):
    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "video", second_per_grid_ts="tensor")
    with torch.no_grad():
        reference = model(**inputs).logits
    with qd.simulated_gpus(2):
        if layout.startswith("one"):
            model.to("cuda:0")
            inputs = inputs.to(model.device)
        else:
            dispatch_model(model, vision_apart_map(model))
        run = (
            (lambda: model(**inputs).logits)
            if action == "forward"
            else (lambda: model.generate(**inputs, max_new_tokens=2, do_sample=False))
        )
        if AFFECTED:
            with pytest.raises(RuntimeError) as caught:
                run()
            _assert_raised_at(
                caught.value,
                model,
                VIDEO_CODE,
                f"{SAME_DEVICE}cuda:0 and cpu!",
            )
        else:
            out = run()
            if action == "forward":
                assert torch.equal(out.cpu(), reference)


def test_video_passes_with_the_list_form_on_every_release():
    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "video", second_per_grid_ts="list")
    with torch.no_grad():
        reference = model(**inputs).logits
        with qd.simulated_gpus(1):
            model.to("cuda:0")
            got = model(**inputs.to("cuda:0")).logits
            assert got.device == torch.device("cuda:0")
            assert torch.equal(got.cpu(), reference)


def test_batched_failure_with_vision_and_embeddings_on_different_gpus():
    model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
    inputs = qd.sample_inputs(processor, "batch")
    assert not inputs["attention_mask"].bool().all()  # a padded batch
    assert model.config._attn_implementation == "sdpa"
    reference_model = copy.deepcopy(model)
    with torch.no_grad():
        reference_logits = reference_model(**inputs).logits
    reference_ids = reference_model.generate(**inputs, max_new_tokens=3, do_sample=False)
    with qd.simulated_gpus(2):
        dispatch_model(model, vision_apart_map(model))
        with torch.no_grad():
            logits = model(**inputs).logits  # a plain forward builds cache_position on the embeddings' GPU
        real = inputs["attention_mask"].bool()
        assert torch.equal(logits[real], reference_logits[real])
        if AFFECTED:
            with pytest.raises(RuntimeError) as caught:
                model.generate(**inputs, max_new_tokens=3, do_sample=False)
            _assert_raised_at(
                caught.value,
                model,
                MASK_CODE,
                f"{SAME_DEVICE}cuda:1 and cuda:0!",
            )
        else:
            ids = model.generate(**inputs, max_new_tokens=3, do_sample=False)
            assert torch.equal(ids.cpu(), reference_ids)
