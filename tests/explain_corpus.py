"""The evaluation corpus of `explain`: texts pasted in real public reports of a device mismatch (issue and
PR threads of transformers, QwenLM's repositories, trainers, evaluation kits, quantizers, pipelines,
ComfyUI nodes, serving engines, forums), each stored with its URL, the text as posted (trimmed, never
rewritten) and the answer its thread reached, in `tests/data/explain_corpus/*.json`.

Each item: `id`, `url`, `text`, `expected` (a catalogue id; "tool:<package>"; "transformers:<slug>", a
transformers bug the catalogue does not hold, which the kit answers right with "transformers:uncatalogued";
"user"), `thread_reached`, `evidence`, `split`: "held" for the fifth set aside that the ranking is never
tuned on (chosen by a hash of the id when the item was added), else "dev", and `answerable` with
`answerable_why`: whether the text alone (not its URL, not the thread) holds the answer, graded once by a
reader who knows the catalogue and the field and was not running the kit: "yes" (the expected label is the
single most likely answer from the text), "tie" (the text narrows it to the expected label and others it
cannot tell apart) or "no" (the deciding evidence is only in a title, a screenshot or the thread). The share
of "yes" is the ceiling of top-1 for a reader of the text.

Used by `tests/test_explain_corpus.py` (the floor) and `benchmarks/bench_explain.py` (the figures).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "data" / "explain_corpus"
SPLITS = ("dev", "held")


def load() -> list[dict[str, Any]]:
    """Every item of the corpus, ordered by file then position."""
    return [item for path in sorted(CORPUS.glob("*.json")) for item in json.loads(path.read_text())]


def _same(expected: str, label: str | None) -> bool:
    """Whether the kit's `label` is the `expected` answer: a transformers bug outside the catalogue is
    answered by "transformers:uncatalogued"; package names compare with `-` and `_` alike."""
    if label is None:
        return False
    if expected.startswith("transformers:"):
        return label == "transformers:uncatalogued"
    return (
        expected.replace("_", "-") == label.replace("_", "-")
        if expected.startswith("tool:")
        else (expected == label)
    )


def labels(result: Any) -> list[str]:
    """The kit's answers to one text, best first: the answer, then the catalogue candidates, then the
    tools it shows."""
    found = [result.answer["label"]] if result.answer else []
    found += [candidate["id"] for candidate in result.candidates]
    found += [f"tool:{tool['tool']}" for tool in result.facts["tools"] if tool["where"] != "listed"]
    return list(dict.fromkeys(found))


def evaluate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Top-1 and top-3 accuracy per split (and top-1 on the items whose text holds the answer), and per
    confidence level how often the answer was right, with the misses: {"splits": {split: {"n", "top1",
    "top3", "answerable", "answerable_top1"}}, "confidence": {level: {"n", "right"}}, "misses": [(id,
    expected, answer)]}."""
    from qwenvl_diag import explain

    splits: dict[str, Counter] = defaultdict(Counter)
    confidence: dict[str, Counter] = defaultdict(Counter)
    misses = []
    for item in items:
        result = explain(item["text"])
        found = labels(result)
        top1 = bool(found) and _same(item["expected"], found[0])
        top3 = any(_same(item["expected"], label) for label in found[:3])
        split = splits[item["split"]]
        answerable = item["answerable"] == "yes"
        split.update(n=1, top1=top1, top3=top3, answerable=answerable, answerable_top1=answerable and top1)
        level = result.answer["confidence"] if result.answer else "none"
        confidence[level].update(n=1, right=top1)
        if not top1:
            misses.append((item["id"], item["expected"], found[0] if found else None))
    return {
        "splits": {name: dict(counts) for name, counts in splits.items()},
        "confidence": {name: dict(counts) for name, counts in confidence.items()},
        "misses": misses,
    }
