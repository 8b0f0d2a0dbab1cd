"""The choices a `Scenario` is made of, torch-free so that the CLI's options (and `--help`) need no torch."""

from __future__ import annotations

INPUT_KINDS = ("image", "batch", "video", "text")
ACTIONS = ("forward", "generate")
DEVICE_MODES = ("auto", "simulated", "real")
