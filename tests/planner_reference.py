"""What the installed `from_pretrained(checkpoint, dtype=..., device_map=strategy, max_memory=...)` plans,
computed without the kit: the model is built the way from_pretrained builds it before planning, and the
planner functions it calls are called with the arguments it passes. Read from transformers'
`modeling_utils.from_pretrained`: 4.45.2-4.49 plan inline, 4.50.3-4.57 in `_get_device_map` (same
accelerate calls: balanced budgets, then `infer_auto_device_map` with the no-split classes and no special
dtypes, as Qwen-VL keeps no module in float32), 5.x in `integrations/accelerate.py` (5.24.0).

Imported by tests/test_placement.py; run by a side environment's Python (tests/test_releases.py) as
`python tests/planner_reference.py '[[checkpoint, gpus, memory, strategy], ...]'`, it prints one JSON line:
for each layout, whether `qd.plan_device_map` equals the reference, and the two maps where not.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from functools import cache

import torch
import transformers
from packaging.version import Version
from transformers import CONFIG_MAPPING, AutoConfig

from qwenvl_diag._compat import TRANSFORMERS_5
from qwenvl_diag.models.catalog import checkpoint_config
from qwenvl_diag.models.tiny import tiny_config


def source_config(checkpoint: str) -> dict:
    """The config of a shipped checkpoint, or of a tiny model ("tiny/qwen4_exp": a family with no twin)."""
    return tiny_config(checkpoint[5:])[0] if checkpoint.startswith("tiny/") else checkpoint_config(checkpoint)


@cache
def reference_model(checkpoint: str, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """The model from_pretrained(checkpoint, dtype=dtype, device_map=...) has when it plans the map."""
    raw = copy.deepcopy(source_config(checkpoint))
    model_cls = getattr(transformers, raw["architectures"][0])
    # an Omni thinker's config type joined the auto mapping only in 5.x: before, its class's config_class
    # is what `<Thinker>.from_pretrained` reads
    config = (
        AutoConfig.for_model(**raw) if raw["model_type"] in CONFIG_MAPPING else model_cls.config_class(**raw)
    )
    parts = [config, *(getattr(config, k) for k in getattr(config, "sub_configs", ()))]  # 4.47+ has them
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if TRANSFORMERS_5:
            # 5.24.0: `_get_dtype` sets config.dtype on the config and every sub-config; the model is built
            # under get_init_context: default dtype, `init.no_tie_weights()`, torch.device("meta"). 5.0.0's
            # get_init_context has no no_tie_weights (it came later): default dtype and the meta device.
            from transformers import initialization

            for part in parts:
                part.dtype = dtype
            untied = getattr(initialization, "no_tie_weights", contextlib.nullcontext)
            with untied(), torch.device("meta"):
                model = model_cls(config)
        else:
            # 4.51.3: `_get_torch_dtype` sets torch_dtype on the config and sub-configs and the default
            # dtype; the model is built under no_init_weights() + init_empty_weights(), then tied (4.50.3
            # too). 4.45.2-4.49.0 build it under the same two contexts and tie it only later, just before
            # infer_auto_device_map (post_init ties nothing under no_init_weights).
            from accelerate import init_empty_weights
            from transformers.modeling_utils import no_init_weights

            for part in parts:
                part.torch_dtype = dtype
            with no_init_weights(), init_empty_weights():
                model = model_cls(config)
            if Version(transformers.__version__) >= Version("4.50"):
                model.tie_weights()
    finally:
        torch.set_default_dtype(previous)
    return model


def reference_map(
    model: torch.nn.Module,
    strategy: str,
    max_memory: dict,
    dtype=torch.bfloat16,
    no_split: list | None = None,
) -> dict:
    """What the installed from_pretrained's planner computes for `model`, spelled out (`no_split` stands
    in for the model's own no-split classes)."""
    low_zero = strategy == "balanced_low_0"
    if TRANSFORMERS_5:
        import inspect

        from transformers.integrations import accelerate as planner

        if no_split is not None:
            no_split = set(no_split)
        elif hasattr(model, "_get_no_split_modules"):  # 5.0.0-5.x: `_get_no_split_modules(device_map)`
            no_split = model._get_no_split_modules(strategy)
        else:  # 5.24.0: the set post_init gathered
            no_split = model._no_split_modules
        if strategy == "sequential":
            memory = planner.get_max_memory(dict(max_memory))
        else:
            memory = planner.get_balanced_memory(
                model,
                max_memory=dict(max_memory),
                no_split_module_classes=no_split,
                hf_quantizer=None,
                low_zero=low_zero,
            )
        extra = {}
        if "no_placement_params" in inspect.signature(planner.infer_auto_device_map).parameters:  # 5.24.0
            extra["no_placement_params"] = getattr(model, "_no_placement_params", None)
        return planner.infer_auto_device_map(
            model, max_memory=memory, no_split_module_classes=no_split, hf_quantizer=None, **extra
        )
    from accelerate.utils import get_balanced_memory, get_max_memory, infer_auto_device_map

    no_split = model._get_no_split_modules(strategy) if no_split is None else no_split
    kwargs = {"no_split_module_classes": no_split, "special_dtypes": {}}
    if strategy == "sequential":
        memory = get_max_memory(dict(max_memory))
    else:
        memory = get_balanced_memory(
            model, dtype=dtype, low_zero=low_zero, max_memory=dict(max_memory), **kwargs
        )
    model.tie_weights()  # where 4.45-4.49 tie (before "creating the device map")
    return infer_auto_device_map(model, dtype=dtype, max_memory=memory, **kwargs)


def compare(layouts: list[list]) -> list[dict]:
    """For each [checkpoint, gpus, memory, strategy]: the kit's plan against the reference."""
    import qwenvl_diag as qd

    results = []
    for checkpoint, gpus, memory, strategy in layouts:
        source = source_config(checkpoint) if checkpoint.startswith("tiny/") else checkpoint
        plan = qd.plan_device_map(source, gpus, memory, strategy)
        model = reference_model.__wrapped__(checkpoint)  # a new one, as each from_pretrained builds
        expected = reference_map(model, strategy, plan.max_memory)
        equal = list(plan.device_map.items()) == list(expected.items())  # order too: the main device
        result = {"layout": [checkpoint, gpus, memory, strategy], "equal": equal, "keys": len(expected)}
        if not equal:
            result.update(kit=plan.device_map, reference=dict(expected))
        results.append(result)
    return results


if __name__ == "__main__":
    print(json.dumps({"transformers": transformers.__version__, "results": compare(json.loads(sys.argv[1]))}))
