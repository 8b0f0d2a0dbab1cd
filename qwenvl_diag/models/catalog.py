"""Configs of real checkpoints that ship with the kit (see configs/SOURCES.md for provenance), and the
library defaults a tiny model is shrunk from where no published config of its family could be collected."""

from __future__ import annotations

import difflib
import hashlib
import json
from functools import cache
from importlib import resources

from ..errors import UnknownCheckpointError

_CONFIG_DIR = resources.files(__package__) / "configs"

# {checkpoint: (model_type, model class)}: families with no published config.json the kit could collect,
# whose tiny model is shrunk from the configuration class's defaults in the installed transformers (the
# class documents them as this checkpoint: `@auto_docstring(checkpoint=...)`). Never a twin: a twin is a
# published checkpoint's tree, and Qwen4-Exp's defaults do not even build (its QSA indexer sizes are unset).
LIBRARY_DEFAULTS: dict[str, tuple[str, str]] = {
    "Qwen/Qwen4-Exp": ("qwen4_exp", "Qwen4ExpForConditionalGeneration"),
}


def _dir_name(checkpoint: str) -> str:
    return checkpoint.replace("/", "--")


@cache
def shipped_checkpoints() -> tuple[str, ...]:
    """Hub ids of every checkpoint whose config ships inside the package, sorted."""
    return tuple(
        sorted(p.name.replace("--", "/") for p in _CONFIG_DIR.iterdir() if (p / "config.json").is_file())
    )


def _known(checkpoint: str) -> str:
    """`checkpoint` itself when it is a tiny model's library-defaults source, else the shipped id it names."""
    return checkpoint if checkpoint in LIBRARY_DEFAULTS else resolve_checkpoint(checkpoint)


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
    """A shipped JSON file of `checkpoint` (config.json, preprocessor_config.json, ...), or None; for a
    library-defaults source, config.json is those defaults."""
    checkpoint = _known(checkpoint)
    if checkpoint in LIBRARY_DEFAULTS:
        return library_default_config(checkpoint) if filename == "config.json" else None
    path = _CONFIG_DIR / _dir_name(checkpoint) / filename
    return json.loads(path.read_text()) if path.is_file() else None


def checkpoint_config(checkpoint: str) -> dict:
    """The config.json of a checkpoint the kit knows, as a dict (a fresh copy each call)."""
    return checkpoint_file(checkpoint, "config.json")


def checkpoint_model_type(checkpoint: str) -> str:
    """The `model_type` of a checkpoint the kit knows, without building its config."""
    checkpoint = _known(checkpoint)
    defaults = LIBRARY_DEFAULTS.get(checkpoint)
    return defaults[0] if defaults else checkpoint_config(checkpoint)["model_type"]


def config_sha256(checkpoint: str) -> str:
    """The sha256 of a shipped config.json as it ships."""
    path = _CONFIG_DIR / _dir_name(resolve_checkpoint(checkpoint)) / "config.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(checkpoint: str) -> dict[str, str]:
    """{"provenance": "published config" or "key numbers only", "verified": how it was checked} of a
    shipped config (SOURCES.md's table, in short)."""
    return json.loads((_CONFIG_DIR / "provenance.json").read_text())[resolve_checkpoint(checkpoint)]


def library_default_config(checkpoint: str) -> dict:
    """The config dict of the installed transformers' configuration class at its defaults, with the model
    class (`architectures`), for a source in LIBRARY_DEFAULTS."""
    from transformers import CONFIG_MAPPING  # the auto mappings of every model type (~0.5 s): when used

    from .families import family_of_model_type, get_family

    model_type, architecture = LIBRARY_DEFAULTS[checkpoint]
    get_family(family_of_model_type(model_type).name)  # a release without the family: the kit's error
    config = CONFIG_MAPPING[model_type]().to_dict()
    for part in (config, *(v for v in config.values() if isinstance(v, dict) and "model_type" in v)):
        for key in (
            "architectures",
            "_name_or_path",
            "id2label",
            "label2id",
            "dtype",
            "transformers_version",
        ):
            part.pop(key, None)
    return {**config, "architectures": [architecture]}
