"""Silent bugs: wrong values with no error, found in what the kit captured during a run.

The one the catalogue knows (`qwen2_5_vl-video-fps-temporal-ids`, transformers 4.52.1-5.17.x) shows in
the rope positions: a video's temporal ids step by `int(second_per_grid_t) * tokens_per_second` per
frame where a correct release (4.51.3, 5.18.0 and later) steps by `second_per_grid_t *
tokens_per_second`, both then truncated to integers. `silent_findings` recomputes each video's temporal
ids the correct way from the call's own arguments and compares them with the ids the call returned;
nothing is reported where they agree (fps <= 2, a correct release).
"""

from __future__ import annotations

import math

import torch

from .bugs import CATALOGUE, KnownBug
from .rope import RopeCall, RopeCapture

SECONDS = "second_per_grid_ts"
TEMPORAL_IDS_BUG = "qwen2_5_vl-video-fps-temporal-ids"


def _config_value(config, name: str):
    """`name` from the config or its vision config (where Qwen2.5-VL keeps tokens_per_second)."""
    for part in (config, getattr(config, "vision_config", None)):
        value = getattr(part, name, None)
        if value is not None:
            return value
    return None


def _seconds(call: RopeCall, videos: int) -> list[float]:
    """The call's seconds per temporal grid step, one per video (1.0 when it passed none, as the
    rope-index code assumes)."""
    value = call.arguments.get(SECONDS)
    if value is None:
        return [1.0] * videos
    return [float(v) for v in (value.tolist() if isinstance(value, torch.Tensor) else value)]


def _video_runs(call: RopeCall, video_token: int) -> list[tuple[int, list[int]]]:
    """(batch row, token indices) of each run of video tokens, in the order the videos come."""
    input_ids = call.arguments["input_ids"].tolist()
    mask = call.arguments.get("attention_mask")
    mask = mask.tolist() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    runs = []
    for b, row in enumerate(input_ids):
        current: list[int] = []
        for i, token in enumerate(row):
            if token == video_token and (mask is None or mask[b][i]):
                current.append(i)
            elif current:
                runs.append((b, current))
                current = []
        if current:
            runs.append((b, current))
    return runs


def temporal_id_steps(call: RopeCall, config) -> list[dict]:
    """Per video of a returned rope-index call: its `second_per_grid_t`, the temporal ids the call gave
    each frame (relative to the first frame, `ids`) and the ids a correct release gives (`correct`).
    [] when the call raised, has no videos, or its model takes no seconds per grid step."""
    grid = call.arguments.get("video_grid_thw")
    positions = call.position_ids
    video_token = _config_value(config, "video_token_id")
    tokens_per_second = _config_value(config, "tokens_per_second")
    merge = _config_value(config, "spatial_merge_size")
    if positions is None or grid is None or None in (video_token, tokens_per_second, merge):
        return []
    if SECONDS not in call.arguments:
        return []
    grids = grid.tolist()
    seconds = _seconds(call, len(grids))
    temporal = positions.tolist()[-3]  # the t stream, (batch, tokens)
    steps = []
    for video, ((b, tokens), (t, h, w), second) in enumerate(
        zip(_video_runs(call, video_token), grids, seconds, strict=False)
    ):
        per_frame = (h // merge) * (w // merge)
        if per_frame * t != len(tokens):
            continue  # the run is not this grid's (a truncated prompt): nothing to compare
        first = temporal[b][tokens[0]]
        ids = [temporal[b][tokens[k * per_frame]] - first for k in range(t)]
        correct = [math.trunc(k * second * tokens_per_second) for k in range(t)]
        steps.append(
            {
                "video": video,
                "second_per_grid_t": second,
                "tokens_per_second": tokens_per_second,
                "ids": ids,
                "correct": correct,
            }
        )
    return steps


def silent_findings(capture: RopeCapture | None, config, version: str) -> list[dict]:
    """The silent catalogue bugs a run shows, as `match_known_bugs` rows (the entry's row, `version`,
    `version_affected`) plus `found` (what it did, in a sentence) and `videos` (`temporal_id_steps`' rows
    that differ from a correct release)."""
    if capture is None:
        return []
    wrong = [
        step
        for call in capture.calls
        for step in temporal_id_steps(call, config)
        if step["ids"] != step["correct"]
    ]
    if not wrong:
        return []
    bug: KnownBug = next(b for b in CATALOGUE if b.id == TEMPORAL_IDS_BUG)
    found = "; ".join(
        f"video {s['video']} (second_per_grid_t {s['second_per_grid_t']:g}, tokens_per_second "
        f"{s['tokens_per_second']}): temporal ids {s['ids']}, where a correct release gives {s['correct']}"
        for s in wrong
    )
    return [
        {
            **bug.row(),
            "version": str(version),
            "version_affected": bug.affects(version),
            "found": found,
            "videos": wrong,
        }
    ]
