"""`plan_device_map`: the device map a real checkpoint gets on given GPUs, from its config alone."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import accelerate
import psutil
import torch
import transformers
from transformers import PretrainedConfig

from .._compat import empty_model_for_planning, planner_no_split_modules, transformers_device_map
from ..errors import PlacementError
from ..models.build import config_from_dict, model_class
from ..models.catalog import checkpoint_config, resolve_checkpoint
from ..models.families import FAMILIES, family_of_model_type, get_family
from .devices import device_label, device_order, normalise_device, parse_memory
from .modules import devices_of, find_module, lm_head_tied, named_tensors, placed_sizes, unplaced
from .risks import RiskFlag, find_risks

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class DevicePlan:
    """A device map and what it was planned from. Plain data: `to_dict()` / `to_json()` are JSON-ready.

    `device_map` maps module (or parameter) paths to a GPU index, "cpu" or "disk", as
    `model.hf_device_map` does, and can be passed to `from_pretrained(device_map=...)` or `qd.dispatch`.
    `max_memory` (bytes per device) is what the planner was given: for a named strategy the map equals
    `from_pretrained(device_map=strategy, max_memory=max_memory, dtype=dtype)` in this environment.
    `module_params` / `module_bytes` / `module_dtypes` are each key's real sizes (a tied weight
    counts once, with embed_tokens). `flags` are the layout's risks (see `qd.flags_frame`).
    """

    model: str
    strategy: str
    gpus: int
    memory: int
    dtype: str
    max_memory: dict
    device_map: dict
    module_params: dict
    module_bytes: dict
    module_dtypes: dict
    no_split_module_classes: list
    tie_word_embeddings: bool
    unplaced: list
    flags: list[RiskFlag]
    versions: dict
    module_names: list = field(repr=False)
    tensor_names: list = field(repr=False)

    def to_dict(self) -> dict:
        """Everything but the model's module and tensor names, with JSON-safe keys."""
        data = asdict(self)
        del data["module_names"], data["tensor_names"]
        data["max_memory"] = {str(k): v for k, v in self.max_memory.items()}
        return data

    def to_json(self) -> str:
        """`to_dict()` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def devices_of(self, module: str) -> list[str]:
        """The devices ("cuda:0", "cpu", ...) the tensors of `module` land on: a module path, or the last
        part of one ("visual", "embed_tokens", "lm_head"); several when the map splits it.

        >>> plan.devices_of("visual"), plan.devices_of("embed_tokens")
        (['cuda:0'], ['cuda:1'])
        """
        path = module if module in self.module_names else find_module(self.module_names, module)
        if path is None:
            raise PlacementError(
                f"{self.model} has no module {module!r}; try 'visual', 'embed_tokens', 'lm_head' or a path "
                "from qd.device_map_frame(plan)."
            )
        found = devices_of(path, self.device_map, self.tensor_names)
        return sorted((device_label(d) for d in found), key=device_order)


def _config_dict(source: object) -> tuple[str, dict]:
    """(label, config dict) from a shipped checkpoint name, a config dict or object, or a local directory."""
    if isinstance(source, PretrainedConfig):
        return getattr(source, "_name_or_path", "") or source.model_type, source.to_dict()
    if isinstance(source, dict):
        return source.get("_name_or_path") or source.get("model_type", "config"), dict(source)
    if isinstance(source, (str, Path)) and (Path(source) / "config.json").is_file():
        return str(source), json.loads((Path(source) / "config.json").read_text())
    if isinstance(source, str):
        checkpoint = resolve_checkpoint(source)
        return checkpoint, checkpoint_config(checkpoint)
    raise PlacementError(
        "plan_device_map takes a shipped checkpoint name (see qd.twins()), a config (dict or "
        f"PretrainedConfig) or a checkpoint directory holding config.json; got {type(source).__name__}."
    )


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise PlacementError(f"Unknown dtype {dtype!r}: use one of {', '.join(DTYPES)} (or a torch dtype).")
    return value


def _gpu_count(gpus: object) -> int:
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise PlacementError(f"gpus must be a positive int (the number of GPUs to plan for); got {gpus!r}.")
    return gpus


def _max_memory(max_memory: dict | None, gpus: int, per_gpu: int) -> dict:
    """{device: bytes}: `max_memory` parsed, or `per_gpu` on each GPU plus the CPU RAM available now
    (what accelerate reads for "cpu" when from_pretrained is given no max_memory)."""
    if max_memory is None:
        return {i: per_gpu for i in range(gpus)} | {"cpu": int(psutil.virtual_memory().available)}
    if not isinstance(max_memory, dict) or not max_memory:
        raise PlacementError(
            f"max_memory must be a dict like {{0: '20GiB', 'cpu': '64GiB'}}; got {max_memory!r}."
        )
    return {normalise_device(k, gpus): parse_memory(v, f"max_memory[{k!r}]") for k, v in max_memory.items()}


def _strategy(strategy: str | dict) -> str | dict:
    if isinstance(strategy, dict) or strategy in STRATEGIES:
        return strategy
    raise PlacementError(
        f"Unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}, or an explicit "
        "{module: device} dict to validate."
    )


def _no_split(classes: object) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if not isinstance(classes, (list, tuple, set)) or not all(isinstance(c, str) for c in classes):
        raise PlacementError(
            "no_split_module_classes must be a list of class names like ['Qwen2_5_VLDecoderLayer']; "
            f"got {classes!r}."
        )
    return tuple(sorted(set(classes)))


@lru_cache(maxsize=16)
def _meta_model(config_json: str, dtype_name: str, no_split: tuple[str, ...] | None) -> torch.nn.Module:
    """The real-size model on the meta device, built as the installed from_pretrained builds it.

    Cached per (config, dtype, no-split classes), so a sweep of layouts builds each model once. The
    cached model is shared: nothing in this package may modify it after this function returns (the
    planner, transformers' `_get_device_map` and accelerate only read it). The no-split override is
    set here, on the fresh model, before it enters the cache; it is part of the cache key.
    """
    config = json.loads(config_json)
    family = family_of_model_type(config.get("model_type", ""))
    if family is None:
        raise PlacementError(
            f"model_type {config.get('model_type')!r} is not Qwen-VL: plan_device_map plans "
            f"{', '.join(t for f in FAMILIES.values() for t in f.model_types)} models. For another model, "
            "call accelerate's infer_auto_device_map on it directly."
        )
    get_family(family.name)
    if not config.get("architectures"):
        raise PlacementError(
            "The config has no 'architectures' entry: add the model class, as config.json has it."
        )
    model = empty_model_for_planning(
        model_class(config), config_from_dict(config), getattr(torch, dtype_name)
    )
    if no_split is not None:
        classes = {type(m).__name__ for m in model.modules()}
        unknown = sorted(set(no_split) - classes)
        if unknown:
            raise PlacementError(
                f"no_split_module_classes names classes this model does not have: {unknown}. It keeps "
                f"{planner_no_split_modules(model)} whole by default."
            )
        for module in model.modules():
            if isinstance(module, transformers.PreTrainedModel):
                module._no_split_modules = (
                    set(no_split) if isinstance(module._no_split_modules, set) else [*no_split]
                )
    return model


class _QuietMissingDevices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is not available, available devices are" not in record.getMessage()


@contextmanager
def _planning_for_absent_gpus():
    """Silence accelerate's "Device N is not available" warnings: planning for GPUs this machine
    lacks is the point."""
    logger, quiet = logging.getLogger("accelerate.utils.modeling"), _QuietMissingDevices()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _explicit_map(device_map: dict, names: set[str], gpus: int) -> dict:
    """The validated explicit map, in accelerate's device forms (a new dict; the caller's is untouched)."""
    if not device_map:
        raise PlacementError("An explicit device map must name at least one module, e.g. {'': 0}.")
    unknown = [k for k in device_map if not isinstance(k, str) or (k and k not in names)]
    if unknown:
        examples = sorted(n for n in names if n.count(".") == 1)[:4]
        raise PlacementError(
            f"The device map names modules this model does not have: {unknown[:5]}. Module names look "
            f"like {examples}; qd.device_map_frame(qd.plan_device_map(...)) lists a planned map's modules."
        )
    return {k: normalise_device(d, gpus) for k, d in device_map.items()}


def plan_device_map(
    checkpoint_or_config: str | Path | dict | PretrainedConfig,
    gpus: int,
    memory: int | str,
    strategy: str | dict = "auto",
    dtype: str | torch.dtype = "bfloat16",
    max_memory: dict | None = None,
    no_split_module_classes: list[str] | None = None,
) -> DevicePlan:
    """The device map `from_pretrained(device_map=strategy)` gives a checkpoint on `gpus` GPUs of `memory`.

    The real-size model is built on the meta device from its config, as the installed from_pretrained
    builds it (nothing is downloaded or allocated), and mapped by the installed transformers' own
    planner. `strategy` is "auto", "balanced", "balanced_low_0", "sequential", or an explicit
    {module: device} map to validate (modules it leaves out are flagged, not filled in). `max_memory`
    ({0: "20GiB", "cpu": "64GiB"}) replaces `memory` on each GPU and the default CPU entry (the RAM
    available now). `no_split_module_classes` replaces the model's own list of classes kept whole.

    >>> plan = plan_device_map("Qwen/Qwen2.5-VL-7B-Instruct", gpus=4, memory="24GiB", strategy="balanced")
    >>> plan.device_map, plan.flags
    """
    gpus = _gpu_count(gpus)
    per_gpu = parse_memory(memory, "memory per GPU")
    max_memory = _max_memory(max_memory, gpus, per_gpu)
    strategy = _strategy(strategy)
    torch_dtype = _dtype(dtype)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    no_split = _no_split(no_split_module_classes)
    label, config = _config_dict(checkpoint_or_config)
    config_json = json.dumps(config, sort_keys=True, default=str)
    model = _meta_model(config_json, dtype_name, no_split)
    module_names = [n for n, _ in model.named_modules()]
    tensor_names = [n for n, _ in named_tensors(model)]
    if isinstance(strategy, dict):
        device_map = _explicit_map(strategy, {*module_names, *tensor_names}, gpus)
        left_out = unplaced(tensor_names, device_map)
    else:
        with _planning_for_absent_gpus():
            device_map = dict(transformers_device_map(model, strategy, max_memory, torch_dtype))
        left_out = []
    sizes = placed_sizes(model, device_map)
    tied = lm_head_tied(model)
    return DevicePlan(
        model=label,
        strategy=strategy if isinstance(strategy, str) else "explicit",
        gpus=gpus,
        memory=per_gpu,
        dtype=dtype_name,
        max_memory=max_memory,
        device_map=device_map,
        module_params={k: s[0] for k, s in sizes.items()},
        module_bytes={k: s[1] for k, s in sizes.items()},
        module_dtypes={k: s[2] for k, s in sizes.items()},
        no_split_module_classes=planner_no_split_modules(model),
        tie_word_embeddings=tied,
        unplaced=left_out,
        flags=find_risks(device_map, module_names, tensor_names, tied, left_out, for_gpus=True),
        versions={"transformers": transformers.__version__, "accelerate": accelerate.__version__},
        module_names=module_names,
        tensor_names=tensor_names,
    )
