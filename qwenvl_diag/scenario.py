"""`Scenario`: the whole flow (model, plan, placement, inputs, traced run) as plain data; `materials`
builds what a scenario runs on (`qd.run`, in `running.py`, runs it).

A scenario is serialisable (`to_dict` / `from_dict` / JSON), so the CLI, the notebooks and the tests
describe a run the same way, and a diagnosis made in one can be rerun from another unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .choices import ALL_ACTIONS, ALL_INPUT_KINDS, DEVICE_MODES, ENGINES, INPUT_PLACES
from .errors import QwenVLDiagError
from .models.catalog import resolve_checkpoint, shipped_checkpoints
from .presets import PRESETS

AVAILABLE = "available"
"""`Scenario.cpu_memory`'s default: the host RAM free now, what from_pretrained plans with by default."""


@dataclass
class Scenario:
    """One run to diagnose. `model` is a shipped checkpoint (run as its twin), "tiny/<family>", or a
    local checkpoint directory (loaded for real). `strategy` is a planner strategy or an explicit map.
    `fixes` names catalogue fixes (`qd.fixes()`) that `run` applies, and undoes, around the run.
    `transformers` is the release to run under: None (or "installed") the installed one, else a release
    such as "4.52.4" or "latest", run in the version lab's side environment of that release.
    `engine` is how the model meets its GPUs: "device_map" (accelerate's dispatch of the planned map,
    `strategy`) or "fsdp2" (torch's `fully_shard` over `gpus` ranks, each on its own GPU, with
    `CPUOffloadPolicy` when `cpu_offload`; `host_buffers` keeps the non-persistent buffers, such as
    the rotary `inv_freq`, on the host, as trainers that offload do: see `qwenvl_diag.fsdp`).
    `cpu_memory` is the host RAM the planner may offload to ("available": what is free on this machine
    now, as from_pretrained reads it when given no max_memory; or a size, "1024GiB", for a GPU server's).
    `inputs_on` is where the inputs are when the model is called: "cpu", where the processor made them
    (accelerate's hooks move what they move; a model on one GPU has none), or "model", the model cards'
    `inputs = inputs.to(model.device)` after loading (what sweeps do by default).

    >>> diagnosis = run(Scenario("Qwen/Qwen2.5-VL-7B-Instruct", gpus=8, strategy="balanced",
    ...                          inputs="batch", action="generate"))
    """

    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    gpus: int = 2
    memory: str = "24GiB"
    strategy: str | dict = "auto"
    inputs: str = "image"
    action: str = "forward"
    second_per_grid_ts: str | None = None
    fps: float = 2.0
    attn_implementation: str = "sdpa"
    max_new_tokens: int = 4
    seed: int = 0
    devices: str = "auto"
    fixes: list[str] = dataclasses.field(default_factory=list)
    transformers: str | None = None
    engine: str = "device_map"
    cpu_offload: bool = False
    host_buffers: bool = False
    inputs_on: str = "cpu"
    cpu_memory: str = AVAILABLE

    def __post_init__(self) -> None:
        if self.inputs not in ALL_INPUT_KINDS:
            raise QwenVLDiagError(f"Unknown inputs {self.inputs!r}; use one of {', '.join(ALL_INPUT_KINDS)}.")
        if self.action not in ALL_ACTIONS:
            raise QwenVLDiagError(f"Unknown action {self.action!r}; use one of {', '.join(ALL_ACTIONS)}.")
        if self.inputs_on not in INPUT_PLACES:
            raise QwenVLDiagError(
                f"Unknown inputs_on {self.inputs_on!r}; use one of {', '.join(INPUT_PLACES)} (the "
                "processor's CPU tensors, or the model cards' inputs.to(model.device))."
            )
        if self.cpu_memory != AVAILABLE:
            from .placement.devices import parse_memory

            parse_memory(self.cpu_memory, "cpu_memory (host RAM to offload to, or 'available')")
        if self.devices not in DEVICE_MODES:
            raise QwenVLDiagError(f"Unknown devices {self.devices!r}; use one of {', '.join(DEVICE_MODES)}.")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise QwenVLDiagError(f"gpus must be a positive int; got {self.gpus!r}.")
        _check_release(self.transformers)
        _check_engine(self)
        from .fixes import resolve

        self.fixes = [fix.name for fix in resolve(self.fixes)]  # unknown names: the kit's error
        if isinstance(self.strategy, dict):  # JSON turns GPU indices into strings
            self.strategy = {
                k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in self.strategy.items()
            }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> Scenario:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise QwenVLDiagError(f"Unknown scenario fields {unknown}; known: {sorted(known)}.")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        return cls.from_dict(json.loads(text))

    @classmethod
    def preset(cls, name: str, **changes) -> Scenario:
        """A named scenario ("seed-batched", "seed-video", each catalogue entry's reproduction: see
        `qd.known_bugs()["scenario"]`), with `changes` to its fields.

        >>> Scenario.preset("text-generate", transformers="4.52.4")
        """
        if name not in PRESETS:
            raise QwenVLDiagError(f"Unknown preset {name!r}; presets: {', '.join(PRESETS)}.")
        return cls.from_dict({**PRESETS[name], **changes})


def _check_engine(scenario: Scenario) -> None:
    """`engine` and what goes with it: `cpu_offload` and `host_buffers` are FSDP2's, `strategy` and
    `fixes` the device_map engine's."""
    if scenario.engine not in ENGINES:
        raise QwenVLDiagError(f"Unknown engine {scenario.engine!r}; use one of {', '.join(ENGINES)}.")
    for name in ("cpu_offload", "host_buffers"):
        if not isinstance(getattr(scenario, name), bool):
            raise QwenVLDiagError(f"{name} must be True or False; got {getattr(scenario, name)!r}.")
    if scenario.engine == "device_map" and scenario.host_buffers:
        raise QwenVLDiagError(
            "host_buffers is what an FSDP2 trainer does with the buffers; use it with engine='fsdp2'."
        )
    if scenario.engine == "device_map" and scenario.cpu_offload:
        raise QwenVLDiagError(
            "cpu_offload is the fsdp2 engine's CPUOffloadPolicy; with engine='device_map' the planner "
            "offloads to the CPU what does not fit in `memory`. Use engine='fsdp2', or a smaller memory."
        )
    if scenario.engine == "fsdp2" and scenario.inputs_on != "cpu":
        raise QwenVLDiagError(
            "The fsdp2 engine moves each rank's batch to the rank's GPU, as a trainer does; inputs_on is the "
            "device_map engine's. Leave it 'cpu'."
        )
    if scenario.engine == "fsdp2" and scenario.cpu_memory != AVAILABLE:
        raise QwenVLDiagError(
            "cpu_memory is the device_map planner's CPU budget; the fsdp2 engine plans nothing (use "
            "cpu_offload for FSDP2's CPUOffloadPolicy)."
        )
    if scenario.engine == "fsdp2" and scenario.fixes:
        raise QwenVLDiagError(
            "The catalogue's fixes act on a device_map placement; with engine='fsdp2' change the scenario "
            "instead (cpu_offload=False, or a fixed transformers release)."
        )
    if scenario.engine == "fsdp2" and scenario.strategy != "auto":
        raise QwenVLDiagError(
            f"strategy {scenario.strategy!r} is a device_map placement; FSDP2 shards every unit over all "
            "`gpus` ranks (rank r on cuda:r). Leave strategy='auto' with engine='fsdp2'."
        )


def _check_release(release: str | None) -> None:
    """A scenario's `transformers`: None, "installed", "latest" or a release string."""
    if release is None or release in ("installed", "latest"):
        return
    try:
        Version(release)
    except (InvalidVersion, TypeError) as error:
        raise QwenVLDiagError(
            f"transformers must be None, 'installed', 'latest' or a release like '4.52.4'; got {release!r}."
        ) from error


def _use_real_devices(scenario: Scenario) -> bool:
    import torch

    real = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if scenario.devices == "real" and real < scenario.gpus:
        raise QwenVLDiagError(
            f"The scenario asks for {scenario.gpus} real GPU(s); this machine has {real}. "
            "Use devices='simulated' (or 'auto')."
        )
    if scenario.devices == "auto" and 0 < real < scenario.gpus:
        raise QwenVLDiagError(
            f"The scenario asks for {scenario.gpus} GPUs; this machine has {real} real one(s), which "
            "simulated GPUs would shadow. Ask for at most that many GPUs, or hide them "
            "(CUDA_VISIBLE_DEVICES='' before starting Python) to simulate the full layout."
        )
    return scenario.devices == "real" or (scenario.devices == "auto" and real >= scenario.gpus)


def plan_source(name: str):
    """What a scenario's plan is made from, for its `model`: the tiny family's config, the checkpoint
    directory, or the shipped checkpoint's hub id."""
    if name.startswith("tiny/"):
        from .models.tiny import tiny_config

        return tiny_config(name.split("/", 1)[1])[0]
    if Path(name).expanduser().is_dir():
        return name
    if name in shipped_checkpoints() or not name.startswith("tiny"):
        return resolve_checkpoint(name)
    raise QwenVLDiagError(
        f"Unknown model {name!r}: use a shipped checkpoint, 'tiny/<family>' or a directory."
    )


def plan_scenario(scenario: Scenario, source=None):
    """The scenario's device plan: `source` (default: `plan_source(scenario.model)`) on its GPUs, memory
    per GPU and strategy, with `cpu_memory` as the CPU budget unless it is "available"."""
    from .placement import plan_device_map

    max_memory = None
    if scenario.cpu_memory != AVAILABLE:
        max_memory = {**dict.fromkeys(range(scenario.gpus), scenario.memory), "cpu": scenario.cpu_memory}
    source = plan_source(scenario.model) if source is None else source
    return plan_device_map(source, scenario.gpus, scenario.memory, scenario.strategy, max_memory=max_memory)


def build(scenario: Scenario):
    """(model, processor, what to plan from) for the scenario's model, built fresh."""
    from .models.loading import load_model
    from .models.tiny import tiny_model
    from .models.twin import twin

    name, options = scenario.model, {"attn_implementation": scenario.attn_implementation}
    source = plan_source(name)
    if name.startswith("tiny/"):
        model, processor = tiny_model(name.split("/", 1)[1], seed=scenario.seed, **options)
    elif Path(name).expanduser().is_dir():
        model, processor = load_model(name, **options)
    else:
        model, processor = twin(source, seed=scenario.seed, **options)
    return model, processor, source


def materials(scenario: Scenario) -> tuple:
    """(model, source, plan, inputs) of a scenario, built fresh: the model before placement, what the plan
    was planned from, the plan (None for the fsdp2 engine), and the inputs on the CPU."""
    model, processor, source = build(scenario)
    if scenario.engine == "fsdp2":  # no planner: fully_shard puts every unit on every rank's GPU
        return model, source, None, scenario_inputs(scenario, processor)
    return model, source, plan_scenario(scenario, source), scenario_inputs(scenario, processor)


def scenario_inputs(scenario: Scenario, processor):
    """The scenario's inputs (kind, video timing form, fps) made by `processor`, on the CPU."""
    from .inputs import sample_inputs

    return sample_inputs(
        processor, scenario.inputs, second_per_grid_ts=scenario.second_per_grid_ts, fps=scenario.fps
    )


def devices_for(scenario: Scenario):
    """A context for the scenario's GPUs: real ones when the machine has enough, else simulated ones."""
    from .simulate import simulated_gpus

    if _use_real_devices(scenario):
        return contextlib.nullcontext()
    return simulated_gpus(scenario.gpus, scenario.memory)
