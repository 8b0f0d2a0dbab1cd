"""The markdown a maintainer pastes in reply to a report: what it is, where it was fixed, the workaround,
how to check; or, when nothing in the catalogue fits, what the reporter should add."""

from __future__ import annotations

from typing import Any

from .facts import DEVICE_ERROR_KINDS


def _reported(facts: dict[str, Any]) -> str:
    versions = facts["versions"]
    parts = [f"transformers {versions['transformers']}" if "transformers" in versions else None]
    parts += [f"{name} {versions[name]}" for name in ("accelerate", "torch") if name in versions]
    gpus = facts["gpus"]
    if gpus["count"] or gpus["type"]:
        parts.append(f"{gpus['count'] or '?'} x {gpus['type'] or 'GPU'}")
    return ", ".join(part for part in parts if part)


def reply_for(
    facts: dict[str, Any],
    candidates: list[dict[str, Any]],
    scenario: dict[str, Any] | None,
    notes: tuple[str, ...] = (),
) -> str:
    """The reply for the best candidate (and a line for each runner-up), then the `notes`."""
    best = candidates[0]
    references = ", ".join(best["references"])
    usage = best["kind"] == "usage"
    what = "usage error (the caller's, in every release)" if usage else "transformers bug"
    affected = f"transformers `{best['affected']}`"
    if best["fixed_in"]:
        affected += f"; **fixed in {best['fixed_in']}**"
    lines = [
        f"This looks like a known {what}, **{best['id']}**: {best['title']}.",
        "",
        f"- **Confidence**: {best['confidence']} ({_why(best)}).",
        f"- **What happens**: {best['trigger']}",
        f"- **Where**: `{best['code']}` in `{best['location']}`.",
        f"- **Affected**: {affected} ({references}).",
    ]
    if reported := _reported(facts):
        lines.append(f"- **Your report**: {reported}.")
    if best["against"]:
        lines.append(f"- **But**: {'; '.join(best['against'])}.")
    lines += [f"- **Note**: {note}." for note in notes]
    if best["fixed_in"]:
        lines.append(f"- **Fix**: upgrade to transformers >= {best['fixed_in']}.")
    lines.append(
        f"- **Fix**: {best['workaround']}."
        if usage
        else f"- **Workaround** on an affected release: {best['workaround']}."
    )
    check = ["`qwenvl-diag explain --run traceback.txt` (qwenvl-diag) reproduces it on simulated GPUs"]
    if scenario:
        check.append(f"or `qwenvl-diag doctor --preset {scenario['preset']}`")
    lines.append(f"- **How to check** (no GPU needed): {' '.join(check)}.")
    if tools := [tool for tool in facts["tools"] if tool["where"] != "named"]:
        lines.append(f"- **Reached through**: {', '.join(tool['tool'] for tool in tools)}.")
    if best["tied"]:
        tied = [c["id"] for c in candidates if c["tied"]]
        lines += [
            "",
            f"**A tie**: {', '.join(tied)} fit the text equally (score {best['score']}); the order above is "
            "the catalogue's, not the evidence's. The full traceback or the transformers version tells them "
            "apart.",
        ]
    if len(candidates) > 1:
        others = ", ".join(f"{c['id']} (score {c['score']})" for c in candidates[1:])
        lines += ["", f"Other candidates: {others}."]
    return "\n".join(lines)


def _why(best: dict[str, Any]) -> str:
    """What the confidence rests on, in a few words."""
    basis = {
        "line": "the text shows its line",
        "reference": "the text links its own issue or pull request",
        "function": "the traceback ends in its function, or the text quotes lines around its line",
        "name": "the text names its function",
        "op": "the error names its op",
        "context": "only the family, the release and what was run point to it",
    }[best["tier"]]
    if best["against"]:
        basis += ", but something speaks against it"
    if best["tied"]:
        basis += ", tied with another entry"
    return basis


def beyond_catalogue(facts: dict[str, Any], answer: dict[str, Any], notes: tuple[str, ...] = ()) -> str:
    """The reply when the answer is not a catalogue entry: whose code raised, the mechanism, where to
    report it and the nearest scenario the kit runs."""
    lines = [f"Not a known transformers bug of the catalogue: {answer['summary']}.", ""]
    lines.append(f"- **Confidence**: {answer['confidence']}.")
    if answer["kind"] == "tool":
        tool = next((t for t in facts["tools"] if f"tool:{t['tool']}" == answer["label"]), None)
        if tool:
            lines.append(f"- **What such code does**: {tool['mechanism']}.")
            lines.append(f"- **Report it to**: {tool['report']}, with the whole traceback and the versions.")
            if tool["scenario"]:
                lines.append(
                    "- **The nearest scenario the kit runs**: "
                    f"`qwenvl-diag doctor --preset {tool['scenario']}` (the same kind of device mix, in "
                    "transformers' own code)."
                )
        else:
            lines.append(f"- **Report it to**: {answer['whose']}'s issue tracker, with the whole traceback.")
    elif answer["kind"] == "transformers":
        lines += [
            "- **What it is**: transformers' own code hands an op tensors on two devices, at a place no "
            "catalogued bug raises; it may be a new bug.",
            "- **Report it to**: https://github.com/huggingface/transformers/issues, with the whole "
            "traceback, `transformers env`, the `device_map` (or `model.hf_device_map`) and what was run.",
            "- **Find it on simulated GPUs**: `qwenvl-diag sweep` over the family's layouts, or "
            "`qwenvl-diag doctor` with the reported layout.",
        ]
    else:
        lines += [
            "- **What it is**: the code that handed the op its tensors is the caller's, not a library's: "
            "move the inputs to the device of the module that takes them (`inputs.to(model.device)` for a "
            "model on one device; the first module's device under a `device_map`).",
            "- **How to check**: `qwenvl-diag doctor --preset inputs-on-cpu` shows the same mix.",
        ]
    if reported := _reported(facts):
        lines.append(f"- **Your report**: {reported}.")
    lines += [f"- **Note**: {note}." for note in notes]
    return "\n".join(lines)


def not_recognised(facts: dict[str, Any], notes: tuple[str, ...] = ()) -> str:
    """The reply when no catalogue entry fits: why, what limited the match (`notes`), and what would
    help."""
    if facts["error_kind"] == "other":
        why = f"the error is not about devices ({facts['error']})"
    elif facts["model_type"] and not facts["family"]:
        why = f"the failure is in `{facts['model_type']}`'s code, not a Qwen-VL model's"
    elif facts["error_kind"] in DEVICE_ERROR_KINDS:
        why = "it is a device error, but no known Qwen-VL bug raises it where this one did"
    else:
        why = "no device error was found in the text"
    wanted = [
        "the whole traceback, from `Traceback (most recent call last)` to the error line",
        "`transformers env` (or `pip list | grep -E 'transformers|accelerate|torch|qwen'`)",
        "how the model was loaded (`device_map`, `max_memory`, the number of GPUs) and what was run "
        "(`generate` or a forward, image / video / text, batch size)",
    ]
    return "\n".join(
        [f"Not recognised as a known Qwen-VL device bug: {why}.", ""]
        + [f"Note: {note}.\n" for note in notes]
        + ["What would help:"]
        + [f"- {item}" for item in wanted]
    )
