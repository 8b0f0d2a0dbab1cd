"""Candidates from public reports that the catalogue does not hold, reproduced here with the evidence of
why (BUG_HISTORY.md K).

K: "argument mat2 in method wrapper_CUDA_bmm" on two GPUs with device_map="auto". One mechanism is in
the code: a tool (AutoAWQ's calibration, a user's own script) moves the text rotary of a dispatched model
with `.to()`; accelerate's hook on the rotary still sends its inputs to the GPU it was planned on, so
`inv_freq` and `position_ids` meet on two GPUs in the rotary's matmul. accelerate warns only when the
whole model is moved, not a submodule. A usage error, not a transformers bug: releases whose rotary
multiplies with `@` (4.x) raise; those that bring `inv_freq` to `x.device` first (5.x) do not.
"""

from __future__ import annotations

import inspect
import warnings

import pytest

import qwenvl_diag as qd
from qwenvl_diag.explain import read_facts
from qwenvl_diag.fixes import Setup
from qwenvl_diag.scenario import materials

MATMUL = "inv_freq_expanded.float() @ position_ids_expanded.float()"


@pytest.mark.parametrize("checkpoint", ["Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"])
def test_a_rotary_moved_after_dispatch_fails_in_its_matmul_where_it_has_one(checkpoint):
    scenario = qd.Scenario(checkpoint, gpus=2, strategy="balanced", inputs="image")
    model, source, plan, inputs = materials(scenario)
    path = min(
        (n for n, _ in model.named_modules() if n.endswith("rotary_emb") and "visual" not in n), key=len
    )
    planned = next(device for name, device in plan.device_map.items() if path.startswith(name))
    with qd.simulated_gpus(2):
        setup = Setup(model, inputs, plan, source)
        setup.place()
        rotary = model.get_submodule(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # accelerate says nothing about a submodule moved
            rotary.to(f"cuda:{1 - planned}")
        diagnosis = qd.diagnose(model, setup.inputs)
    if MATMUL not in inspect.getsource(type(rotary)):
        assert diagnosis.ok, diagnosis.error  # 5.x: inv_freq goes to x.device before the product
        return
    first = diagnosis.first_mismatch
    assert (first["module"], first["function"]) == (path, "forward") and MATMUL in first["code"], first
    facts = read_facts(diagnosis.error)
    assert (facts["wrapper"], facts["argument"]) == ("wrapper_CUDA_bmm", "mat2"), diagnosis.error
    # the hook put position_ids on the planned GPU; the moved inv_freq is "the other tensors"
    assert f"mat2 is on cuda:{planned}, different from other tensors on cuda:{1 - planned}" in diagnosis.error
    assert diagnosis.known_bugs == []  # not a catalogue entry: see the module docstring
