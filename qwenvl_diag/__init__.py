"""qwenvl-diag: reproduce, see and fix Qwen-VL multi-device failures on any machine.

>>> import qwenvl_diag as qd
>>> model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
>>> inputs = qd.sample_inputs(processor, "video")
"""

from .errors import (
    ModelLoadError,
    NotQwenVLError,
    PlacementError,
    QwenVLDiagError,
    SimulationError,
    UnknownCheckpointError,
    UnknownFamilyError,
    UnknownInputKindError,
    UnsupportedReleaseError,
)
from .inputs import INPUT_KINDS, sample_inputs
from .models.families import FAMILIES
from .models.loading import load_model
from .models.tiny import tiny_model
from .models.twin import twin, twins
from .placement import (
    FLAG_COLUMNS,
    PLACEMENT_COLUMNS,
    STRATEGIES,
    SUMMARY_COLUMNS,
    DevicePlan,
    RiskFlag,
    device_map_frame,
    device_summary_frame,
    dispatch,
    flags_frame,
    plan_device_map,
)
from .plots import plot_memory, plot_placement
from .simulate import SimulatedGPUs, simulated_gpus

__all__ = [
    "DevicePlan",
    "FAMILIES",
    "FLAG_COLUMNS",
    "INPUT_KINDS",
    "ModelLoadError",
    "NotQwenVLError",
    "PLACEMENT_COLUMNS",
    "PlacementError",
    "QwenVLDiagError",
    "RiskFlag",
    "STRATEGIES",
    "SUMMARY_COLUMNS",
    "SimulatedGPUs",
    "SimulationError",
    "UnknownCheckpointError",
    "UnknownFamilyError",
    "UnknownInputKindError",
    "UnsupportedReleaseError",
    "device_map_frame",
    "device_summary_frame",
    "dispatch",
    "flags_frame",
    "load_model",
    "plan_device_map",
    "plot_memory",
    "plot_placement",
    "sample_inputs",
    "simulated_gpus",
    "tiny_model",
    "twin",
    "twins",
]
