"""The kit's own exception types: each message says what went wrong and what to do."""

from __future__ import annotations


class QwenVLDiagError(Exception):
    """Base class of every error qwenvl-diag raises on purpose."""


class UnknownFamilyError(QwenVLDiagError, ValueError):
    """A model family name the kit does not know."""


class UnknownCheckpointError(QwenVLDiagError, ValueError):
    """A checkpoint name whose config does not ship with the kit."""


class UnsupportedReleaseError(QwenVLDiagError, RuntimeError):
    """The installed transformers is too old (or too new) for what was asked."""


class UnknownInputKindError(QwenVLDiagError, ValueError):
    """An input kind other than the ones `sample_inputs` builds."""


class NotQwenVLError(QwenVLDiagError, TypeError):
    """A model, config or processor that is not Qwen-VL."""


class ModelLoadError(QwenVLDiagError, OSError):
    """A real checkpoint could not be loaded (missing path, no network, ...)."""


class PlacementError(QwenVLDiagError, ValueError):
    """A malformed device map, memory size, strategy or plan."""


class SimulationError(QwenVLDiagError, RuntimeError):
    """Simulated GPUs cannot start or stop as asked (already running, real CUDA present, bad size)."""


class InvalidArgumentError(QwenVLDiagError, TypeError):
    """An argument of the wrong kind: not a model, not a dict of inputs, not a version string, ..."""


class NoRopePositionsError(QwenVLDiagError, LookupError):
    """No recorded rope-index call returned position ids (none was made, or the call raised)."""


class UnknownFixError(QwenVLDiagError, ValueError):
    """A fix name that is not in the kit's catalogue (`qd.fixes()`)."""


class FixError(QwenVLDiagError, RuntimeError):
    """A fix cannot be applied or undone as asked (wrong stage, undone out of order, no room on a GPU)."""


class FixNotApplicableWarning(UserWarning):
    """A fix asked for where it has nothing to do (a hotfix on a release without the bug): a no-op."""


class VersionLabError(QwenVLDiagError, RuntimeError):
    """A side environment of another transformers release cannot be made or run (offline, no such release)."""


class EngineError(QwenVLDiagError, RuntimeError):
    """A training engine (FSDP2) cannot run as asked (a process group already running, no distributed)."""


class SweepError(QwenVLDiagError, RuntimeError):
    """A sweep's worker processes could not finish: one died (killed, out of memory) or could not start (a
    script that sweeps without an `if __name__ == "__main__":` guard)."""
