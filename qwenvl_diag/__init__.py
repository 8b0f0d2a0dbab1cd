"""qwenvl-diag: reproduce, see and fix Qwen-VL multi-device failures on any machine.

>>> import qwenvl_diag as qd
>>> model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
>>> inputs = qd.sample_inputs(processor, "video")
"""

from .errors import (
    ModelLoadError,
    NotQwenVLError,
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
from .simulate import SimulatedGPUs, simulated_gpus

__all__ = [
    "FAMILIES",
    "INPUT_KINDS",
    "ModelLoadError",
    "NotQwenVLError",
    "QwenVLDiagError",
    "SimulatedGPUs",
    "SimulationError",
    "UnknownCheckpointError",
    "UnknownFamilyError",
    "UnknownInputKindError",
    "UnsupportedReleaseError",
    "load_model",
    "sample_inputs",
    "simulated_gpus",
    "tiny_model",
    "twin",
    "twins",
]
