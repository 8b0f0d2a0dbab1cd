"""`explain`: start from what a user pasted (an error line, a traceback in any of the forms Python,
IPython, torchrun or a logger print it, `transformers env` / `pip list` / `collect_env` output, free
text) and get the facts it states, the known bugs it points to, the scenario that reproduces the best
one, and a reply a maintainer can paste. Pure text and data: nothing here imports torch or transformers.

>>> result = qd.explain(open("traceback.txt").read())
>>> result.candidates[0]["id"], result.candidates[0]["fixed_in"]
('qwen2_5_vl-batched-causal-mask', '4.52.1')
>>> print(result.reply)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..bugs import get_bug
from ..errors import InvalidArgumentError
from ..presets import PRESETS
from .facts import ERROR_KINDS, FACT_KEYS, read_facts
from .lines import index_note
from .rank import rank
from .reply import not_recognised, reply_for

EXPLAIN_KEYS = ("facts", "candidates", "scenario", "reply", "notes")
"""Keys of `Explanation.to_dict()` / `--format json`: `facts` (`FACT_KEYS`), `candidates` (catalogue
rows, `KNOWN_BUG_COLUMNS`, plus `score`, `evidence`, `against`, `confirm`; best first), `scenario` (the
`Scenario` fields that reproduce the best candidate, plus `preset`, or None), `reply` (markdown) and
`notes` (what limited the answer, e.g. a reported release newer than the kit's line index; a list)."""


@dataclass(frozen=True)
class Explanation:
    """What `explain` made of a text. `recognised` is False when no known bug fits: `reply` then says what
    would help."""

    facts: dict[str, Any]
    candidates: list[dict[str, Any]]
    scenario: dict[str, Any] | None
    reply: str
    notes: tuple[str, ...] = ()

    @property
    def recognised(self) -> bool:
        return bool(self.candidates)

    @property
    def best(self) -> dict[str, Any] | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "facts": self.facts,
            "candidates": self.candidates,
            "scenario": self.scenario,
            "reply": self.reply,
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        return self.reply

    def to_text(self) -> str:
        """The facts and candidates in a few lines, then the reply."""
        facts = self.facts
        lines = [f"error: {facts['error'] or 'none found'}"]
        if facts["devices"]:
            lines.append(f"devices: {', '.join(facts['devices'])} ({facts['device_pair']})")
        if facts["wrapper"]:
            lines.append(f"op: {facts['op']} (wrapper {facts['wrapper']}, argument {facts['argument']})")
        if frame := facts["library_frame"]:
            lines.append(
                f"library frame: {frame['file']}:{frame['line']} in {frame['function']}: {frame['code']}"
            )
        for name in ("family", "checkpoint", "python", "transformers_commit"):
            if facts[name]:
                lines.append(f"{name}: {facts[name]}")
        if facts["versions"]:
            lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
        if facts["gpus"]["count"] or facts["gpus"]["type"]:
            lines.append(f"gpus: {facts['gpus']['count'] or '?'} x {facts['gpus']['type'] or '?'}")
        if facts["engine"]:
            lines.append(f"engine: {', '.join(facts['engine'])}")
        for candidate in self.candidates:
            lines.append(f"candidate {candidate['id']} (score {candidate['score']}): {candidate['title']}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n\n" + self.reply


def _scenario(bug_id: str) -> dict[str, Any] | None:
    preset = get_bug(bug_id).scenario
    return {"preset": preset, **PRESETS[preset]} if preset else None


def explain(text: str) -> Explanation:
    """The facts of `text`, the catalogue entries they point to (best first), the scenario that
    reproduces the best one, and a markdown reply. Text it cannot place gets `recognised` False and a
    reply that says what would help; it never raises for what the text says.

    >>> qd.explain("RuntimeError: Expected all tensors to be on the same device, but found at least two "
    ...            "devices, cuda:0 and cpu! ... time_tensor = expanded_range * second_per_grid_t").best["id"]
    'qwen2_5_vl-video-second-per-grid-ts'
    """
    if not isinstance(text, str):
        raise InvalidArgumentError(f"explain takes the pasted text as a str; got {type(text).__name__}.")
    facts = read_facts(text)
    candidates = rank(facts, text)
    notes = tuple(note for note in [index_note(facts["versions"].get("transformers"))] if note)
    if not candidates:
        return Explanation(facts, [], None, not_recognised(facts, notes), notes)
    scenario = _scenario(candidates[0]["id"])
    return Explanation(facts, candidates, scenario, reply_for(facts, candidates, scenario, notes), notes)


__all__ = ["ERROR_KINDS", "EXPLAIN_KEYS", "FACT_KEYS", "Explanation", "explain", "read_facts"]
