"""`Judged`: one run judged against its single-device reference. `verify` makes it in this environment,
and the version lab (`versions.judge_in`) reads it back from a side environment's run."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Judged:
    """A run judged against the reference: its error text, the largest logit difference (NaN when it
    failed), whether the ids are the same (None when it failed), and what still fails and where.
    `compared` is False where values cannot be compared (an FSDP2 run on the fake process group, whose
    all-gathers do not bring the other ranks' shards): then only the error counts."""

    error: str | None
    diff: float = math.nan
    same: bool | None = None
    failure: str | None = None
    compared: bool = True
