"""Which catalogue entries a pasted failure's facts point to, best first, each with a score, the evidence
it rests on, what speaks against it, what would confirm it and a confidence. Pure data: the catalogue
(`qwenvl_diag.bugs`), its presets and `read_facts`.

The score adds points per piece of evidence, in tiers so that stronger evidence wins:

1. **Where it failed, exactly** (`LINE`, 100): the entry's line in the reported release's file (or in a
   generated copy of it), or its code line in a frame; the code quoted elsewhere in the text counts
   `CODE_QUOTED` (95), a line number that is the entry's line in some release, with no release reported,
   `LINE_SOME_RELEASE` (90).
2. **Near where it failed, or named by its report**: a link to one of the entry's own issues or pull
   requests (`REFERENCED`, 50: "Fixes https://github.com/huggingface/transformers/issues/33816",
   `owner/repo#33816`: the thread that reported or fixed it); a quoted span of lines of its file that holds
   its line (`LINE_SPAN`, 40: a GitHub link's `#L1687-L1695`, "lines 1687-1695"); the function it failed
   in (`FUNCTION`, 30): the traceback ends in the entry's function in its file (and the frame shows no
   other code line); a function of its own name, quoted in words, `NAMED`, 20.
3. **The error** against the entry's signature: its op (`OP`, 10; every torch wording is mapped to its
   op, a wrapper's to the wrapper's, a wrapper quoted in words too) and its kind of device pair
   (`DEVICES`, 10; `npu`, `xpu`, `mps` and `hpu` count as GPUs); each is -10 when it differs.
4. **The context**: the family (`FAMILY`, 15, from a checkpoint, a file, a class name; another family
   `FAMILY_OTHER`, -60); the release (`RELEASE`, 15 when affected; `RELEASE_NOT`, -65 when not, so that a
   function with the op, the devices and the family is then no candidate; a stated range, or the one a
   stated tool release requires (`pins`), `RANGE`, 8, when it holds an affected release, `RANGE_NOT`,
   -30, when it cannot); the cues (`CUE`, 5 each: video, a batch, text only, FSDP, a distinctive name of
   its code line mentioned, transformers' warning that the inputs are on another device for a usage
   entry; an inference report against an FSDP2 training bug, `CUE_AGAINST`, -20).

A span or a function does not outscore a line with the same context, so the line wins whatever the rest
says. An entry without where it failed is a candidate only with its op named in its
family (or, with no family said, an op no other family's entries raise in), or, for a device error told in
words (or a warning that says how it came about; with no error line, a name of its line or a placement
across devices), with its family and an affected release or a cue. Equal scores at the top are said as a
tie (`tied`), never silently ordered.

Confidence: "high" for a line (tier 1) with nothing against it and no tie; "medium" for a line with
something against it or tied, or for its report linked, a span, the function, its name or the error's op
with nothing against it; "low" for the rest (context and cues only). `benchmarks/bench_explain.py`
measures what each level means on the corpus of real pastes (`tests/data/explain_corpus`).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..bugs import CATALOGUE, KnownBug, get_bug
from ..presets import PRESETS
from .lines import line_in, line_index, releases_with_line
from .text import IN_TRANSFORMERS, installed_package

LINE, CODE_QUOTED, LINE_SOME_RELEASE, REFERENCED, LINE_SPAN, FUNCTION, NAMED = 100, 95, 90, 50, 40, 30, 20
OP, DEVICES = 10, 10
FAMILY, FAMILY_OTHER = 15, -60
RELEASE, RELEASE_NOT, RANGE, RANGE_NOT = 15, -65, 8, -30
CUE, CUE_AGAINST = 5, -20
CONFIDENCES = ("high", "medium", "low")


def _where(bug: KnownBug, facts: dict[str, Any], text: str) -> tuple[int, list[str]]:
    """Points and evidence for where it failed: any frame of its file with its code, or its line in the
    reported release (with none reported, in any release); the code quoted; the function it ended in."""
    frames = [facts["library_frame"]] if facts["library_frame"] else []
    frames += [frame for frame in facts["frames"] if frame is not facts["library_frame"]]
    reported = facts["versions"].get("transformers")
    release = _release(reported)
    best: tuple[int, list[str]] = (0, [])
    for frame in frames:
        if not _in_file(frame["file"], bug):
            continue
        own_function = frame["function"] in (None, bug.function)
        if own_function and bug.quoted_in(frame["code"] or ""):
            return LINE, [f"the traceback runs through its line: {bug.function} in {bug.file}: {bug.code}"]
        if frame.get("end"):  # a span of lines quoted ("#L1687-L1695"): its line among them
            if fitting := _releases_in_span(bug.id, frame["line"], frame["end"], release):
                span = f"lines {frame['line']}-{frame['end']} of {bug.file}"
                best = max(best, (LINE_SPAN, [f"{span} hold its line in transformers {_span(fitting)}"]))
        elif frame["line"] is not None and release:
            # the release's own file has its code on that line, whatever the frame calls the function
            if line_in(bug.id, release) == frame["line"]:
                return LINE, [f"line {frame['line']} of {bug.file} in {reported} is its line ({bug.code})"]
        elif (
            own_function
            and frame["line"] is not None
            and (fitting := releases_with_line(bug.id, frame["line"]))
        ):
            evidence = [f"line {frame['line']} of {bug.file} is its line in transformers {_span(fitting)}"]
            best = max(best, (LINE_SOME_RELEASE, evidence))
        # only where it ended: every traceback runs through some forward of the file, so a frame that
        # shows another code line there is not this bug's
        shown = frame["code"] not in (None, "", "...")
        if frame is facts["library_frame"] and frame["function"] == bug.function and not shown:
            best = max(best, (FUNCTION, [f"the traceback ends in {bug.function} in {bug.file}"]))
    # its code quoted, unless only under a frame of another file (the same line in another model's code)
    elsewhere = [f for f in frames if bug.quoted_in(f["code"] or "") and not _in_file(f["file"], bug)]
    if best[0] < CODE_QUOTED and bug.quoted_in(text) and not elsewhere:
        return CODE_QUOTED, [f"the text quotes its line: {bug.code}"]
    if best[0] < REFERENCED and (linked := _linked_reports(text) & _reports(bug.id)):
        return REFERENCED, [f"the text links its report, {', '.join(sorted(linked))}"]
    if not best[0] and bug.function != "forward" and re.search(rf"\b{bug.function}\b", text):
        return NAMED, [f"the text names its function, {bug.function}"]
    return best


# an issue or pull request: a GitHub link, or `owner/repo#123` as GitHub writes a cross-reference
_REPORT = re.compile(r"github\.com/(?P<repo>[\w.-]+/[\w.-]+)/(?:issues|pull)/(?P<number>\d+)")
_CROSS_REFERENCE = re.compile(r"(?<![\w/.-])(?P<repo>[\w.-]+/[\w.-]+)#(?P<number>\d+)\b")


def _linked_reports(text: str) -> set[str]:
    """The issues and pull requests a text links, as "owner/repo#123" (GitHub's own spelling, lower case)."""
    found = [*_REPORT.finditer(text), *_CROSS_REFERENCE.finditer(text)]
    return {f"{match['repo'].lower()}#{match['number']}" for match in found}


@functools.cache
def _reports(bug_id: str) -> frozenset[str]:
    """The issues and pull requests among an entry's references, as `_linked_reports` spells them."""
    return frozenset(_linked_reports(" ".join(get_bug(bug_id).references)))


def _in_file(path: str, bug: KnownBug) -> bool:
    """Whether `path` is the entry's file: its path inside transformers ends it, or, quoted bare
    ("modeling_qwen2_5_vl.py"), its name is the file's."""
    if "/" not in path and "\\" not in path:
        return any(path == file.rsplit("/", 1)[-1] for file in bug.files)
    # another installed package's copy of the file (its own layout `<package>/models/qwen2_vl/...`) is the
    # package's code, whatever its line holds
    return installed_package(path) in (None, "transformers") and bug.in_file(path)


def _releases_in_span(bug_id: str, first: int, last: int, release: str | None) -> list[str]:
    """The releases (only `release`, when one is reported) whose file has the entry's code on a line
    from `first` to `last`."""
    releases = [release] if release else list(line_index())
    return [r for r in releases if (line := line_in(bug_id, r)) is not None and first <= line <= last]


def _release(version: str | None) -> str | None:
    """A reported transformers version as the release it is or leads to ("4.51.3"; "4.45.0.dev0" ->
    "4.45.0", as the index and `KnownBug.affects` count it; "4.49", as people write it, -> "4.49.0");
    None when none, or not a version."""
    try:
        release = Version(version) if version else None
    except InvalidVersion:
        return None
    return None if release is None else ".".join(map(str, (*release.release, 0, 0)[:3]))


def _span(releases: list[str]) -> str:
    return releases[0] if len(releases) == 1 else f"{releases[0]} to {releases[-1]}"


def _same_op(reported: str, op: str) -> bool:
    """Whether the error's op is the signature's: `masked_scatter_` is `masked_scatter`, a convolution's
    type check (`convolution`) any `conv*`, indexing's wording any `index*` op."""
    reported, op = reported.rstrip("_"), op.rstrip("_")
    if reported == "convolution":
        return op.startswith("conv")
    if reported == "index":
        return op.startswith("index")
    return reported == op


def _signature(bug: KnownBug, facts: dict[str, Any]) -> tuple[int, list[str], list[str], bool]:
    """Points, evidence and contradictions from the error line against the entry's signature, and
    whether the error names the entry's op."""
    points, evidence, against, op_named = 0, [], [], False
    if facts["error_kind"] in (None, "other"):
        return points, evidence, against, op_named
    signature = bug.signature
    if not facts["device_pair"]:
        pass
    elif facts["device_pair"] == signature.devices:
        points += DEVICES
        evidence.append(
            f"the error mixes {facts['device_pair']} devices ({', '.join(facts['devices'])}), as it does"
        )
    elif facts["device_pair"]:
        points -= DEVICES
        against.append(f"the error mixes {facts['device_pair']} devices; this bug mixes {signature.devices}")
    if facts["op"] and any(_same_op(facts["op"], op) for op in signature.ops):
        points += OP
        op_named = True
        evidence.append(f"the error names its op, {facts['op']}")
    elif facts["op"]:
        points -= OP
        against.append(f"the error is {facts['op']}'s; this bug's op is {signature.op}")
    return points, evidence, against, op_named


def _release_points(bug: KnownBug, facts: dict[str, Any]) -> tuple[int, list[str], list[str], list[str]]:
    """Points, evidence, contradictions and what to confirm from the reported release or range."""
    reported = facts["versions"].get("transformers")
    release = _release(reported)
    if release is not None:
        if bug.affects(release):
            return RELEASE, [f"transformers {reported} is affected ({bug.affected})"], [], []
        fixed = f", fixed in {bug.fixed_in}" if bug.fixed_in else ""
        return RELEASE_NOT, [], [f"transformers {reported} is not affected ({bug.affected}{fixed})"], []
    confirm = ["the transformers version (`transformers env` or `pip show transformers`)"]
    if spec := facts.get("transformers_range"):
        stated = SpecifierSet(spec)
        # a range a tool release implies says whose requirement it is
        spec += f" ({facts['range_from']}'s requirement)" if facts.get("range_from") else ""
        if any(stated.contains(r) and bug.affects(r) for r in line_index()):
            return RANGE, [f"transformers{spec} includes affected releases ({bug.affected})"], [], confirm
        return RANGE_NOT, [], [f"transformers{spec} includes no affected release ({bug.affected})"], confirm
    return 0, [], [], confirm


def _cues(bug: KnownBug, facts: dict[str, Any], text: str) -> tuple[int, list[str], list[str]]:
    """Points from what the text says was run against what the entry's scenario runs."""
    preset = PRESETS.get(bug.scenario, {})
    points, evidence, against = 0, [], []
    if preset.get("engine") == "fsdp2":
        if "fsdp" in facts["engine"]:
            points += CUE
            evidence.append("the text shows FSDP, which it needs")
        elif facts["action"] == "inference":  # a text silent about it says nothing against it
            points += CUE_AGAINST
            against.append("the report is inference; this bug needs FSDP2 training with CPU offload")
    wanted = preset.get("inputs")
    if wanted in ("video", "batch", "text") and wanted in facts["inputs"]:
        points += CUE
        evidence.append(f"the text names {wanted} inputs, which it needs")
    if mentioned := _mentioned(bug, text):
        points += CUE
        evidence.append(f"the text mentions {', '.join(mentioned)}, of its line")
    if bug.kind == "usage" and "inputs-on-another-device" in facts["warnings"]:
        points += CUE
        evidence.append("transformers warned that the inputs are on another device than the model")
    return points, evidence, against


def _mentioned(bug: KnownBug, text: str) -> list[str]:
    """The distinctive names of the entry's line that the text mentions."""
    return [name for name in _distinctive_names(bug.id) if re.search(rf"\b{name}\b", text)]


@functools.cache
def _families_naming(name: str) -> frozenset[str]:
    """The families whose catalogue entries' lines hold `name`."""
    return frozenset(bug.families[0] for bug in CATALOGUE if name in _names(bug.code))


@functools.cache
def _families_raising(op: str) -> frozenset[str]:
    """The families whose catalogue entries raise in `op`."""
    return frozenset(bug.families[0] for bug in CATALOGUE if bug.signature and op in bug.signature.ops)


@functools.cache
def _distinctive_names(bug_id: str) -> tuple[str, ...]:
    """The names in an entry's code line that few entries' lines hold (at most three), or no other entry's
    of its families: `second_per_grid_t`, `pos_embed`, Qwen2.5-VL's `rope_deltas`; not `self`,
    `hidden_states` or `torch`."""
    counts = Counter(name for bug in CATALOGUE for name in set(_names(bug.code)))
    bug = next(bug for bug in CATALOGUE if bug.id == bug_id)
    kin = [other for other in CATALOGUE if other.id != bug.id and set(other.runs_in) & set(bug.runs_in)]
    in_kin = Counter(name for other in kin for name in set(_names(other.code)))
    return tuple(
        name
        for name in _names(bug.code)
        if (counts[name] <= 3 or not (in_kin[name] or name in _FORWARD_NAMES))
        and len(name) >= 6
        and "_" in name
    )


# the names every forward of these models passes along: in a text they say nothing about which line ran
_FORWARD_NAMES = frozenset(
    ("hidden_states", "input_ids", "inputs_embeds", "attention_mask", "position_ids", "pixel_values")
)


def _names(code: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"[A-Za-z_]\w*", code)))


def _candidate(bug: KnownBug, facts: dict[str, Any], text: str) -> dict[str, Any] | None:
    where, evidence = _where(bug, facts, text)
    points, signature_evidence, against, op_named = _signature(bug, facts)
    family = facts["family"]
    in_family = family in bug.runs_in
    if in_family:
        points += FAMILY
        evidence.append(f"the model is {family}")
    elif family:
        points += FAMILY_OTHER
        against.append(f"the model is {family}; this bug is in {', '.join(bug.runs_in)}")
    release_points, release_evidence, release_against, confirm = _release_points(bug, facts)
    cue_points, cue_evidence, cue_against = _cues(bug, facts, text)
    # without where it failed: the op named, or the devices seen, in its family; or a device error told
    # in words (or a warning that says how it came about, or a name of its line mentioned) in its family,
    # with an affected release or a cue; never when a traceback ended elsewhere
    # a traceback that ended in transformers ended there; one cut in the caller's code says nothing
    frame = facts["library_frame"]
    ended = frame is not None and frame["function"] is not None and IN_TRANSFORMERS.search(frame["file"])
    mentioned = _mentioned(bug, text)
    told = (facts["error_kind"] == "device" and not facts["devices"]) or bool(facts["warnings"])
    # with no error line (it was in the title, or a screenshot), a name of its line, or a placement across
    # devices (a device_map, GPUs, devices named), tells what the error was about
    placed = "device_map" in facts["engine"] or (facts["gpus"]["count"] or 0) > 1 or bool(facts["devices"])
    told = told or (facts["error_kind"] is None and (bool(mentioned) or placed))
    # with no family said, an op or a name that only one family's entries hold stands for it
    # (masked_scatter_: Qwen2-VL's image merge; second_per_grid_t: Qwen2.5-VL's video rope)
    only_ones = [_families_raising(bug.signature.op)] if op_named else []
    only_ones += [_families_naming(name) for name in mentioned]
    known = in_family or (not family and any(len(families) == 1 for families in only_ones))
    if not where and (
        ended
        or not known
        or not (
            op_named
            or signature_evidence
            or (told and release_points >= 0 and (release_points > 0 or cue_points > 0))
        )
    ):
        return None
    if where < LINE_SOME_RELEASE:
        confirm.append(f"the traceback's last transformers frame: {bug.function} at `{bug.code}`")
    if bug.scenario:
        confirm.append(f"reproduce it: qwenvl-diag explain --run (the kit's scenario {bug.scenario!r})")
    against += release_against + cue_against
    return {
        **bug.row(),
        "score": where + points + release_points + cue_points,
        "evidence": evidence + signature_evidence + release_evidence + cue_evidence,
        "against": against,
        "confirm": confirm,
        "tier": _tier(where, op_named),
    }


def _tier(where: int, op_named: bool) -> str:
    """The strongest kind of evidence: "line", "reference" (a link to its own issue or pull request),
    "function" (a span of lines holding its line, or the function a traceback ended in), "name" (its
    function named in words), "op" or "context"."""
    if where >= LINE_SOME_RELEASE:
        return "line"
    if where == REFERENCED:
        return "reference"
    return "function" if where >= FUNCTION else "name" if where else "op" if op_named else "context"


def _confidence(candidate: dict[str, Any], tied: bool) -> str:
    if candidate["tier"] == "line":
        return "high" if not candidate["against"] and not tied else "medium"
    if candidate["tier"] in ("reference", "function", "name", "op") and not candidate["against"] and not tied:
        return "medium"
    return "low"


def rank(facts: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The catalogue entries `facts` (read from `text`) point to, best first, each with its `tier` (the
    strongest evidence: "line", "reference", "function", "name", "op" or "context"), `confidence` and
    `tied` (True when another shares the best score); [] when the text shows an error that is not about
    devices, or a model that is not Qwen-VL."""
    if facts["error_kind"] == "other":
        return []
    if facts["model_type"] and not facts["family"]:
        return []  # the failure runs in another model's code
    # a silent bug raises nothing, so no pasted error is one
    raising = (bug for bug in CATALOGUE if bug.signature is not None)
    candidates = [c for bug in raising if (c := _candidate(bug, facts, text)) is not None]
    candidates = sorted((c for c in candidates if c["score"] > 0), key=lambda c: -c["score"])
    top = candidates[0]["score"] if candidates else None
    tied = sum(c["score"] == top for c in candidates) > 1
    for candidate in candidates:
        candidate["tied"] = tied and candidate["score"] == top
        candidate["confidence"] = _confidence(candidate, candidate["tied"])
    return candidates
