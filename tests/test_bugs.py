"""The known-bug catalogue: its frame, its lines against the installed transformers source, the matcher,
and each entry reproduced on simulated GPUs (raising on an affected release, passing on a fixed one)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from accelerate import dispatch_model
from conftest import family_available, vision_apart_map
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from test_seed_failures import SAME_DEVICE, _raising_frame

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_VERSION
from qwenvl_diag.bugs import (
    BUG_KINDS,
    CATALOGUE,
    KNOWN_BUG_COLUMNS,
    find_in_source,
    get_bug,
    match_known_bugs,
)
from qwenvl_diag.explain import read_facts
from qwenvl_diag.explain.facts import device_pair
from qwenvl_diag.models.families import FAMILIES
from qwenvl_diag.presets import PRESETS

VIDEO = "qwen2_5_vl-video-second-per-grid-ts"
MASK_25 = "qwen2_5_vl-batched-causal-mask"
MASK_2 = "qwen2_vl-batched-causal-mask"
DELTAS_25 = "qwen2_5_vl-text-generate-rope-deltas"
DELTAS_2 = "qwen2_vl-text-generate-rope-deltas"
POSITIONS_2 = "qwen2_vl-text-generate-position-ids"
IMAGE_MASK_2 = "qwen2_vl-image-mask-device"
INDEX_MASK_2 = "qwen2_vl-rope-index-input-mask"
NEW_FAMILIES = ("qwen3_5", "qwen2_5_omni", "qwen3_omni_moe")
CPU_INPUTS = tuple(
    f"{family}-inputs-on-cpu" for family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", *NEW_FAMILIES)
)
CPU_PIXELS = tuple(
    f"{family}-pixel-values-on-cpu" for family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", *NEW_FAMILIES)
)
TEMPORAL_IDS = "qwen2_5_vl-video-fps-temporal-ids"
SPLIT_VISION = "qwen3_vl-generate-split-vision-cpu-grid"
FSDP_POS_EMBED = "qwen3_vl-fsdp2-offload-pos-embed-index"
FSDP_INV_FREQ = tuple(
    f"{family}-fsdp2-host-inv-freq{again}"
    for family in ("qwen3_vl", "qwen3_5", "qwen3_omni_moe")
    for again in ("", "-again")
)
OMNI_APART = ("qwen2_5_omni-rope-deltas-padding-delta", "qwen2_5_omni-text-generate-rope-deltas")
OFFLOAD_CONV = "qwen3_5-offload-decode-conv1d-weight"
VISION_SPLIT = ("qwen3_5-vision-split-pos-embeds-add", "qwen3_5-vision-split-pos-embed-weights")
OPEN_UPSTREAM = {SPLIT_VISION, VISION_SPLIT[1]}
# The lines in the release the legacy stack pins (BUG_FACTS.md and BUG_HISTORY.md for the first four; the
# others read here).
LINES_4_51_3 = {
    VIDEO: 1645,
    MASK_25: 1334,
    MASK_2: 1289,
    DELTAS_25: 1814,
    DELTAS_2: 1694,
    CPU_INPUTS[0]: 1639,
    CPU_INPUTS[1]: 1754,
}
# Entries whose fix changed another line: their own line stays in the fixed releases (BUG_HISTORY.md)
# (and the pixels entries' line: the patch convolution of every release; from 5.18 generate reaches it first)
LINE_KEPT_AFTER_FIX = {
    DELTAS_25,
    DELTAS_2,
    POSITIONS_2,
    IMAGE_MASK_2,
    INDEX_MASK_2,
    SPLIT_VISION,
    *CPU_PIXELS,
    # 5.9-5.16 moved inv_freq one line up; 5.17 dropped that again
    *(bug for bug in FSDP_INV_FREQ if not bug.endswith("-again")),
    *OMNI_APART,  # 4.53.0 stopped moving attention_mask before the rope index
    OFFLOAD_CONV,  # 5.13.0 runs the caller under accelerate's hooks; the torch fallback stays
    VISION_SPLIT[0],  # from 5.9.0 the add moves the embeddings' dtype, and a line earlier fails
}
QWEN25_FILE = "/usr/lib/python3/site-packages/transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py"


def test_the_frame_has_stable_columns_and_one_row_per_entry():
    frame = qd.known_bugs()
    expected = (
        "id title families affected trigger location code variants fixed_in references signature scenario "
        "workaround kind"
    )
    expected = expected.split()
    assert list(frame.columns) == expected
    assert KNOWN_BUG_COLUMNS == list(frame.columns)
    assert frame["id"].tolist() == [
        VIDEO,
        MASK_25,
        MASK_2,
        DELTAS_25,
        DELTAS_2,
        POSITIONS_2,
        IMAGE_MASK_2,
        INDEX_MASK_2,
        SPLIT_VISION,
        FSDP_POS_EMBED,
        *FSDP_INV_FREQ,
        *OMNI_APART,
        *VISION_SPLIT,
        OFFLOAD_CONV,
        *CPU_INPUTS,
        *CPU_PIXELS,
        TEMPORAL_IDS,
    ]
    assert frame["id"].is_unique
    assert all(isinstance(refs, list) and refs for refs in frame["references"])
    assert all(ref.startswith("https://github.com/") for refs in frame["references"] for ref in refs)
    assert set(frame["kind"]) == set(BUG_KINDS)
    for row in frame.itertuples():
        assert isinstance(row.variants, list)
        assert row.scenario in PRESETS
        # no fix release: a usage error, or a bug still open upstream
        assert row.fixed_in is not None or row.kind == "usage" or row.id in OPEN_UPSTREAM
        if row.kind == "silent":
            assert row.signature is None
            continue
        assert set(row.signature) == {"op", "devices", "wrapper", "argument", "reported_ops"}
        assert row.signature["devices"] in ("gpu/gpu", "gpu/cpu", "gpu/meta")


@pytest.mark.parametrize("bug", CATALOGUE, ids=lambda b: b.id)
def test_the_workaround_names_fixes_that_address_the_bug(bug):
    named = [fix for fix in qd.fixes()["name"] if fix in bug.workaround]
    assert named, bug.workaround
    addresses = qd.fixes().set_index("name")["addresses"]
    assert all(bug.id in addresses[fix] for fix in named), {fix: addresses[fix] for fix in named}


@pytest.mark.parametrize("bug", [b for b in CATALOGUE if b.kind != "silent"], ids=lambda b: b.id)
def test_the_signature_is_what_the_kits_reproduction_raises(bug):
    """Where the installed release is affected, the entry's scenario fails at its line with its op, device
    pair kind, CUDA wrapper and argument (as PyTorch's message names them); where it is not, the scenario
    passes; where the release lacks the family, the kit says so."""
    scenario = qd.Scenario.preset(bug.scenario)
    family = FAMILIES[bug.families[0]]
    if not family_available(family.name):
        with pytest.raises(qd.UnsupportedReleaseError, match=f"needs transformers >= {family.since}"):
            qd.run(scenario)
        return
    diagnosis = qd.run(scenario)
    if not bug.affects(TRANSFORMERS_VERSION):
        # it passes, or fails at another entry this release has (Qwen2-VL's text-only generate on
        # 4.51.3 at the rope-deltas line, the generate of CPU inputs at embed_tokens before 5.18)
        named = [b for b in diagnosis.known_bugs if b["version_affected"]]
        assert bug.id not in [b["id"] for b in named], named
        assert diagnosis.ok or (named and len(named) == len(diagnosis.known_bugs)), diagnosis.error
        return
    first = diagnosis.first_mismatch
    assert [b["id"] for b in diagnosis.known_bugs] == [bug.id]
    path, line = find_in_source(bug)
    assert (first["file"], first["line"], first["function"]) == (str(path), line, bug.function)
    assert device_pair(first["devices"].split(", ")) == bug.signature.devices, first
    facts = read_facts(diagnosis.error)
    assert (facts["wrapper"], facts["argument"]) == (bug.signature.wrapper, bug.signature.argument)
    traced = first["op"].removeprefix("Tensor.").removeprefix("torch.").removesuffix("_")
    # a wrapper's message names its own op (embedding runs index_select); TensorIterator's names none; the
    # convolution's type check names its family ("convolution"), and the traced op is one of it
    if facts["op"] == "convolution":
        assert traced.startswith("conv"), traced
    assert (facts["op"] if facts["op"] not in (None, "convolution") else traced).rstrip("_") == (
        bug.signature.op.rstrip("_")
    ), (facts["op"], traced)


@pytest.mark.parametrize("bug", CATALOGUE, ids=lambda b: b.id)
def test_ranges_parse_and_end_where_the_fix_landed(bug):
    affected = SpecifierSet(bug.affected)
    if bug.fixed_in is None:  # a usage error: every release from the family's first, or from a change
        [(operator, version)] = [(s.operator, s.version) for s in affected]
        assert operator == ">=" and Version(version) >= Version(FAMILIES[bug.families[0]].since)
        return
    assert not affected.contains(bug.fixed_in)
    assert {s.version for s in affected if s.operator == "<"} == {bug.fixed_in}
    assert all(Version(s.version) < Version(bug.fixed_in) for s in affected if s.operator == ">=")
    assert bug.location == f"{bug.file}: {bug.function}"
    assert set(bug.families) <= set(qd.FAMILIES)


def test_the_seed_failures_are_in_the_catalogue():
    video, mask = get_bug(VIDEO), get_bug(MASK_25)
    assert video.families == ("qwen2_5_vl",) and video.affected == ">=4.49.0,<4.52.1"
    assert video.location == "models/qwen2_5_vl/modeling_qwen2_5_vl.py: get_rope_index"
    assert video.fixed_in == "4.52.1"
    assert "https://github.com/huggingface/transformers/pull/37597" in video.references
    assert mask.location.endswith(": _prepare_4d_causal_attention_mask_with_cache_position")
    assert "https://github.com/huggingface/transformers/issues/37606" in mask.references
    assert "https://github.com/huggingface/transformers/pull/37612" in mask.references
    assert get_bug(MASK_2).affected == ">=4.47.0,<4.52.1"
    with pytest.raises(qd.InvalidArgumentError, match="the catalogue holds"):
        get_bug("no-such-bug")


@pytest.mark.parametrize("bug", CATALOGUE, ids=lambda b: b.id)
def test_each_line_is_in_the_installed_source_exactly_when_the_release_is_affected(bug):
    found = find_in_source(bug)
    if not family_available(bug.families[0]):
        assert found is None  # no such file yet
    elif bug.affects(TRANSFORMERS_VERSION):
        assert found is not None, (
            f"{bug.codes!r} not in {bug.function} of transformers {TRANSFORMERS_VERSION}"
        )
        path, line = found
        assert path.as_posix().endswith("transformers/" + bug.file)
        text = Path(path).read_text().splitlines()
        assert bug.quoted_in(text[line - 1])
        assert sum(bug.quoted_in(row) for row in text) == 1  # one line in the whole file
        if str(TRANSFORMERS_VERSION) == "4.51.3":
            assert line == LINES_4_51_3[bug.id]
    elif bug.id in LINE_KEPT_AFTER_FIX and found is not None:
        # the fix changed another line (later releases may rewrite this one too): the range keeps it out
        assert match_known_bugs(str(found[0]), bug.function, bug.code) == []
    else:
        assert found is None  # the fix rewrote (or removed) the line


def test_find_in_source_looks_inside_the_named_function_only(tmp_path):
    target = tmp_path / get_bug(VIDEO).file
    target.parent.mkdir(parents=True)
    target.write_text(f"def other():\n    {get_bug(VIDEO).code} * 2\n\ndef get_rope_index():\n    return 0\n")
    assert find_in_source(VIDEO, root=tmp_path) is None
    target.write_text(f"class M:\n    def get_rope_index(self):\n        {get_bug(VIDEO).code} * 2\n")
    assert find_in_source(VIDEO, root=tmp_path) == (target, 3)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("4.51.3", [MASK_25]),
        ("4.49.0", [MASK_25]),
        ("4.52.0.dev0", [MASK_25]),
        ("4.52.1.dev0", []),
        ("4.48.2", []),
        ("4.52.1", []),
    ],
)
def test_the_matcher_needs_the_location_and_an_affected_release(version, expected):
    code = "            " + get_bug(MASK_25).code  # as a traceback prints it, indented
    got = match_known_bugs(
        QWEN25_FILE, "Qwen2_5_VLModel._prepare_4d_causal_attention_mask_with_cache_position", code, version
    )
    assert [m["id"] for m in got] == expected
    assert all(m["version"] == version and m["version_affected"] for m in got)


def test_a_location_on_a_fixed_release_is_returned_only_when_asked_and_marked():
    bug = get_bug(VIDEO)
    assert match_known_bugs(QWEN25_FILE, "get_rope_index", bug.code, "4.52.4") == []
    [match] = match_known_bugs(QWEN25_FILE, "get_rope_index", bug.code, "4.52.4", include_unaffected=True)
    assert match["id"] == VIDEO and match["version_affected"] is False
    assert set(KNOWN_BUG_COLUMNS) < set(match)


@pytest.mark.parametrize(
    ("file", "function", "code"),
    [
        ("/x/transformers/models/qwen2_vl/modeling_qwen2_vl.py", "get_rope_index", None),  # other family
        ("/x/mymodels/qwen2_5_vl/modeling_qwen2_5_vl.py", "get_rope_index", None),  # not a path suffix
        (QWEN25_FILE, "get_video_features", None),  # other function
        (QWEN25_FILE, "get_rope_index", "time_tensor = expanded_range * 2"),  # other line
    ],
)
def test_the_matcher_rejects_other_locations(file, function, code):
    code = get_bug(VIDEO).code if code is None else code
    assert match_known_bugs(file, function, code, "4.51.3") == []


def test_the_matcher_reads_both_families_and_defaults_to_the_installed_release():
    code = get_bug(MASK_2).code
    file = "C:\\env\\Lib\\site-packages\\transformers\\models\\qwen2_vl\\modeling_qwen2_vl.py"
    function = "_prepare_4d_causal_attention_mask_with_cache_position"
    assert [m["id"] for m in match_known_bugs(file, function, code, "4.48.0")] == [MASK_2]
    installed = match_known_bugs(file, function, code)
    assert [m["id"] for m in installed] == ([MASK_2] if get_bug(MASK_2).affects(TRANSFORMERS_VERSION) else [])


def test_the_matcher_refuses_bad_arguments():
    with pytest.raises(qd.InvalidArgumentError, match="not a version string"):
        match_known_bugs(QWEN25_FILE, "get_rope_index", "x", "four point five")
    with pytest.raises(qd.InvalidArgumentError, match="file must be a string"):
        match_known_bugs(Path(QWEN25_FILE), "get_rope_index", "x", "4.51.3")


def _video_run(family):
    model, processor = qd.tiny_model(family)
    inputs = qd.sample_inputs(processor, "video", second_per_grid_ts="tensor")
    with torch.no_grad():
        reference = model(**inputs).logits
    model.to("cuda:0")
    inputs = inputs.to("cuda:0")

    def run():
        with torch.no_grad():
            return model(**inputs).logits

    return model, run, reference


def _batched_run(family):
    model, processor = qd.tiny_model(family)
    inputs = qd.sample_inputs(processor, "batch")
    reference = copy.deepcopy(model).generate(**inputs, max_new_tokens=2, do_sample=False)
    dispatch_model(model, vision_apart_map(model))
    return model, lambda: model.generate(**inputs, max_new_tokens=2, do_sample=False), reference


REPRODUCTIONS = {
    VIDEO: (_video_run, "qwen2_5_vl"),
    MASK_25: (_batched_run, "qwen2_5_vl"),
    MASK_2: (_batched_run, "qwen2_vl"),
}


@pytest.mark.parametrize("bug", [get_bug(bug_id) for bug_id in REPRODUCTIONS], ids=lambda b: b.id)
def test_each_entry_reproduces_on_simulated_gpus_and_is_matched(bug):
    build, family = REPRODUCTIONS[bug.id]
    with qd.simulated_gpus(2):
        model, run, reference = build(family)
        if bug.affects(TRANSFORMERS_VERSION):
            with pytest.raises(RuntimeError) as caught:
                run()
            assert str(caught.value).startswith(SAME_DEVICE)
            frame = _raising_frame(caught.value)
            path, line = find_in_source(bug)
            assert (frame.filename, frame.lineno, frame.name) == (str(path), line, bug.function)
            matches = match_known_bugs(frame.filename, frame.name, frame.line, str(TRANSFORMERS_VERSION))
            assert [m["id"] for m in matches] == [bug.id]
        else:
            assert torch.equal(run().cpu(), reference)
