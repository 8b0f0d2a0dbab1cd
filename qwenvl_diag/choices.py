"""The choices a `Scenario` is made of, torch-free so that the CLI's options (and `--help`) need no torch."""

from __future__ import annotations

INPUT_KINDS = ("image", "batch", "video", "text")
# inputs only the Omni thinkers take: a spoken question, a video with its sound track (a sweep runs them
# where asked, not by default)
AUDIO_KINDS = ("audio", "video_audio")
ALL_INPUT_KINDS = INPUT_KINDS + AUDIO_KINDS
ACTIONS = ("forward", "generate")
# what a trainer does once: forward with labels, the loss, backward (not in sweeps' default actions)
TRAIN_ACTIONS = ("train_step",)
ALL_ACTIONS = ACTIONS + TRAIN_ACTIONS
DEVICE_MODES = ("auto", "simulated", "real")
# where a scenario's inputs are when the model is called: "cpu", where the processor made them (accelerate's
# hooks move what they move; on one GPU nothing does), or "model", the model cards' inputs.to(model.device)
INPUT_PLACES = ("cpu", "model")
# device_map: accelerate's dispatch of a planned map (one process); fsdp2: torch's fully_shard per rank
ENGINES = ("device_map", "fsdp2")
