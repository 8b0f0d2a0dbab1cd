"""qwenvl-diag: reproduce, see and fix Qwen-VL multi-device failures on any machine.

>>> import qwenvl_diag as qd
>>> model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
>>> inputs = qd.sample_inputs(processor, "video")
"""

from . import widgets
from .bugs import KNOWN_BUG_COLUMNS, known_bugs, match_known_bugs
from .diagnose import Diagnosis, diagnose
from .errors import (
    FixError,
    FixNotApplicableWarning,
    InvalidArgumentError,
    ModelLoadError,
    NoRopePositionsError,
    NotQwenVLError,
    PlacementError,
    QwenVLDiagError,
    SimulationError,
    UnknownCheckpointError,
    UnknownFamilyError,
    UnknownFixError,
    UnknownInputKindError,
    UnsupportedReleaseError,
    VersionLabError,
)
from .fixes import FIX_COLUMNS, Fix, Setup, applying, fixes, get_fix
from .input_check import CHECK_COLUMNS, check_inputs
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
    split_device_map,
)
from .plots import plot_memory, plot_placement
from .rope import (
    ROPE_INPUT_COLUMNS,
    ROPE_POSITION_COLUMNS,
    capture_rope,
    plot_rope_positions,
    rope_inputs_frame,
    rope_positions_frame,
)
from .scenario import Scenario, run
from .simulate import SimulatedGPUs, simulated_gpus
from .tables import VERDICT_COLOURS, style_frame, style_verify
from .trace import Trace, trace_devices
from .verify import VERDICTS, VERIFY_COLUMNS, verify
from .versions import VERSION_COLUMNS, bisect_versions, run_in_versions

__all__ = [
    "FIX_COLUMNS",
    "Fix",
    "FixError",
    "FixNotApplicableWarning",
    "Setup",
    "UnknownFixError",
    "VERDICTS",
    "VERDICT_COLOURS",
    "VERIFY_COLUMNS",
    "applying",
    "fixes",
    "get_fix",
    "verify",
    "style_verify",
    "style_frame",
    "VERSION_COLUMNS",
    "VersionLabError",
    "bisect_versions",
    "run_in_versions",
    "Diagnosis",
    "Scenario",
    "Trace",
    "diagnose",
    "run",
    "trace_devices",
    "CHECK_COLUMNS",
    "DevicePlan",
    "FAMILIES",
    "FLAG_COLUMNS",
    "INPUT_KINDS",
    "InvalidArgumentError",
    "KNOWN_BUG_COLUMNS",
    "ModelLoadError",
    "NoRopePositionsError",
    "NotQwenVLError",
    "PLACEMENT_COLUMNS",
    "PlacementError",
    "QwenVLDiagError",
    "ROPE_INPUT_COLUMNS",
    "ROPE_POSITION_COLUMNS",
    "RiskFlag",
    "STRATEGIES",
    "SUMMARY_COLUMNS",
    "SimulatedGPUs",
    "SimulationError",
    "UnknownCheckpointError",
    "UnknownFamilyError",
    "UnknownInputKindError",
    "UnsupportedReleaseError",
    "capture_rope",
    "check_inputs",
    "device_map_frame",
    "device_summary_frame",
    "dispatch",
    "flags_frame",
    "known_bugs",
    "load_model",
    "match_known_bugs",
    "plan_device_map",
    "plot_memory",
    "plot_placement",
    "plot_rope_positions",
    "rope_inputs_frame",
    "rope_positions_frame",
    "sample_inputs",
    "simulated_gpus",
    "split_device_map",
    "tiny_model",
    "twin",
    "twins",
    "widgets",
]
