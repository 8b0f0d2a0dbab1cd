"""The one place where the kit forks on the installed transformers / qwen-vl-utils release.

Everything version-specific that the rest of the package needs is a function or constant here,
so the other modules read the same on every supported stack (transformers >= 4.49).
"""

from __future__ import annotations

import inspect

import transformers
from packaging.version import Version

TRANSFORMERS_VERSION = Version(transformers.__version__)
TRANSFORMERS_5 = TRANSFORMERS_VERSION.major >= 5


def transformers_at_least(version: str) -> bool:
    """True when the installed transformers is `version` or newer (dev builds count as released)."""
    return Version(TRANSFORMERS_VERSION.base_version) >= Version(version)


def tokenizer_class_name() -> str:
    """The tokenizer class to record in a local tokenizer_config.json.

    4.x Qwen-VL processors accept only Qwen2Tokenizer(Fast); 5.x's Qwen2Tokenizer rebuilds a BPE
    model from vocab/merges and drops our character-level tokenizer.json, while the generic
    fast tokenizer (5.x: TokenizersBackend) loads it as written and the processors accept it.
    """
    return "PreTrainedTokenizerFast" if TRANSFORMERS_5 else "Qwen2TokenizerFast"


def process_vision_info_kwargs(patch_size: int) -> dict:
    """Keyword arguments for qwen-vl-utils' process_vision_info that the installed release accepts.

    0.0.9-0.0.11 know only `return_video_kwargs`; 0.0.13+ add `return_video_metadata` and
    `image_patch_size` (16 for Qwen3-VL). transformers 5.x processors take the frame rate from
    video metadata (without it Qwen2.5-VL assumes 24 fps), so metadata is asked for there.
    """
    from qwen_vl_utils import process_vision_info

    params = inspect.signature(process_vision_info).parameters
    kwargs = {"return_video_kwargs": True} if "return_video_kwargs" in params else {}
    if "image_patch_size" in params:
        kwargs["image_patch_size"] = patch_size
    if TRANSFORMERS_5 and "return_video_metadata" in params:
        kwargs["return_video_metadata"] = True
    return kwargs


def processor_video_kwargs(video_kwargs: dict) -> dict:
    """qwen-vl-utils' video kwargs in the form the installed processor validates.

    qwen-vl-utils returns `fps` as a list (one rate per video); transformers 5.x types the
    processor's `fps` as a single number and rejects the list, so one shared rate is passed as a number.
    """
    fps = video_kwargs.get("fps")
    if TRANSFORMERS_5 and isinstance(fps, list):
        if len(set(fps)) > 1:
            raise ValueError(f"transformers {TRANSFORMERS_VERSION} takes one fps per call; got {fps}.")
        video_kwargs = {**video_kwargs, "fps": fps[0]}
    return video_kwargs
