"""qwenvl-diag: reproduce, see and fix Qwen-VL multi-device failures on any machine."""

from .errors import (
    ModelLoadError,
    QwenVLDiagError,
    UnknownCheckpointError,
    UnknownFamilyError,
    UnknownInputKindError,
    UnsupportedProcessorError,
    UnsupportedReleaseError,
)

__all__ = [
    "ModelLoadError",
    "QwenVLDiagError",
    "UnknownCheckpointError",
    "UnknownFamilyError",
    "UnknownInputKindError",
    "UnsupportedProcessorError",
    "UnsupportedReleaseError",
]
