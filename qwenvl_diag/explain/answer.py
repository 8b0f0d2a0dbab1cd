"""The one answer `explain` gives: a catalogue entry, or, beyond the catalogue, whose code raised (a tool
built on transformers, transformers itself in a bug the kit does not know, the caller's own code). Pure
data: the facts and the ranked candidates.

The order, strongest first: a catalogue entry whose line the text shows; a tool whose own code raised; a
tool whose code called the code that raised, when it is one that moves weights or inputs itself (a
quantizer, a pipeline, a node, ZeRO-3, a server, remote code); any other catalogue candidate; a tool that
called or is named; then where the raising frame is (transformers' code, a device error no entry
explains; the caller's code).
"""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version

from ..models.families import FAMILIES
from .facts import DEVICE_ERROR_KINDS
from .text import IN_TRANSFORMERS, installed_package, raising_frame

ANSWER_KEYS = ("label", "kind", "confidence", "whose", "summary")
"""Keys of `Explanation.answer`: `label` the catalogue id, "tool:<package>", "transformers:uncatalogued" or
"user"; `kind` "bug", "usage", "tool", "transformers" or "user"; `confidence` "high", "medium" or "low";
`whose` whose code raised or is at fault ("transformers", the tool, "the caller"); `summary` one line."""

# tools that move weights or inputs themselves: their frame in the stack is the cause even where
# transformers' code raised
_MOVERS = (
    "quantizer",
    "quantized weights",
    "pipeline",
    "node",
    "zero3",
    "server",
    "remote code",
    "model library",
)
# the evidence that a candidate's own trigger was seen (`rank._cues`): it outweighs an op no entry raises in
_CUED = ("the text names its function", "the text mentions", "the text shows FSDP", "transformers warned")


def _from_candidate(best: dict[str, Any]) -> dict[str, Any]:
    usage = best["kind"] == "usage"
    return {
        "label": best["id"],
        "kind": "usage" if usage else "bug",
        "confidence": best["confidence"],
        "whose": "the caller" if usage else "transformers",
        "summary": best["title"],
    }


def _from_tool(tool: dict[str, Any]) -> dict[str, Any]:
    confidence = {"raised": "high", "called": "medium", "named": "low"}[tool["where"]]
    verb = {"raised": "raised in", "called": "runs through", "named": "names"}[tool["where"]]
    return {
        "label": f"tool:{tool['tool']}",
        "kind": "tool",
        "confidence": confidence,
        "whose": tool["tool"],
        "summary": f"the failure {verb} {tool['tool']} ({tool['role']})",
    }


def _driver(tool: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The tool to answer for `tool`: ZeRO-3 only named where a trainer is named or called is the
    trainer's (it starts DeepSpeed with its own settings, and its maintainers answer first), else `tool`."""
    if tool["role"] == "zero3" and tool["where"] == "named":
        return next((t for t in tools if t["role"] == "trainer" and t["where"] != "raised"), tool)
    return tool


def decide(facts: dict[str, Any], candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The answer (`ANSWER_KEYS`) for `facts` and their ranked `candidates`; None when the text shows no
    device error it can place (or one in another model's code)."""
    best = candidates[0] if candidates else None
    tools = [tool for tool in facts["tools"] if tool["where"] != "listed"]
    # a function only named in the words is weak too: another package's code has functions of that name
    weak = best is None or best["tier"] in ("name", "op", "context")
    if facts["family"]:
        # transformers runs its own code for these families whatever `trust_remote_code` says; remote
        # code ran only where its frames (`transformers_modules`) show it
        tools = [tool for tool in tools if not (tool["role"] == "remote code" and tool["where"] == "named")]
    if best and best["tier"] == "line":
        return _from_candidate(best)
    for tool in tools:
        if (
            (tool["where"] == "raised" and tool["role"] != "remote code")
            or (tool["where"] == "called" and tool["role"] in _MOVERS)
            or (tool["where"] == "named" and tool["role"] in _MOVERS and weak)
        ):
            return _from_tool(_driver(tool, tools))
    if remote := next((tool for tool in tools if tool["where"] == "raised"), None):
        return _from_tool(remote)
    if preview := _preview_build(facts):
        return _uncatalogued(preview, "medium")
    cued = best is not None and any(e.startswith(_CUED) for e in best["evidence"])
    if best and best["tier"] == "context" and facts["op"] and facts["family"] and not cued:
        # the error names an op no entry of the family raises with: a bug the catalogue lacks
        return _uncatalogued(_no_entry(f"{facts['family']}'s code, at {facts['op']}"), _placed(facts))
    if best:
        return _from_candidate(best)
    if tools:
        return _from_tool(tools[0])
    if facts["error_kind"] not in DEVICE_ERROR_KINDS:
        return None
    frame = raising_frame(facts["frames"])
    if frame is None or (facts["model_type"] and not facts["family"]):
        return None
    where = f"{frame['file'].replace(chr(92), '/').rsplit('/', 1)[-1]}:{frame['line']} in {frame['function']}"
    if IN_TRANSFORMERS.search(frame["file"]):
        return _uncatalogued(_no_entry(f"transformers' {where}"), _placed(facts))
    if name := installed_package(frame["file"]):
        return {
            "label": f"tool:{name}",
            "kind": "tool",
            "confidence": "medium",
            "whose": name,
            "summary": f"the failure raised in {name}'s code ({where})",
        }
    return {
        "label": "user",
        "kind": "user",
        "confidence": "medium",
        "whose": "the caller",
        "summary": f"the caller's own code mixes devices at {where}",
    }


def _preview_build(facts: dict[str, Any]) -> str | None:
    """Why the transformers that raised is a preview of the family's code, which no release ships: a git
    ref the family's README told people to install before its first release (Qwen2.5-Omni's
    `transformers@f742a64`), code that uses the preview's own API (`Qwen2_5OmniModel`), or a reported
    release older than its first; None otherwise."""
    ref = facts["transformers_ref"]
    for family in FAMILIES.values():
        if ref and any(preview.startswith(ref) for preview in family.previews):
            return (
                f"transformers built from {ref}, the preview of {family.name}'s code its README installed "
                f"before its first release ({family.since}), which no release ships; install "
                f"transformers>={family.since} and rerun"
            )
    reported, family = facts["versions"].get("transformers"), FAMILIES.get(facts["family"] or "")
    if family and facts["preview_api"]:
        return (
            f"the code uses {', '.join(f'`{name}`' for name in facts['preview_api'])}, of the preview of "
            f"{family.name}'s code that its README installed before its first release ({family.since}), "
            f"which no release ships; install transformers>={family.since}, use its names and rerun"
        )
    try:
        older = reported and family and Version(Version(reported).base_version) < Version(family.since)
    except InvalidVersion:
        return None
    if not older:
        return None
    return (
        f"transformers {reported} predates {family.name}'s first release ({family.since}): its code came "
        f"from a preview build or a fork, which no release ships; install transformers>={family.since} "
        "and rerun"
    )


def _no_entry(where: str) -> str:
    return f"a device error in {where} that no catalogued bug explains"


def _placed(facts: dict[str, Any]) -> str:
    """How sure a "transformers:uncatalogued" answer is: medium with the family and the frames, else low."""
    return "medium" if facts["family"] and facts["frames"] else "low"


def _uncatalogued(summary: str, confidence: str) -> dict[str, Any]:
    return {
        "label": "transformers:uncatalogued",
        "kind": "transformers",
        "confidence": confidence,
        "whose": "transformers",
        "summary": summary,
    }
