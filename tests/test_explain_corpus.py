"""`explain` against what people really paste: the corpus of real public reports (`explain_corpus.py`,
`tests/data/explain_corpus/`), its accuracy floor on both splits, the meaning of a "high" answer, and one
report of each kind of miss the kit used to make, answered right. Pure text: no torch."""

from __future__ import annotations

import hashlib
import html
import re

import explain_corpus
import pytest

import qwenvl_diag as qd
from qwenvl_diag.bugs import CATALOGUE
from qwenvl_diag.explain import CONFIDENCES

ITEMS = explain_corpus.load()
BY_ID = {item["id"]: item for item in ITEMS}
# the floors, measured when the ranking or the corpus last changed (105 items; top-1 dev 55/81, held
# 17/24; top-3 59/81, 17/24; on the items whose text holds the answer, `answerable`: dev 51/58, held 17/19;
# at the corpus' growth before, dev 49/80 and held 17/24; before the evidence tiers, tools and confidence,
# on the first 71: dev 4/57, held 2/14); raise them as it improves
FLOORS = {
    "dev": {"top1": 0.67, "top3": 0.72, "answerable_top1": 0.87},
    "held": {"top1": 0.70, "top3": 0.70, "answerable_top1": 0.89},
}


@pytest.fixture(scope="module")
def measured() -> dict:
    return explain_corpus.evaluate(ITEMS)


def test_the_corpus_is_real_reports_with_their_answers_and_a_fifth_held_aside():
    assert len(ITEMS) >= 60
    assert len(BY_ID) == len(ITEMS), "ids are unique"
    catalogue = {bug.id for bug in CATALOGUE}
    for item in ITEMS:
        fields = {"id", "url", "text", "expected", "thread_reached", "evidence", "split"}
        assert set(item) == fields | {"answerable", "answerable_why"}, item["id"]
        assert item["answerable"] in ("yes", "tie", "no") and item["answerable_why"].strip(), item["id"]
        assert re.match(r"https://\S+$", item["url"]), item["id"]
        assert item["text"].strip() and item["thread_reached"].strip(), item["id"]
        expected = item["expected"]
        assert expected in catalogue or re.match(r"(tool|transformers):[\w.-]+$|user$", expected), expected
        # the split is the id's hash, fixed when the item was added: never chosen by how the kit does
        held = int(hashlib.sha1(item["id"].encode()).hexdigest(), 16) % 5 == 0
        assert item["split"] == ("held" if held else "dev"), item["id"]
    held = sum(item["split"] == "held" for item in ITEMS)
    assert 0.12 <= held / len(ITEMS) <= 0.28
    # at most two items per thread
    assert max(sum(i["url"] == item["url"] for i in ITEMS) for item in ITEMS) <= 2


@pytest.mark.parametrize("split", explain_corpus.SPLITS)
def test_accuracy_holds_its_floor(measured, split):
    counts = measured["splits"][split]
    top1, top3 = counts["top1"] / counts["n"], counts["top3"] / counts["n"]
    assert top1 >= FLOORS[split]["top1"] and top3 >= FLOORS[split]["top3"], (counts, measured["misses"])
    assert top3 >= top1
    # and on the texts that hold their answer at all (the rest no reader of the text could answer)
    answerable = counts["answerable_top1"] / counts["answerable"]
    assert answerable >= FLOORS[split]["answerable_top1"], (counts, measured["misses"])


def test_a_high_confidence_answer_is_right(measured):
    high = measured["confidence"]["high"]
    assert high["n"] >= 5 and high["right"] / high["n"] >= 0.9, high
    # and the levels mean something: high is right more often than low
    low = measured["confidence"]["low"]
    assert high["right"] / high["n"] > low["right"] / low["n"]


# how people's pastes reach the kit besides as printed: a Windows clipboard, quoted in a reply, indented
# or fenced in Markdown, copied from a rendered page (entities, no-break spaces)
RESHAPED = {
    "crlf": lambda text: text.replace("\n", "\r\n"),
    "quoted": lambda text: "\n".join(f"> {line}" for line in text.split("\n")),
    "quoted twice": lambda text: "\n".join(f"> > {line}" for line in text.split("\n")),
    "indented": lambda text: "\n".join(f"    {line}" for line in text.split("\n")),
    "fenced": lambda text: f"```python\n{text}\n```",
    "html entities": html.escape,
    "no-break spaces": lambda text: text.replace(" ", "\u00a0"),
}


@pytest.mark.parametrize("shape", sorted(RESHAPED))
def test_the_answer_does_not_depend_on_how_the_text_was_copied(shape):
    changed = [
        item["id"]
        for item in ITEMS
        if explain_corpus.labels(qd.explain(RESHAPED[shape](item["text"])))[:3]
        != explain_corpus.labels(qd.explain(item["text"]))[:3]
    ]
    assert changed == []


# one public report of each kind of miss the kit used to make (issue 25), answered right now
KINDS = {
    # an exact library frame in a generated copy of the file (Qwen3-VL-MoE's), no version
    "generated-copy": "up-tf-41536",
    "generated-copy-through-a-trainer": "tr-verl-5571",
    # a release and a line that are exactly a catalogued bug's line in that release
    "release-and-line": "tr-llamafactory-7463",
    # an inference report (generate, transformers' warning that the inputs are on the CPU, the traceback
    # cut in the caller's script): the usage entry, not a training engine's bug
    "inference-report-inputs-on-cpu": "up-qv3-1647",
    # torch's other wordings: indexing's "indices should be either on cpu or ..."
    "indexing-wording": "up-tf-35762",
    # the device error told in words, with the wrapper named
    "told-in-words": "up-tf-45861",
    # an Omni thinker's failure the catalogue does not hold: transformers' code, said so
    "omni-beyond-the-catalogue": "up-qo25-20",
    # tools built on transformers: whose code raised, on an NPU too
    "serving-engine-on-npu": "tl-vllm-ascend-2051",
    "comfyui-node-raised": "tl-hidream-89",
    "quantizer-named": "tl-autoawq-641",
    "quantizer-named-bmm": "tl-deepseek-r1-554",
    "pipeline-raised": "tl-directeddiffusion-1",
    "trainer-raised": "tr-ms-swift-5842",
    "qwen3.5-in-a-comfyui-node": "tl-comfyui-gguf-19",
    # Chinese prose: the op named in words ("执行masked_scatter操作时") in an Omni thinker, no entry raises it
    "chinese-prose-op-in-words": "cm-gitcode-qwen25-omni-masked-scatter",
    # Chinese prose: a name of the entry's line ("rope_deltas张量") and the mismatch told in words
    "chinese-prose-names-of-its-line": "cm-gitcode-qwen25vl-rope-deltas",
    # a trainer named beside ZeRO-3: the trainer's settings start DeepSpeed
    "trainer-named-beside-zero3": "cm-gitcode-swift-qwen-omni-zero3",
    # a serving engine's own function of the catalogue's name (get_rope_index), the engine named
    "serving-engine-with-a-function-of-the-same-name": "tl-sglang-23291",
    # the video rope bug's other face, torch.cat's wrapper (the PR that fixed it)
    "video-bug-at-its-cat": "up-tf-37597",
    # a preview build named by the git commit the family's README installed, no release stated
    "preview-build-by-its-commit": "mt-qwen25omni-124",
    # code that uses the preview's own API (generate's `spk=`, which the first release renamed)
    "preview-build-by-its-api": "up-qo25-175",
    # a fix's text that links the entry's own issue
    "a-link-to-its-report": "up-tf-33851",
    # a package's own (generated, patched) copy of a Qwen model file, quoted by its path
    "a-packages-copy-of-the-model-file": "nd-veomni-776",
    # vLLM on an Ascend NPU: the plugin's own model classes (AscendQwen2_5_...) name it
    "vllm-ascend-by-its-classes": "nc-vllm-ascend-2007",
    # a report without its error line: a device_map, the family and video
    "no-error-line-placement-and-cue": "tr-lmms-eval-603",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_of_miss_is_answered_from_a_public_report(kind):
    item = BY_ID[KINDS[kind]]
    result = qd.explain(item["text"])
    labels = explain_corpus.labels(result)
    assert labels and explain_corpus._same(item["expected"], labels[0]), (labels, item["url"])
    assert result.recognised and result.answer["confidence"] in CONFIDENCES
    reply = result.reply
    assert f"**Confidence**: {result.answer['confidence']}" in reply
    if result.answer["kind"] == "tool":
        # whose code, the mechanism and where to report it: never a bare "not recognised"
        assert "Report it to" in reply and "What such code does" in reply and "Not recognised" not in reply
