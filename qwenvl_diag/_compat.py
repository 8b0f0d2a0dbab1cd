"""The one place where the kit forks on the installed transformers / qwen-vl-utils release.

Everything version-specific that the rest of the package needs is a function or constant here,
so the other modules read the same on every supported release (transformers >= 4.45: the kit's own
stack needs 4.49+, the version lab's side environments run 4.45 on).
"""

from __future__ import annotations

import copy
import inspect
import re
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING

from packaging.version import Version

if TYPE_CHECKING:
    import torch

# Read from the package metadata, which names the release that `import transformers` finds first on
# sys.path (the side environments' too), so that knowing the release imports neither transformers
# nor torch (4.x's `import transformers` imports torch): the catalogue and the CLI stay torch-free.
TRANSFORMERS_VERSION = Version(metadata.version("transformers"))
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


def processor_video_kwargs(video_kwargs: dict, processor=None) -> dict:
    """qwen-vl-utils' video kwargs in the form the installed processor validates.

    4.45 and 4.46 take none: their Qwen2-VL processor hands every extra keyword to the image
    processor's `preprocess`, which rejects `fps` and `do_sample_frames` (their model card's call passes
    none; Qwen2-VL has no frame-rate input). qwen-vl-utils returns `fps` as a list (one rate per video);
    transformers 5.x types the processor's `fps` as a single number and rejects the list, so one shared
    rate is passed as a number, as to the Omni processors of every release. A Qwen3-VL video processor
    that has `cap_pixels_per_frame` (recent 5.x; unset, it warns on every video) is asked for the
    per-frame cap qwen-vl-utils applies, which the kit's frames are made with.
    """
    if not transformers_at_least("4.47"):
        return {}
    if video_kwargs and hasattr(getattr(processor, "video_processor", None), "cap_pixels_per_frame"):
        video_kwargs = {**video_kwargs, "cap_pixels_per_frame": True}
    fps = video_kwargs.get("fps")
    # the Omni processors (they hear: a feature extractor) read `fps` as one number in every release
    # (4.52.4 processing_qwen2_5_omni.py L158, L185-187: `[fps] * len(videos)`)
    one_rate = TRANSFORMERS_5 or hasattr(processor, "feature_extractor")
    if one_rate and isinstance(fps, list):
        if len(set(fps)) > 1:
            raise ValueError(f"transformers {TRANSFORMERS_VERSION} takes one fps per call; got {fps}.")
        video_kwargs = {**video_kwargs, "fps": fps[0]}
    return video_kwargs


def audio_in_video_kwargs(processor, videos: int) -> dict:
    """The processor keywords that take each video's sound track from `audio` (one per video, in order).

    Through 5.2x the Omni processors take `use_audio_in_video=True`; later ones deprecate it for
    `load_audio_from_video=True` with `audio_from_video_indices`, and without the indices count the
    given tracks as standalone audio (5.25.0 processing_utils.py L2719-2729, L2812-2830).
    """
    calls = (vars(c)["__call__"] for c in type(processor).__mro__ if "__call__" in vars(c))
    if any("audio_from_video_indices" in inspect.signature(call).parameters for call in calls):
        return {"load_audio_from_video": True, "audio_from_video_indices": list(range(videos))}
    return {"use_audio_in_video": True}


@contextmanager
def _default_dtype(dtype: torch.dtype):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _init_contexts(model_cls: type, dtype: torch.dtype) -> list:
    """The contexts the installed from_pretrained builds a device-mapped model under: the release's own
    `get_init_context` (4.50+), or, before it existed (4.45-4.49), what from_pretrained inlined for a
    device map: random init skipped and parameters on the meta device."""
    if not hasattr(model_cls, "get_init_context"):
        from accelerate import init_empty_weights
        from transformers.modeling_utils import no_init_weights

        return [no_init_weights(), init_empty_weights()]
    wanted = {"dtype": dtype, "is_quantized": False, "_is_ds_init_called": False, "allow_all_kernels": None}
    accepted = inspect.signature(model_cls.get_init_context).parameters
    return model_cls.get_init_context(**{k: v for k, v in wanted.items() if k in accepted})


def empty_model_for_planning(model_cls: type, config, dtype: torch.dtype) -> torch.nn.Module:
    """The model `from_pretrained(dtype=dtype, device_map=...)` infers its map for: real sizes, no memory.

    Follows the installed from_pretrained: the dtype set on the config and its sub-configs (4.x
    `torch_dtype`, 5.x `dtype`), the model built under the release's own `get_init_context` with that
    default dtype (parameters on the meta device, random init skipped), and, in 4.x only, the weights
    tied before the map is inferred (4.45-4.49 budget the GPUs on the model as built, untied: see
    `_inlined_device_map`; 5.x plans untied and reads tied names from `all_tied_weights_keys`).
    `config` is not modified.
    """
    model = _built_for_planning(model_cls, config, dtype)
    if not TRANSFORMERS_5:
        model.tie_weights()
    return model


def _built_for_planning(model_cls: type, config, dtype: torch.dtype) -> torch.nn.Module:
    """The model as from_pretrained builds it (before any tying), on the meta device."""
    from transformers.utils import ContextManagers

    config = copy.deepcopy(config)
    attribute = "dtype" if TRANSFORMERS_5 else "torch_dtype"
    for part in [config, *(getattr(config, key, None) for key in getattr(config, "sub_configs", ()))]:
        if part is not None:
            setattr(part, attribute, dtype)
    contexts = _init_contexts(model_cls, dtype)
    if TRANSFORMERS_5:  # skip random init, which on the meta device only costs time (4.x's contexts do)
        from transformers.initialization import no_init_weights

        contexts = [*contexts, no_init_weights()]
    with ContextManagers([_default_dtype(dtype), *contexts]):
        return model_cls(config)


def planner_no_split_modules(model: torch.nn.Module) -> list[str]:
    """The classes the installed from_pretrained keeps whole on one device (4.x collects them from
    every sub-model, 5.x reads the set `post_init` gathered), sorted."""
    if TRANSFORMERS_5:
        return sorted(model._no_split_modules or ())
    return sorted(model._get_no_split_modules("auto"))


def transformers_device_map(model: torch.nn.Module, strategy: str, max_memory: dict, dtype) -> dict:
    """The device map `from_pretrained(device_map=strategy, max_memory=max_memory)` computes for `model`.

    Calls the installed transformers' own `_get_device_map` (the function from_pretrained calls, 4.50+),
    following its signature: 4.50 takes the dtype and the model's `_keep_in_fp32_modules` list (None
    when empty), 4.51-4.57 the dtype (`torch_dtype`, 4.57 `dtype`) and the keep-in-fp32 regex
    from_pretrained builds for float16 loads, 5.x neither (Qwen-VL lists no keep-in-fp32 modules).
    Before 4.50 from_pretrained planned inline: `_inlined_device_map`. `max_memory` is copied:
    accelerate converts its values in place.
    """
    import torch
    from transformers import modeling_utils

    get_device_map = getattr(modeling_utils, "_get_device_map", None)
    if get_device_map is None:
        return _inlined_device_map(model, strategy, max_memory, dtype)
    params = inspect.signature(get_device_map).parameters
    keep = getattr(model, "_keep_in_fp32_modules", None)
    kwargs = {name: dtype for name in ("torch_dtype", "dtype") if name in params}  # 4.57 renamed it
    if "keep_in_fp32_modules" in params:
        kwargs["keep_in_fp32_modules"] = keep or None
    if "keep_in_fp32_regex" in params:
        kwargs["keep_in_fp32_regex"] = (
            re.compile("|".join(rf"((^|\.){m}($|\.))" for m in keep))
            if keep is not None and dtype == torch.float16
            else None
        )
    return get_device_map(model, strategy, dict(max_memory), None, **kwargs)


def _inlined_device_map(model: torch.nn.Module, strategy: str, max_memory: dict, dtype) -> dict:
    """The device map of transformers 4.45-4.49, whose from_pretrained planned inline (before
    `_get_device_map` existed): accelerate's balanced budgets (or the given ones for "sequential") of
    the model as built (untied: under `no_init_weights` post_init ties nothing), weights tied, then
    `infer_auto_device_map` with the model's no-split classes and, for float16 loads, float32 for
    `_keep_in_fp32_modules`. `model` is the tied one (`empty_model_for_planning`); where tying shared a
    weight, the budgets are computed on the model as built, untied (built again: a fraction of a second).
    `max_memory` is copied."""
    import torch
    from accelerate.utils import get_balanced_memory, get_max_memory, infer_auto_device_map

    keep = getattr(model, "_keep_in_fp32_modules", None) if dtype == torch.float16 else None
    kwargs = {
        "no_split_module_classes": model._get_no_split_modules(strategy),
        "special_dtypes": {
            n: torch.float32 for n, _ in model.named_parameters() if any(m in n for m in keep or ())
        },
    }
    if strategy != "sequential":
        head, embed = model.get_output_embeddings(), model.get_input_embeddings()
        shares = head is not None and embed is not None and head.weight is embed.weight
        as_built = _built_for_planning(type(model), model.config, dtype) if shares else model
        low_zero = strategy == "balanced_low_0"
        budgets = get_balanced_memory(
            as_built, dtype=dtype, low_zero=low_zero, max_memory=dict(max_memory), **kwargs
        )
    else:
        budgets = get_max_memory(dict(max_memory))
    return infer_auto_device_map(model, dtype=dtype, max_memory=budgets, **kwargs)
