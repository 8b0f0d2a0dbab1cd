"""Configs of real checkpoints that ship with the kit (see configs/SOURCES.md for provenance), and the
library defaults a tiny model is shrunk from where no published config of its family could be collected."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from ..errors import UnknownCheckpointError

_CONFIG_DIR = resources.files(__package__) / "configs"


@dataclass(frozen=True)
class LibraryDefaults:
    """A checkpoint with no published config.json the kit could collect, built from its configuration
    class's defaults in the installed transformers (the class documents them as this checkpoint:
    `@auto_docstring(checkpoint=...)`). `left_out` holds the fields the model reads but the defaults do
    not set, with the value every published config of the family has; `twin` says whether `qd.twin`
    builds it, or it is only a tiny model's source."""

    model_type: str
    architecture: str
    left_out: dict = field(default_factory=dict)
    twin: bool = False


# Qwen4-Exp is only a tiny model's source: its defaults do not even build at full size (its QSA indexer
# sizes are unset).
LIBRARY_DEFAULTS: dict[str, LibraryDefaults] = {
    "Qwen/Qwen2.5-Omni-7B": LibraryDefaults(
        "qwen2_5_omni",
        "Qwen2_5OmniForConditionalGeneration",
        # read by get_rope_index (5.25.0 modeling_qwen2_5_omni.py L288); the tokenizer's ids of the tokens
        {"thinker_config": {"vision_start_token_id": 151652, "vision_end_token_id": 151653}},
        twin=True,
    ),
    "Qwen/Qwen4-Exp": LibraryDefaults("qwen4_exp", "Qwen4ExpForConditionalGeneration"),
}


def _dir_name(checkpoint: str) -> str:
    return checkpoint.replace("/", "--")


@cache
def shipped_checkpoints() -> tuple[str, ...]:
    """Hub ids of every checkpoint the kit builds a twin of, sorted: those whose config ships inside the
    package, and those built from their configuration class's defaults (`LibraryDefaults.twin`)."""
    return tuple(
        sorted(
            [p.name.replace("--", "/") for p in _CONFIG_DIR.iterdir() if (p / "config.json").is_file()]
            + [checkpoint for checkpoint, defaults in LIBRARY_DEFAULTS.items() if defaults.twin]
        )
    )


def _known(checkpoint: str) -> str:
    """`checkpoint` itself when it is a library-defaults source or ships files (a processor's only, as
    Qwen2.5-Omni-3B), else the shipped id it names."""
    if checkpoint in LIBRARY_DEFAULTS or (_CONFIG_DIR / _dir_name(checkpoint)).is_dir():
        return checkpoint
    return resolve_checkpoint(checkpoint)


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


def model_config(config: dict) -> dict:
    """The config of the model the kit builds from a checkpoint's config.json: the config itself, or for an
    Omni checkpoint its `thinker_config`, as the thinker class (what `<Thinker class>.from_pretrained` of the
    checkpoint builds). A fresh copy."""
    from .families import family_of_model_type

    family = family_of_model_type(config["model_type"])
    if family is None or family.thinker is None or "thinker_config" not in config:
        return copy.deepcopy(config)
    return {**copy.deepcopy(config["thinker_config"]), "architectures": [family.thinker]}


def checkpoint_config(checkpoint: str) -> dict:
    """The config of the model the kit builds for a checkpoint it knows (`model_config` of its
    config.json), as a dict (a fresh copy each call)."""
    return model_config(checkpoint_file(checkpoint, "config.json"))


def checkpoint_model_type(checkpoint: str) -> str:
    """The `model_type` of a checkpoint's config.json ("qwen3_omni_moe" for an Omni checkpoint, whose
    thinker's is "qwen3_omni_moe_thinker"), without building its config."""
    checkpoint = _known(checkpoint)
    defaults = LIBRARY_DEFAULTS.get(checkpoint)
    return defaults.model_type if defaults else checkpoint_file(checkpoint, "config.json")["model_type"]


def config_sha256(checkpoint: str) -> str | None:
    """The sha256 of a shipped config.json as it ships; None for a twin built from library defaults."""
    checkpoint = resolve_checkpoint(checkpoint)
    if checkpoint in LIBRARY_DEFAULTS:
        return None
    path = _CONFIG_DIR / _dir_name(checkpoint) / "config.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(checkpoint: str) -> dict[str, str]:
    """{"provenance": "published config", "key numbers only" or "library defaults for <checkpoint>",
    "verified": how it was checked} of a twin's config (SOURCES.md's table, in short)."""
    checkpoint = resolve_checkpoint(checkpoint)
    if checkpoint in LIBRARY_DEFAULTS:
        from .._compat import TRANSFORMERS_VERSION

        model_type = LIBRARY_DEFAULTS[checkpoint].model_type
        return {
            "provenance": f"library defaults for {checkpoint}",
            "verified": f"the {model_type} configuration class of transformers {TRANSFORMERS_VERSION}",
        }
    return json.loads((_CONFIG_DIR / "provenance.json").read_text())[checkpoint]


def _drop_runtime_fields(config: dict) -> None:
    """Take out of a to_dict() and its sub-configs what a published config.json does not carry."""
    for key in ("architectures", "_name_or_path", "id2label", "label2id", "dtype", "transformers_version"):
        config.pop(key, None)
    for value in config.values():
        if isinstance(value, dict) and "model_type" in value:
            _drop_runtime_fields(value)


def library_default_config(checkpoint: str) -> dict:
    """The config dict of the installed transformers' configuration class at its defaults, with the model
    class (`architectures`), for a source in LIBRARY_DEFAULTS."""
    from transformers import CONFIG_MAPPING  # the auto mappings of every model type (~0.5 s): when used
    from transformers.utils import logging

    from .families import family_of_model_type, get_family

    defaults = LIBRARY_DEFAULTS[checkpoint]
    get_family(
        family_of_model_type(defaults.model_type).name
    )  # a release without the family: the kit's error
    # Qwen2.5-Omni's defaults give its talker vision/audio token ids outside its own vocabulary, which
    # transformers 5.x logs at every construction: seven warnings about a config no checkpoint has
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        config = CONFIG_MAPPING[defaults.model_type]().to_dict()
    finally:
        logging.set_verbosity(verbosity)
    for part, fields in defaults.left_out.items():
        config[part].update(fields)
    _drop_runtime_fields(config)
    return {**config, "architectures": [defaults.architecture]}
