"""The FSDP2 engine: torch's fully_shard over simulated ranks, the simulator's streams and DTensor shards,
the per-rank diagnosis, everything put back, the kit's errors; H and I reproduced in the version lab."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import qwenvl_diag as qd
from qwenvl_diag import fsdp
from qwenvl_diag._compat import TRANSFORMERS_5
from qwenvl_diag.scenario import build, scenario_inputs

CACHE = Path(__file__).resolve().parents[1] / "test-output"
TINY = "tiny/qwen2_5_vl"


def _tiny(inputs: str = "text"):
    scenario = qd.Scenario(TINY, inputs=inputs)
    model, processor, _ = build(scenario)
    return model, scenario_inputs(scenario, processor)


def test_a_sharded_linear_keeps_its_rank_device_through_forward_and_the_offload_shard_reads_cpu():
    with qd.simulated_gpus(2):
        for offload, shard_device in ((False, "cuda:1"), (True, "cpu")):
            with fsdp.rank_process_group(1, 2):
                from torch.distributed.device_mesh import init_device_mesh
                from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

                torch.cuda.set_device(1)
                layer = torch.nn.Linear(4, 6)
                options = {"offload_policy": CPUOffloadPolicy()} if offload else {}
                fully_shard(layer, mesh=init_device_mesh("cuda", (2,)), **options)
                assert type(layer.weight).__name__ == "DTensor"
                assert str(layer.weight.device) == shard_device
                assert layer.weight.to_local().shape == (3, 4)  # rank 1's half of the rows
                out = layer(torch.ones(2, 4, device="cuda:1"))
                assert str(out.device) == "cuda:1" and out.shape == (2, 6)
                # the root stays unsharded after forward (FSDP2 keeps the root's parameters for backward)
                assert type(layer.weight).__name__ != "DTensor" and str(layer.weight.device) == "cuda:1"
                out.sum().backward()  # the engine runs FSDP2's hooks simulated: the reduce-scatter on cuda:1
                layer.reshard()
                assert type(layer.weight).__name__ == "DTensor" and str(layer.weight.device) == shard_device
                grad = layer.weight.grad
                assert type(grad).__name__ == "DTensor" and str(grad.device) == shard_device
                assert grad.to_local().shape == (3, 4)


def test_streams_are_per_device_and_the_stream_context_makes_its_device_current():
    with qd.simulated_gpus(2):
        default = torch.cuda.current_stream()
        side = torch.cuda.Stream(device=1)
        assert str(default.device) == "cuda:0" and str(side.device) == "cuda:1"
        with torch.cuda.stream(side):
            assert torch.cuda.current_device() == 1 and torch.cuda.current_stream(1) == side
            event = torch.cuda.Event()
            event.record()
            assert event.query() and str(event.device) == "cuda:1"
        assert torch.cuda.current_device() == 0 and torch.cuda.current_stream(1) != side
        assert torch.accelerator.current_stream() == default
        with pytest.raises(RuntimeError, match="does not match recording stream"):
            event.record(default)


def test_the_simulation_puts_streams_accelerator_and_dtensor_back():
    from torch.distributed.tensor import DTensor

    before = (
        torch.cuda.Stream,
        torch.cuda.current_stream,
        torch.accelerator.current_stream,
        DTensor.__dict__.get("device"),
    )
    with qd.simulated_gpus(2):
        assert torch.cuda.Stream is not before[0]
    after = (
        torch.cuda.Stream,
        torch.cuda.current_stream,
        torch.accelerator.current_stream,
        DTensor.__dict__.get("device"),
    )
    assert after == before


def test_the_verl_wrap_makes_units_of_layers_blocks_and_untied_embeddings():
    untied = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")[0]  # tie_word_embeddings false: embeddings are units
    units = fsdp.fsdp_units(untied)
    assert units[-1] == "" and any(name.endswith("visual.blocks.0") for name in units)
    assert any(name.endswith("layers.27") for name in units)  # 28 decoder layers, each a unit
    assert [name for name in units if name.endswith("embed_tokens")]
    tied = qd.twin("Qwen/Qwen2.5-VL-3B-Instruct")[0]
    assert not [name for name in fsdp.fsdp_units(tied) if name.endswith("embed_tokens")]
    with pytest.raises(qd.EngineError, match="_no_split_modules"):
        fsdp.fsdp_units(torch.nn.Linear(2, 2))


def test_a_two_rank_diagnosis_has_a_rank_column_and_engine_facts_and_leaves_everything_as_before():
    model, inputs = _tiny()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    kept_inputs = {name: value.clone() for name, value in inputs.items()}
    environ, threads, kind = dict(os.environ), threading.active_count(), type(model)
    diagnosis = qd.run(qd.Scenario(TINY, engine="fsdp2", gpus=2, inputs="text", cpu_offload=True))
    assert diagnosis.ok, diagnosis.error
    assert diagnosis.engine["engine"] == "fsdp2" and diagnosis.engine["world_size"] == 2
    assert diagnosis.engine["offload_policy"] == "CPUOffloadPolicy()"
    for name in ("tensors", "placement", "flags"):
        frame = diagnosis.frames[name]
        assert list(frame.columns)[0] == "rank" and set(frame["rank"]) == {0, 1}, name
    tensors = diagnosis.frames["tensors"]
    assert set(tensors.loc[tensors["rank"] == 1, "execution_device"]) == {"cuda:1"}
    placement = diagnosis.frames["placement"]
    assert set(placement.loc[placement["params"] > 0, "device"]) == {"cpu"}  # the offloaded shards
    flags = diagnosis.frames["flags"].set_index("code")
    assert set(flags.index) == {"fsdp_cpu_offload", "fsdp_embedding_units"}  # the tiny model is untied
    assert any(name.endswith("embed_tokens") for name in flags.loc["fsdp_embedding_units", "modules"].iloc[0])
    assert (
        "engine: FSDP2 (fully_shard), world size 2, offload policy: CPUOffloadPolicy()"
        in diagnosis.to_markdown()
    )
    again = qd.Diagnosis.from_dict(diagnosis.to_dict())
    assert again.engine == diagnosis.engine and list(again.frames["tensors"].columns) == list(tensors.columns)
    # this process's model is another one (run builds its own); the same checks on diagnose_ranks' caller:
    with qd.simulated_gpus(2):
        torch.cuda.set_device(1)
        qd.diagnose_ranks(model, inputs, 2, cpu_offload=True)
        assert torch.cuda.current_device() == 1  # each rank's current device is put back
    assert not dist.is_initialized() and dict(os.environ) == environ and threading.active_count() == threads
    assert type(model) is kind and all(type(p) is torch.nn.Parameter for p in model.parameters())
    assert all(torch.equal(state[name], value) for name, value in model.state_dict().items())
    assert all(torch.equal(kept_inputs[name], value) for name, value in inputs.items())


def test_a_rank_whose_forward_raises_is_named_and_nothing_is_left_behind():
    model, inputs = _tiny()
    layer = model.get_submodule(next(n for n in fsdp.fsdp_units(model) if n.endswith("layers.0")))

    def fail(module, args):
        raise RuntimeError(f"the user's layer failed on {torch.cuda.current_device()}")

    handle = layer.register_forward_pre_hook(fail)
    environ = dict(os.environ)
    try:
        with qd.simulated_gpus(2):
            diagnosis = fsdp.diagnose_ranks(model, inputs, 2)
    finally:
        handle.remove()
    assert diagnosis.error == "the user's layer failed on 0"
    assert diagnosis.advice[0] == "Failed on rank(s) 0, 1 of 2."
    assert not dist.is_initialized() and dict(os.environ) == environ
    with qd.simulated_gpus(2):
        assert fsdp.diagnose_ranks(model, inputs, 2).ok  # the model still runs, sharded afresh


def test_the_engine_refuses_what_it_cannot_run_and_changes_nothing():
    with pytest.raises(qd.QwenVLDiagError, match="Unknown engine 'ddp'"):
        qd.Scenario(TINY, engine="ddp")
    with pytest.raises(qd.QwenVLDiagError, match="cpu_offload is the fsdp2 engine's"):
        qd.Scenario(TINY, cpu_offload=True)
    with pytest.raises(qd.QwenVLDiagError, match="host_buffers is what an FSDP2 trainer does"):
        qd.Scenario(TINY, host_buffers=True)
    with pytest.raises(qd.QwenVLDiagError, match="strategy 'balanced' is a device_map placement"):
        qd.Scenario(TINY, engine="fsdp2", strategy="balanced")
    with pytest.raises(qd.QwenVLDiagError, match="cpu_offload must be True or False"):
        qd.Scenario(TINY, engine="fsdp2", cpu_offload="yes")
    with pytest.raises(qd.QwenVLDiagError, match="act on a device_map placement"):
        qd.Scenario(TINY, engine="fsdp2", fixes=["single_device"])
    with pytest.raises(qd.QwenVLDiagError, match="moves each rank's batch to the rank's GPU"):
        qd.Scenario(TINY, engine="fsdp2", inputs_on="model")
    with pytest.raises(qd.QwenVLDiagError, match="the device_map planner's CPU budget"):
        qd.Scenario(TINY, engine="fsdp2", cpu_memory="64GiB")
    model, inputs = _tiny()
    with pytest.raises(qd.EngineError, match="needs 4 GPUs"), qd.simulated_gpus(2):
        fsdp.diagnose_ranks(model, inputs, 4)
    dist.init_process_group("fake", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(qd.EngineError, match="already running"), qd.simulated_gpus(2):
            fsdp.diagnose_ranks(model, inputs, 2)
        assert dist.is_initialized()  # the user's group is left alone
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("engine", ["device_map", "fsdp2"])
def test_a_train_step_runs_backward_on_the_simulated_gpus_and_leaves_no_gradients(engine):
    diagnosis = qd.run(qd.Scenario(TINY, gpus=2, inputs="image", action="train_step", engine=engine))
    assert diagnosis.ok, diagnosis.error
    with qd.simulated_gpus(2):
        layer = torch.nn.Linear(3, 2).to("cuda:1")
        layer(torch.ones(4, 3, device="cuda:1")).sum().backward()
        assert str(layer.weight.grad.device) == "cuda:1" and type(layer.weight.grad).__name__ == "tensor"
    model, inputs = _tiny("image")
    assert qd.diagnose(model, inputs, action="train_step").ok
    assert all(param.grad is None for param in model.parameters())  # the step's gradients taken off again
    with pytest.raises(qd.QwenVLDiagError, match="Unknown action 'train'"):
        qd.Scenario(TINY, action="train")
    no_ids = {"inputs_embeds": torch.zeros(1, 2, 32)}
    with pytest.raises(qd.InvalidArgumentError, match="uses the input_ids as labels"):
        qd.diagnose(model, no_ids, action="train_step")


def test_the_cli_doctor_runs_the_fsdp2_engine():
    import contextlib
    import io
    import json

    from qwenvl_diag.cli import main

    out = io.StringIO()
    argv = [
        "doctor",
        "--model",
        TINY,
        "--engine",
        "fsdp2",
        "--cpu-offload",
        "--inputs",
        "text",
        "--format",
        "json",
    ]
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    report = json.loads(out.getvalue())
    assert report["engine"]["engine"] == "fsdp2" and report["engine"]["cpu_offload"] is True
    assert report["scenario"]["engine"] == "fsdp2" and report["model"] == "Qwen2_5_VLForConditionalGeneration"
    assert report["frame_columns"]["tensors"][0] == "rank"


def test_host_buffers_moves_the_non_persistent_buffers_and_verify_judges_fsdp2_runs_on_errors():
    model, inputs = _tiny()
    with qd.simulated_gpus(2), fsdp.rank_process_group(0, 2):
        replica = fsdp.sharded_replica(model, 0, 2, True, host_buffers=True)
        moved = [name for name, b in replica.named_buffers() if b.device.type == "cpu"]
        assert moved and all(name.endswith("inv_freq") for name in moved)
    table = qd.verify(qd.Scenario(TINY, engine="fsdp2", inputs="text", cpu_offload=True), fix="single_device")
    row = table.iloc[0]
    assert row["error_before"] is None and row["verdict"] == "breaks results"
    assert "acts on a device_map placement" in row["why"]


def test_the_moe_copy_of_the_line_is_the_same_entry():
    """Qwen3-VL-MoE's file is generated from Qwen3-VL's (modular): the same function and line are the same
    bug (the 30B-A3B reports: verl 5571, trl 4771, torchtitan 2195 quote modeling_qwen3_vl_moe.py)."""
    path = "/opt/conda/lib/python3.10/site-packages/transformers/models/qwen3_vl_moe/modeling_qwen3_vl_moe.py"
    code = "pos_embeds = self.pos_embed(idx_tensor) * weight_tensor[:, :, None]"
    found = qd.match_known_bugs(path, "Qwen3VLMoeVisionModel.fast_pos_embed_interpolate", code, "4.57.1")
    assert [row["id"] for row in found] == ["qwen3_vl-fsdp2-offload-pos-embed-index"]
    assert qd.match_known_bugs(path, "fast_pos_embed_interpolate", code, "5.9.0") == []
    rotary = "freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(2, 3)"
    assert [row["id"] for row in qd.match_known_bugs(path, "forward", rotary, "5.17.0")] == [
        "qwen3_vl-fsdp2-host-inv-freq-again"
    ]


def test_a_pasted_fsdp_traceback_is_explained_as_h_with_an_fsdp2_reproduction():
    site = "/home/u/rl/lib/python3.10/site-packages"
    text = (
        "transformers: 4.57.1; verl 0.7.0, fsdp2 with param offload\n"
        f'[rank0]:   File "{site}/transformers/models/qwen3_vl_moe/modeling_qwen3_vl_moe.py", line 738, in '
        "fast_pos_embed_interpolate\n"
        "[rank0]:     pos_embeds = self.pos_embed(idx_tensor) * weight_tensor[:, :, None]\n"
        f'[rank0]:   File "{site}/torch/nn/functional.py", line 2546, in embedding\n'
        "[rank0]: RuntimeError: Expected all tensors to be on the same device, but got index is on cpu,"
        " different from other tensors on cuda:0"
        " (when checking argument in method wrapper_CUDA__index_select)\n"
    )
    explained = qd.explain(text)
    assert explained.best["id"] == "qwen3_vl-fsdp2-offload-pos-embed-index"
    assert "fsdp" in explained.facts["engine"]
    assert explained.scenario["engine"] == "fsdp2" and explained.scenario["cpu_offload"] is True
    assert "**fixed in 5.9.0**" in explained.reply


@pytest.mark.versions
def test_h_fails_in_fast_pos_embed_interpolate_on_4_57_and_passes_on_the_fixed_release(monkeypatch):
    """The issue's own call: Qwen3-VL-8B, FSDP2 over 2 ranks with CPU offload, image forward. The version
    lab runs on the current stack; the legacy one (no Qwen3-VL) must refuse the scenario here."""
    monkeypatch.setenv("QWENVL_DIAG_CACHE", str(CACHE))
    scenario = qd.Scenario(
        "Qwen/Qwen3-VL-8B-Instruct",
        engine="fsdp2",
        gpus=2,
        inputs="image",
        action="forward",
        cpu_offload=True,
    )
    if not TRANSFORMERS_5:
        with pytest.raises(qd.UnsupportedReleaseError, match="qwen3_vl needs transformers >= 4.57.0"):
            qd.run(scenario)
        return
    affected = qd.run(qd.Scenario.from_dict({**scenario.to_dict(), "transformers": "4.57.6"}))
    assert affected.error.startswith("Expected all tensors to be on the same device, but got index is on cpu")
    assert "wrapper_CUDA__index_select" in affected.error
    first = affected.first_mismatch
    assert first["function"] == "fast_pos_embed_interpolate" and first["rank"] == 0
    assert first["code"] == "pos_embeds = self.pos_embed(idx_tensor) * weight_tensor[:, :, None]"
    assert affected.known_bugs[0]["id"] == "qwen3_vl-fsdp2-offload-pos-embed-index"
    assert set(affected.frames["mismatches"]["rank"]) == {0, 1}
    fixed = qd.run(qd.Scenario.from_dict({**scenario.to_dict(), "transformers": "5.9.0"}))
    assert fixed.ok, fixed.error
    moe = qd.run(
        qd.Scenario.from_dict(
            {**scenario.to_dict(), "model": "Qwen/Qwen3-VL-30B-A3B-Instruct", "transformers": "4.57.6"}
        )
    )
    assert moe.first_mismatch["file"].endswith("qwen3_vl_moe/modeling_qwen3_vl_moe.py")
    assert [bug["id"] for bug in moe.known_bugs] == ["qwen3_vl-fsdp2-offload-pos-embed-index"]
    no_offload = qd.run(
        qd.Scenario.from_dict({**scenario.to_dict(), "transformers": "4.57.6", "cpu_offload": False})
    )
    assert no_offload.ok, no_offload.error
