"""qwenvl-diag: reproduce, see and fix Qwen-VL multi-device failures on any machine.

>>> import qwenvl_diag as qd
>>> model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
>>> inputs = qd.sample_inputs(processor, "video")

The public names are loaded on first use (PEP 562): `import qwenvl_diag` imports no torch, so the
CLI, the catalogue (`qwenvl_diag.bugs`) and the errors start fast, and a name costs only what its
module needs (`qd.widgets` imports no ipywidgets until a panel is made).
"""

from __future__ import annotations

import importlib
import sys
import types

_EXPORTS = {
    "bugs": ("KNOWN_BUG_COLUMNS", "known_bugs", "match_known_bugs"),
    "choices": ("ALL_INPUT_KINDS", "ENGINES", "INPUT_KINDS"),
    "diagnose": ("Diagnosis", "diagnose"),
    "explain": ("EXPLAIN_KEYS", "Explanation", "explain"),
    "errors": (
        "EngineError",
        "FixError",
        "FixNotApplicableWarning",
        "InvalidArgumentError",
        "ModelLoadError",
        "NoRopePositionsError",
        "NotQwenVLError",
        "PlacementError",
        "QwenVLDiagError",
        "SimulationError",
        "SweepError",
        "UnknownCheckpointError",
        "UnknownFamilyError",
        "UnknownFixError",
        "UnknownInputKindError",
        "UnsupportedReleaseError",
        "VersionLabError",
    ),
    "fsdp": ("diagnose_ranks", "fsdp_units"),
    "fixes": ("FIX_COLUMNS", "Fix", "Setup", "applying", "fixes", "get_fix"),
    "input_check": ("CHECK_COLUMNS", "check_inputs"),
    "inputs": ("sample_inputs",),
    "linear_cache": ("LINEAR_CACHE_COLUMNS", "linear_cache_frame"),
    "models.families": ("FAMILIES",),
    "models.loading": ("load_model",),
    "models.tiny": ("tiny_model",),
    "models.twin": ("twin", "twins"),
    "placement": (
        "FLAG_COLUMNS",
        "PLACEMENT_COLUMNS",
        "STRATEGIES",
        "SUMMARY_COLUMNS",
        "DevicePlan",
        "RiskFlag",
        "device_map_frame",
        "device_summary_frame",
        "dispatch",
        "flags_frame",
        "plan_device_map",
        "split_device_map",
    ),
    "plots": ("plot_memory", "plot_placement", "plot_sweep"),
    "rope": (
        "ROPE_INPUT_COLUMNS",
        "ROPE_POSITION_COLUMNS",
        "capture_rope",
        "plot_rope_positions",
        "rope_inputs_frame",
        "rope_positions_frame",
    ),
    "running": ("run",),
    "scenario": ("Scenario",),
    "simulate": ("SimulatedGPUs", "simulated_gpus"),
    "tables": ("VERDICT_COLOURS", "style_frame", "style_verify"),
    "sweep": ("SWEEP_COLUMNS", "SWEEP_SUMMARY_COLUMNS", "sweep", "sweep_summary"),
    "trace": ("Trace", "trace_devices"),
    "upstream": ("reproduction_script", "upstream_report"),
    "verify": ("VERDICTS", "VERIFY_COLUMNS", "verify"),
    "versions": ("VERSION_COLUMNS", "bisect_versions", "run_in_versions"),
}
"""Each public name by the module that defines it (relative to the package); `widgets` is a module."""

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBMODULES = ("widgets",)

__all__ = [*_MODULE_OF, *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package, whose public functions `verify`, `diagnose` and `fixes` share their names with
    the submodules that define them: importing such a submodule binds the module on the package,
    which would hide the function, so that binding is dropped and the name keeps meaning the function."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _MODULE_OF.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
