"""Placement: plan the device map a real checkpoint gets, apply it to a model, show it as frames.

- `plan.py`: `plan_device_map` and `DevicePlan` (real sizes on the meta device, the installed planner)
- `dispatch.py`: `dispatch` (accelerate's dispatch_model with checks)
- `split.py`: `split_device_map` (an explicit map cut at given decoder layers)
- `frames.py`: `device_map_frame`, `device_summary_frame`, `flags_frame`
- `risks.py`: risk flags of a layout; `modules.py`: module kinds, sizes, map coverage;
  `devices.py`: device and memory-size parsing
"""

from .dispatch import dispatch
from .frames import PLACEMENT_COLUMNS, SUMMARY_COLUMNS, device_map_frame, device_summary_frame, flags_frame
from .plan import DTYPES, STRATEGIES, DevicePlan, plan_device_map
from .risks import FLAG_CODES, FLAG_COLUMNS, RiskFlag
from .split import split_device_map

__all__ = [
    "DTYPES",
    "FLAG_CODES",
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
]
