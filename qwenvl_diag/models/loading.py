"""`load_model`: a real Qwen-VL checkpoint from a local directory or the hub, through the same API."""

from __future__ import annotations

from pathlib import Path

import transformers

from ..errors import ModelLoadError, NotQwenVLError
from .catalog import shipped_checkpoints
from .families import family_of_model_type, get_family


def _load_failed(path_or_id: str, error: Exception) -> ModelLoadError:
    local = Path(path_or_id).expanduser()
    if local.exists() or path_or_id.startswith((".", "/", "~")):
        return ModelLoadError(
            f"Could not load a checkpoint from {path_or_id!r}: {error}. Point qd.load_model at a directory "
            "holding config.json, the weights and the processor files (what save_pretrained writes)."
        )
    offline_twin = (
        f" To work without the weights, qd.twin({path_or_id!r}) builds an offline twin of it."
        if path_or_id in shipped_checkpoints()
        else ""
    )
    return ModelLoadError(
        f"Could not load {path_or_id!r}: it is not a local directory, and the Hugging Face Hub could not "
        f"provide it (no network, or not in the local cache): {type(error).__name__}. On a machine with "
        f"access, run `hf download {path_or_id} --local-dir DIR` and call qd.load_model(DIR).{offline_twin}"
    )


def load_model(path_or_id: str, **from_pretrained_kwargs):
    """A real checkpoint and its processor: `from_pretrained` with your kwargs (device_map, dtype, ...).
    For an Omni checkpoint, the model is its thinker (`*ThinkerForConditionalGeneration`).

    >>> model, processor = load_model("/models/Qwen2.5-VL-7B-Instruct", device_map="auto")
    """
    # the auto classes import every model type's mappings (~0.5 s) and, for processors, torchvision
    # (~2 s): imported when a checkpoint is loaded, not with the kit
    from transformers import AutoConfig, AutoProcessor

    if not isinstance(path_or_id, (str, Path)):
        raise ModelLoadError(f"load_model takes a directory or a hub id; got {type(path_or_id).__name__}.")
    path_or_id = str(path_or_id)
    hub_kwargs = {
        k: from_pretrained_kwargs[k]
        for k in ("local_files_only", "revision", "token")
        if k in from_pretrained_kwargs
    }
    try:
        config = AutoConfig.from_pretrained(path_or_id, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise _load_failed(path_or_id, error) from error
    family = family_of_model_type(config.model_type)
    if family is None:
        raise NotQwenVLError(
            f"{path_or_id!r} is a {config.model_type!r} model, not Qwen-VL (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). "
            "qwenvl-diag's models, inputs and known bugs are Qwen-VL specific."
        )
    get_family(family.name)
    # a whole Omni checkpoint (not one saved from its thinker alone) loads as its thinker, the model that
    # reads images, video and audio, as the model card's thinker-only example does
    whole_omni = family.thinker is not None and not config.model_type.endswith("_thinker")
    model_cls = getattr(transformers, family.thinker if whole_omni else config.architectures[0])
    try:
        model = model_cls.from_pretrained(path_or_id, **from_pretrained_kwargs)
        processor = AutoProcessor.from_pretrained(path_or_id, **hub_kwargs)
    except OSError as error:
        raise _load_failed(path_or_id, error) from error
    return model.eval(), processor
