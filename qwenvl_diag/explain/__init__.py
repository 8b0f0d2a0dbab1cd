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
from .answer import ANSWER_KEYS, decide
from .facts import ERROR_KINDS, FACT_KEYS, read_facts
from .lines import index_note
from .rank import CONFIDENCES, rank
from .reply import beyond_catalogue, not_recognised, reply_for
from .text import as_printed, spaced
from .tools import TOOL_KEYS

EXPLAIN_KEYS = ("facts", "answer", "candidates", "scenario", "reply", "notes")
"""Keys of `Explanation.to_dict()` / `--format json`: `facts` (`FACT_KEYS`), `answer` (`ANSWER_KEYS`, or
None), `candidates` (catalogue rows, `KNOWN_BUG_COLUMNS`, plus `score`, `evidence`, `against`, `confirm`,
`tier`, `confidence`, `tied`; best first), `scenario` (the `Scenario` fields that reproduce the answer,
plus `preset`, or None), `reply` (markdown) and `notes` (what limited the answer, e.g. a reported release
newer than the kit's line index; a list)."""


@dataclass(frozen=True)
class Explanation:
    """What `explain` made of a text: its `answer` (a catalogue entry, or whose code raised beyond the
    catalogue) with a confidence, the ranked catalogue `candidates` and a `reply`. `recognised` is False
    when the text shows nothing it can place: `reply` then says what would help."""

    facts: dict[str, Any]
    answer: dict[str, Any] | None
    candidates: list[dict[str, Any]]
    scenario: dict[str, Any] | None
    reply: str
    notes: tuple[str, ...] = ()

    @property
    def recognised(self) -> bool:
        return self.answer is not None

    @property
    def best(self) -> dict[str, Any] | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "facts": self.facts,
            "answer": self.answer,
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
        for name in ("family", "checkpoint", "python", "transformers_ref"):
            if facts[name]:
                lines.append(f"{name}: {facts[name]}")
        if facts["versions"]:
            lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
        if facts["gpus"]["count"] or facts["gpus"]["type"]:
            lines.append(f"gpus: {facts['gpus']['count'] or '?'} x {facts['gpus']['type'] or '?'}")
        if facts["engine"]:
            lines.append(f"engine: {', '.join(facts['engine'])}")
        if self.answer:
            answer = self.answer
            lines.append(
                f"answer: {answer['label']} (confidence {answer['confidence']}): {answer['summary']}"
            )
        for candidate in self.candidates:
            tie = ", tied" if candidate["tied"] else ""
            lines.append(
                f"candidate {candidate['id']} (score {candidate['score']}{tie}): {candidate['title']}"
            )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n\n" + self.reply


def _scenario(answer: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any] | None:
    """The preset that reproduces the answer: the entry's, or the nearest to a tool's mechanism."""
    if answer["kind"] in ("bug", "usage"):
        preset = get_bug(answer["label"]).scenario
    else:
        preset = next((t["scenario"] for t in facts["tools"] if f"tool:{t['tool']}" == answer["label"]), None)
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
    candidates = rank(facts, spaced(as_printed(text)))  # names against Chinese prose read as words
    notes = tuple(note for note in [index_note(facts["versions"].get("transformers"))] if note)
    answer = decide(facts, candidates)
    if answer is None:
        return Explanation(facts, None, [], None, not_recognised(facts, notes), notes)
    scenario = _scenario(answer, facts)
    if answer["kind"] in ("bug", "usage"):
        reply = reply_for(facts, candidates, scenario, notes)
    else:
        reply = beyond_catalogue(facts, answer, notes)
    return Explanation(facts, answer, candidates, scenario, reply, notes)


__all__ = [
    "ANSWER_KEYS",
    "CONFIDENCES",
    "ERROR_KINDS",
    "EXPLAIN_KEYS",
    "FACT_KEYS",
    "TOOL_KEYS",
    "Explanation",
    "explain",
    "read_facts",
]
