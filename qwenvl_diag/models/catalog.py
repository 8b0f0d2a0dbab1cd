"""Configs of real checkpoints that ship with the kit (see configs/SOURCES.md for provenance)."""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources

from ..errors import UnknownCheckpointError

_CONFIG_DIR = resources.files(__package__) / "configs"


def _dir_name(checkpoint: str) -> str:
    return checkpoint.replace("/", "--")


@cache
def shipped_checkpoints() -> tuple[str, ...]:
    """Hub ids of every checkpoint whose config ships inside the package, sorted."""
    return tuple(
        sorted(p.name.replace("--", "/") for p in _CONFIG_DIR.iterdir() if (p / "config.json").is_file())
    )


def resolve_checkpoint(name: str) -> str:
    """The shipped hub id for `name` ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL-7B-Instruct", any case)."""
    if isinstance(name, str):
        wanted = name.strip().lower()
        for checkpoint in shipped_checkpoints():
            if wanted in (checkpoint.lower(), checkpoint.split("/", 1)[1].lower()):
                return checkpoint
    close = difflib.get_close_matches(str(name), shipped_checkpoints(), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownCheckpointError(
        f"No config for {name!r} ships with qwenvl-diag.{hint} Shipped: {', '.join(shipped_checkpoints())}. "
        "For another checkpoint, load it with qd.load_model(path) or add its config.json under "
        "qwenvl_diag/models/configs/<org>--<name>/."
    )


def checkpoint_file(checkpoint: str, filename: str) -> dict | None:
    """A shipped JSON file of `checkpoint` (config.json, preprocessor_config.json, ...), or None."""
    path = _CONFIG_DIR / _dir_name(resolve_checkpoint(checkpoint)) / filename
    return json.loads(path.read_text()) if path.is_file() else None


def checkpoint_config(checkpoint: str) -> dict:
    """The real config.json of a shipped checkpoint, as a dict (a fresh copy each call)."""
    return checkpoint_file(checkpoint, "config.json")
