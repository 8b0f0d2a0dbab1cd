"""Sample model inputs built the way users build them: chat messages -> qwen-vl-utils -> processor.

Images and video frames are synthetic (generated from a seed), so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import BatchFeature

from ._compat import audio_in_video_kwargs, process_vision_info_kwargs, processor_video_kwargs
from .choices import ALL_INPUT_KINDS, AUDIO_KINDS
from .errors import NotQwenVLError, UnknownInputKindError
from .models.families import family_of_processor

_SECOND_PER_GRID_FORMS = (None, "list", "tensor")
# Qwen2.5-Omni's model card opens every conversation with this system prompt, and its processor warns
# on any other (4.52.4 processing_qwen2_5_omni.py L336-347: "System prompt modified, ...")
_SYSTEM_PROMPTS = {
    "qwen2_5_omni": "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech."
}


def synthetic_image(seed: int, height: int, width: int) -> Image.Image:
    """A deterministic RGB picture: a colour gradient with a few rectangles."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 256, 3)
    pixels = np.stack([(base[c] + 255 * (x / width if c % 2 else y / height)) % 256 for c in range(3)], -1)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        box = (x0, y0, x0 + width // 3, y0 + height // 3)
        draw.rectangle(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def _image_part(seed: int, height: int, width: int) -> dict:
    image = synthetic_image(seed, height, width)
    return {"type": "image", "image": image, "resized_height": height, "resized_width": width}


def _video_part(seed: int, side: int, frames: int, fps: float) -> dict:
    clip = [synthetic_image(seed + i, side, side) for i in range(frames)]
    # qwen-vl-utils <= 0.0.11 reads a frame list's rate from "fps", 0.0.13+ from "sample_fps".
    return {
        "type": "video",
        "video": clip,
        "fps": fps,
        "sample_fps": fps,
        "resized_height": side,
        "resized_width": side,
    }


def synthetic_audio(seed: int, seconds: float, sampling_rate: int) -> np.ndarray:
    """A deterministic mono waveform in [-1, 1]: a few tones whose pitches come from the seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 2000, 3))
    return (tones / 3).astype(np.float32)


def _conversation(parts: list[dict], text: str) -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def _prompt(processor, conversation: list[dict], family: str) -> str:
    if family in _SYSTEM_PROMPTS:
        system = {"role": "system", "content": [{"type": "text", "text": _SYSTEM_PROMPTS[family]}]}
        conversation = [system, *conversation]
    text = processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return text[0] if isinstance(text, list) else text  # Qwen2.5-Omni's 4.52-4.53 processor: a list


def sample_conversations(kind: str, patch_size: int = 14, fps: float = 2.0) -> list[list[dict]]:
    """The chat messages behind `sample_inputs(..., kind)`: one conversation, two for "batch"."""
    unit = 2 * patch_size  # qwen-vl-utils resizes to multiples of patch_size * merge_size
    if kind == "image":
        return [_conversation([_image_part(1, 2 * unit, 3 * unit)], "Describe this image.")]
    if kind == "batch":
        return [
            _conversation([_image_part(2, 2 * unit, 2 * unit)], "Hi."),
            _conversation([_image_part(3, 3 * unit, 4 * unit)], "What is in the top left corner, and why?"),
        ]
    if kind == "video":
        return [_conversation([_video_part(10, 2 * unit, 4, fps)], "What happens in this video?")]
    if kind == "text":
        return [_conversation([], "Write one sentence about GPUs.")]
    if kind == "audio":
        return [_conversation([{"type": "audio", "audio": synthetic_audio(20, 1.0, 16000)}], "Answer it.")]
    if kind == "video_audio":  # the clip's sound track rides with it, as qwen-omni-utils reads it from a file
        part = {**_video_part(10, 2 * unit, 4, fps), "sound": synthetic_audio(21, 4 / fps, 16000)}
        return [_conversation([part], "What is seen and heard?")]
    raise UnknownInputKindError(f"Unknown input kind {kind!r}; choose one of {', '.join(ALL_INPUT_KINDS)}.")


def _convert_second_per_grid_ts(inputs: BatchFeature, form: str) -> None:
    if "second_per_grid_ts" not in inputs:
        raise UnknownInputKindError(
            "This processor returns no second_per_grid_ts (only Qwen2.5-VL video inputs carry it); "
            "call sample_inputs(processor, 'video') without second_per_grid_ts=."
        )
    value = inputs["second_per_grid_ts"]
    if form == "tensor" and not isinstance(value, torch.Tensor):
        inputs["second_per_grid_ts"] = torch.tensor(value, dtype=torch.float32)
    elif form == "list" and isinstance(value, torch.Tensor):
        inputs["second_per_grid_ts"] = value.tolist()


def sample_inputs(
    processor,
    kind: str = "image",
    *,
    second_per_grid_ts: str | None = None,
    fps: float = 2.0,
) -> BatchFeature:
    """Model inputs of `kind` ("image", "batch", "video", "text", and for the Omni thinkers "audio" and
    "video_audio") for a Qwen-VL processor.

    "batch" is two prompts of different lengths and image sizes, left-padded. "video" is four
    synthetic frames at `fps`; "audio" is a second of synthetic 16 kHz sound and a question;
    "video_audio" the video with a sound track as long as it (`use_audio_in_video`, Omni thinkers only).
    `second_per_grid_ts` is left as the installed processor returns it (a list through transformers
    4.51, a CPU tensor from 4.52) unless you ask for "list" or "tensor" (a tensor there is what sets up
    the video failure of transformers 4.49-4.51.3).

    >>> inputs = sample_inputs(processor, "video", second_per_grid_ts="tensor")
    """
    from qwen_vl_utils import process_vision_info

    family = family_of_processor(processor)
    if family is None:
        raise NotQwenVLError(
            f"sample_inputs needs a Qwen-VL processor (Qwen2-VL, Qwen2.5-VL or Qwen3-VL); got "
            f"{type(processor).__name__}. Build one with qd.tiny_model(...), qd.twin(...) or "
            "qd.load_model(...)."
        )
    if kind not in ALL_INPUT_KINDS:
        raise UnknownInputKindError(
            f"Unknown input kind {kind!r}; choose one of {', '.join(ALL_INPUT_KINDS)}."
        )
    if kind in AUDIO_KINDS and family.thinker is None:
        raise UnknownInputKindError(
            f"{kind!r} inputs need an Omni thinker's processor (qwen2_5_omni, qwen3_omni_moe); "
            f"{type(processor).__name__} takes no audio. Use image, batch, video or text."
        )
    if second_per_grid_ts not in _SECOND_PER_GRID_FORMS:
        raise UnknownInputKindError(
            f"second_per_grid_ts must be None, 'list' or 'tensor'; got {second_per_grid_ts!r}."
        )
    conversations = sample_conversations(kind, family.patch_size, fps)
    texts = [_prompt(processor, c, family.name) for c in conversations]
    images, videos, video_kwargs = process_vision_info(
        conversations, **process_vision_info_kwargs(family.patch_size)
    )
    parts = [part for c in conversations for m in c for part in m["content"]]
    # a spoken part's "audio", or a video's sound track ("sound": kept out of qwen-vl-utils' sight)
    audios = [part[key] for part in parts for key in ("audio", "sound") if key in part]
    in_video = any("sound" in part for part in parts)
    if not videos:
        video_kwargs = {}
    elif isinstance(videos[0], tuple):
        videos, video_kwargs["video_metadata"] = (list(x) for x in zip(*videos, strict=False))
    inputs = processor(
        text=texts,
        images=images,
        videos=videos,
        **({"audio": audios} if audios else {}),
        padding=True,
        padding_side="left",
        return_tensors="pt",
        **processor_video_kwargs(video_kwargs, processor),
        **(audio_in_video_kwargs(processor, len(videos)) if in_video else {}),
    )
    if in_video:  # the thinker's forward and generate take it too (its rope interleaves them)
        inputs["use_audio_in_video"] = True
    if second_per_grid_ts is not None:
        _convert_second_per_grid_ts(inputs, second_per_grid_ts)
    return inputs
