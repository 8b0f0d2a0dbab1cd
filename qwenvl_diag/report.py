"""Render a Diagnosis: markdown for a GitHub issue, HTML for Jupyter. Plain string building only."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

GiB = 2**30


def short_path(filename: str) -> str:
    """A library file as `package/...` (what a maintainer recognises), else the path as given."""
    parts = Path(filename).parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    return filename


def markdown_table(frame: pd.DataFrame, columns: list[str], max_rows: int = 20) -> str:
    if frame.empty:
        return "_none_"
    shown = frame[columns].head(max_rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in shown.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return "\n".join(lines)


_SUMMARY_SHOWN = ["device", "modules", "params", "size", "share"]


def counted(number: int, noun: str) -> str:
    """ "1 row", "3 rows": a count with its noun."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def size_text(size: float) -> str:
    """Bytes as KiB / MiB / GiB, e.g. "1.5 GiB"."""
    for unit, scale in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def _readable_summary(summary: pd.DataFrame) -> pd.DataFrame:
    readable = summary.copy()
    readable["size"] = readable["bytes"].map(size_text)
    readable["params"] = readable["params"].map(lambda n: f"{n:,}")
    readable["share"] = readable["share"].map(lambda x: "" if pd.isna(x) else f"{100 * x:.2g}%")
    return readable


def _mismatch_lines(mismatch: dict) -> list[str]:
    return [
        f"- **op**: `{mismatch['op']}` on {mismatch['devices']}",
        f"- **module**: `{mismatch['module'] or '(top level)'}`",
        f"- **line**: `{short_path(mismatch['file'])}:{mismatch['line']}` in `{mismatch['function']}`",
        "",
        "```python",
        mismatch["code"],
        "```",
    ]


def _engine_lines(engine: dict) -> list[str]:
    if engine.get("engine") != "fsdp2":
        return []
    offload = engine["offload_policy"] or "none"
    buffers = ", non-persistent buffers on the host" if engine.get("host_buffers") else ""
    size = engine["world_size"]
    return [
        f"- engine: FSDP2 (fully_shard), world size {size}, offload policy: {offload}{buffers}",
        f"- FSDP units: {engine['wrap']}",
    ]


def markdown(diagnosis) -> str:
    """The paste-ready report (see Diagnosis.to_markdown)."""
    env = diagnosis.environment
    devices = env["devices"]
    status = "FAILED" if diagnosis.error else "passed"
    lines = [f"## qwenvl-diag: `{diagnosis.model}` {diagnosis.action} {status}", ""]
    if diagnosis.error:
        lines += [f"**Error**: `{diagnosis.error_type}: {diagnosis.error}`", ""]
    else:
        lines += ["No device error: every op saw tensors on one device (or on devices PyTorch accepts).", ""]
    if diagnosis.first_mismatch:
        lines += ["### Where devices mixed", *_mismatch_lines(diagnosis.first_mismatch), ""]
    if diagnosis.known_bugs:
        lines += ["### Known bug"]
        for bug in diagnosis.known_bugs:
            refs = ", ".join(bug.get("references", []) or [])
            lines.append(
                f"- **{bug['id']}**: {bug['title']} (transformers {bug['affected']}; "
                f"fixed in {bug['fixed_in']}). {refs}"
            )
        lines.append("")
    if diagnosis.notes:
        lines += [*[f"_Note: {note}._" for note in diagnosis.notes], ""]
    summary = diagnosis.frames.get("summary")
    if summary is not None and not summary.empty:
        shown = ["rank", *_SUMMARY_SHOWN] if "rank" in summary else _SUMMARY_SHOWN  # FSDP2: per rank
        lines += ["### Layout", markdown_table(_readable_summary(summary), shown), ""]
    flags = diagnosis.frames.get("flags")
    if flags is not None and not flags.empty:
        flags = flags.drop_duplicates("code")  # the same flag on every rank is said once
        lines += ["Risk flags:", *[f"- `{r.code}`: {r.why}" for r in flags.itertuples()], ""]
    if diagnosis.advice:
        lines += ["### What to do", *[f"- {a}" for a in diagnosis.advice], ""]
    gpus = f"{devices['gpus']} x {devices['memory_per_gpu'] / GiB:g} GiB" if devices["gpus"] else "none"
    lines += [
        "### Environment",
        f"- devices: {devices['kind']} GPUs: {gpus}",
        *_engine_lines(diagnosis.engine),
        *[f"- {k}: {v}" for k, v in env.items() if k != "devices"],
    ]
    return "\n".join(lines) + "\n"


def _details(title: str, frame: pd.DataFrame) -> str:
    body = frame.to_html(max_rows=30, index=False) if not frame.empty else "<p>none</p>"
    return f"<details><summary>{html.escape(title)} ({counted(len(frame), 'row')})</summary>{body}</details>"


def html_report(diagnosis, frames: bool = True) -> str:
    """A compact HTML view for Jupyter: the verdict, the line, the known bug, then (`frames`) the frames
    folded."""
    colour = "#b00020" if diagnosis.error else "#1b5e20"
    verdict = f"{diagnosis.error_type}: {diagnosis.error}" if diagnosis.error else "no device error"
    parts = [
        f"<div><h4 style='color:{colour}'>qwenvl-diag: {html.escape(diagnosis.model)} "
        f"{html.escape(diagnosis.action)}: {html.escape(verdict)}</h4>"
    ]
    mismatch = diagnosis.first_mismatch
    if mismatch:
        parts.append(
            f"<p>First mismatch: <code>{html.escape(mismatch['op'])}</code> on "
            f"{html.escape(mismatch['devices'])} "
            f"in module <code>{html.escape(mismatch['module'] or '(top level)')}</code> at "
            f"<code>{html.escape(short_path(mismatch['file']))}:{mismatch['line']}</code></p>"
            f"<pre>{html.escape(mismatch['code'])}</pre>"
        )
    for bug in diagnosis.known_bugs:
        parts.append(
            f"<p>Known bug <b>{html.escape(bug['id'])}</b>: {html.escape(bug['title'])} "
            f"(fixed in {html.escape(str(bug['fixed_in']))})</p>"
        )
    for note in diagnosis.notes:
        parts.append(f"<p><i>Note: {html.escape(note)}.</i></p>")
    if diagnosis.advice:
        parts.append("<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in diagnosis.advice) + "</ul>")
    for name, frame in diagnosis.frames.items() if frames else ():
        parts.append(_details(name, frame))
    return "".join(parts) + "</div>"
