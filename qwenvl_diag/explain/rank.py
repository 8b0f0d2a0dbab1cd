"""Which catalogue entries a pasted failure's facts point to, best first, each with a score, the evidence
it rests on and what would confirm it. Pure data: the catalogue (`qwenvl_diag.bugs`) and `read_facts`."""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version

from ..bugs import CATALOGUE, KnownBug
from .lines import line_in, releases_with_line

# Points per piece of evidence. An entry is a candidate only with evidence of *where* it failed (its
# library line, its function, or its code quoted) or, from the error line alone, its signature with the
# op named or the family known.
WHERE_LINE, WHERE_FUNCTION, CODE_QUOTED = 50, 25, 35
SIGNATURE_DEVICES, SIGNATURE_OP, FAMILY = 10, 10, 10
VERSION_AFFECTED, VERSION_UNAFFECTED = 15, -45
FAMILY_OTHER = -60


def _where(bug: KnownBug, facts: dict[str, Any], text: str) -> tuple[int, list[str]]:
    """Points and evidence for where it failed: the deepest library frame, any frame (its code, or its
    line number in the reported release or, with none reported, in any release), the quoted code."""
    frames = [facts["library_frame"]] if facts["library_frame"] else []
    frames += [frame for frame in facts["frames"] if frame is not facts["library_frame"]]
    reported = facts["versions"].get("transformers")
    release = _release(reported)
    for frame in frames:
        if not _in_file(frame["file"], bug) or frame["function"] not in (None, bug.function):
            continue
        if bug.quoted_in(frame["code"] or ""):
            return WHERE_LINE, [f"the traceback ends at its line: {bug.function} in {bug.file}: {bug.code}"]
        if frame["line"] is not None and release:
            if line_in(bug.id, release) == frame["line"]:
                return WHERE_LINE, [
                    f"line {frame['line']} of {bug.file} in {reported} is its line ({bug.code})"
                ]
        elif frame["line"] is not None and (fitting := releases_with_line(bug.id, frame["line"])):
            return WHERE_LINE, [
                f"line {frame['line']} of {bug.file} is its line in transformers {_span(fitting)}"
            ]
        # only where it ended: every traceback runs through some forward of the file
        if frame is facts["library_frame"] and frame["function"] == bug.function:
            return WHERE_FUNCTION, [f"the traceback ends in {bug.function} in {bug.file}"]
    if bug.quoted_in(text):
        return CODE_QUOTED, [f"the text quotes its line: {bug.code}"]
    return 0, []


def _in_file(path: str, bug: KnownBug) -> bool:
    """Whether `path` is the entry's file: its path inside transformers ends it, or, quoted bare
    ("modeling_qwen2_5_vl.py"), its name is the file's."""
    if "/" not in path and "\\" not in path:
        return any(path == file.rsplit("/", 1)[-1] for file in bug.files)
    return bug.in_file(path)


def _release(version: str | None) -> str | None:
    """A reported transformers version as the release it is or leads to ("4.51.3"; "4.45.0.dev0" ->
    "4.45.0", as the index and `KnownBug.affects` count it); None when none, or not a version."""
    try:
        return Version(version).base_version if version else None
    except InvalidVersion:
        return None


def _span(releases: list[str]) -> str:
    return releases[0] if len(releases) == 1 else f"{releases[0]} to {releases[-1]}"


def _signature(bug: KnownBug, facts: dict[str, Any]) -> tuple[int, list[str], list[str], bool]:
    """Points, evidence and contradictions from the error line against the entry's signature, and
    whether the error names the entry's op."""
    points, evidence, against, op_named = 0, [], [], False
    if facts["error_kind"] != "device":
        return points, evidence, against, op_named
    signature = bug.signature
    if facts["device_pair"] == signature.devices:
        points += SIGNATURE_DEVICES
        evidence.append(
            f"the error mixes {facts['device_pair']} devices ({', '.join(facts['devices'])}), as it does"
        )
    elif facts["device_pair"]:
        against.append(f"the error mixes {facts['device_pair']} devices; this bug mixes {signature.devices}")
    if facts["op"] and facts["op"].rstrip("_") == signature.op.rstrip("_"):
        points += SIGNATURE_OP
        op_named = True
        evidence.append(f"the error names its op, {facts['op']}")
    elif facts["wrapper"] and signature.wrapper is None:
        against.append(f"the error names {facts['wrapper']}; this bug's op ({signature.op}) names no wrapper")
    return points, evidence, against, op_named


def _candidate(bug: KnownBug, facts: dict[str, Any], text: str) -> dict[str, Any] | None:
    where, evidence = _where(bug, facts, text)
    points, signature_evidence, against, op_named = _signature(bug, facts)
    family = facts["family"]
    if family in bug.families:
        points += FAMILY
        evidence.append(f"the model is {family}")
    elif family:
        points += FAMILY_OTHER
        against.append(f"the model is {family}; this bug is in {', '.join(bug.families)}")
    # without where it failed, only a signature that names the op (a wrapper's message does), or one
    # seen in this bug's family, points to it; and not when a traceback says it ended somewhere else
    ended = facts["library_frame"] is not None and facts["library_frame"]["function"] is not None
    if not where and (ended or not (signature_evidence and (op_named or family in bug.families))):
        return None
    release = _release(facts["versions"].get("transformers"))
    confirm = []
    if release is None:
        confirm.append("the transformers version (`transformers env` or `pip show transformers`)")
    elif bug.affects(release):
        points += VERSION_AFFECTED
        evidence.append(f"transformers {facts['versions']['transformers']} is affected ({bug.affected})")
    else:
        points += VERSION_UNAFFECTED
        fixed = f", fixed in {bug.fixed_in}" if bug.fixed_in else ""
        against.append(
            f"transformers {facts['versions']['transformers']} is not affected ({bug.affected}{fixed})"
        )
    if where < WHERE_LINE:
        confirm.append(f"the traceback's last transformers frame: {bug.function} at `{bug.code}`")
    if bug.scenario:
        confirm.append(f"reproduce it: qwenvl-diag explain --run (the kit's scenario {bug.scenario!r})")
    return {
        **bug.row(),
        "score": where + points,
        "evidence": evidence + signature_evidence,
        "against": against,
        "confirm": confirm,
    }


def rank(facts: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The catalogue entries `facts` (read from `text`) point to, best first; [] when the text shows an
    error that is not about devices, or a model that is not Qwen-VL."""
    if facts["error_kind"] == "other":
        return []
    if facts["model_type"] and not facts["family"]:
        return []  # the failure runs in another model's code
    # a silent bug raises nothing, so no pasted error is one
    raising = (bug for bug in CATALOGUE if bug.signature is not None)
    candidates = [c for bug in raising if (c := _candidate(bug, facts, text)) is not None]
    candidates = [c for c in candidates if c["score"] > 0]
    return sorted(candidates, key=lambda c: -c["score"])
