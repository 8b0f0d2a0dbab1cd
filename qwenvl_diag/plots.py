"""Matplotlib figures over the kit's frames. matplotlib is imported only when a plot is asked for."""

from __future__ import annotations

from .errors import QwenVLDiagError
from .placement.devices import device_order
from .placement.frames import device_map_frame, device_summary_frame, placement_flags

GIB = 2**30


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise QwenVLDiagError(
            "Plots need matplotlib: pip install 'qwenvl-diag[notebooks]' (or pip install matplotlib)."
        ) from error
    return plt


def _axes(plt, ax, size: tuple[float, float]):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def plot_placement(model_or_plan, ax=None):
    """A strip of every placed module in model order, coloured by device; flagged modules outlined in black,
    device changes marked by black lines. Returns the figure.

    >>> fig = qd.plot_placement(plan)
    """
    plt = _pyplot()
    frame = device_map_frame(model_or_plan)
    devices = sorted(set(frame["device"]), key=device_order)
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(devices)}
    ax = _axes(plt, ax, (12, 1.8))
    x = range(len(frame))
    ax.bar(x, 1, width=1.0, color=[colours[d] for d in frame["device"]], edgecolor="white", label="modules")
    risky = {m for flag in placement_flags(model_or_plan) for m in flag.modules}
    flagged = [
        i
        for i, name in enumerate(frame["module"])
        if any(name == m or name.startswith(m + ".") for m in risky)
    ]
    if flagged:
        ax.bar(flagged, 1, width=1.0, fill=False, edgecolor="black", hatch="//", linewidth=2, label="flagged")
    for i in range(1, len(frame)):
        if frame["device"].iat[i] != frame["device"].iat[i - 1]:
            ax.axvline(i - 0.5, color="black", linewidth=1.5)
    kinds = frame["kind"].tolist()
    starts = [i for i in range(len(kinds)) if i == 0 or kinds[i] != kinds[i - 1]]
    ax.set_xticks(starts, [kinds[i] for i in starts], rotation=45, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.5, len(frame) - 0.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[d]) for d in devices]
    columns = -(-len(devices) // 4)  # at most 4 rows: the legend fits the strip's height
    ax.legend(handles, devices, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=columns)
    title = getattr(model_or_plan, "model", None) or type(model_or_plan).__name__
    ax.set_title(f"{title}: {len(frame)} placed modules (hatched: flagged)", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


def plot_memory(model_or_plan, ax=None):
    """GiB placed on each device (blue) against its capacity where known (grey). Returns the figure.

    >>> fig = qd.plot_memory(plan)
    """
    plt = _pyplot()
    summary = device_summary_frame(model_or_plan)
    ax = _axes(plt, ax, (6, 3))
    x = list(range(len(summary)))
    ax.bar(x, summary["capacity"].fillna(0) / GIB, color="lightgrey", label="capacity")
    ax.bar(x, summary["bytes"] / GIB, color="tab:blue", label="placed")
    ax.set_xticks(x, summary["device"])
    ax.set_ylabel("GiB")
    ax.legend(fontsize=8)
    ax.set_title("Memory per device", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


OUTCOME_COLOURS = {"passed": "#b9e4bd", "failed": "#f6a5a5", "kit error": "#d0d0d0"}
"""Cell colour of `plot_sweep` per outcome (white: not run)."""
_SWEEP_READ = (
    "model",
    "gpus",
    "memory",
    "strategy",
    "transformers",
    "inputs",
    "inputs_on",
    "action",
    "outcome",
    "known_bug",
    "file",
    "line",
)
"""The columns of a sweep frame (`SWEEP_COLUMNS`) that `plot_sweep` reads."""


def _sweep_label(row) -> str:
    """What a failing cell says: its catalogue id without the family, else file:line, else the outcome."""
    if row.outcome == "passed":
        return ""
    if isinstance(row.known_bug, str):
        return row.known_bug.split("-", 1)[1] if "-" in row.known_bug else row.known_bug
    if isinstance(row.file, str):
        return f"{row.file.rsplit('/', 1)[-1]}:{row.line}"
    return "kit error" if row.outcome == "kit error" else "failed"


def plot_sweep(frame, ax=None):
    """A heatmap of a `qd.sweep` frame: one row per layout (model, GPUs, memory, strategy; and release
    when several), one column per inputs/action (and where the inputs were, when both), coloured by
    outcome (`OUTCOME_COLOURS`) and each failing cell annotated with its known bug (or the file:line of
    an unknown one). Returns the figure.

    >>> fig = qd.plot_sweep(qd.sweep(["Qwen/Qwen2.5-VL-7B-Instruct"], gpus=[1, 8], memory="24GiB"))
    """
    missing = [c for c in _SWEEP_READ if c not in getattr(frame, "columns", ())]
    if missing or frame.empty:
        raise QwenVLDiagError(
            f"plot_sweep takes a non-empty frame from qd.sweep; this one lacks {missing or 'rows'}."
        )
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    releases = frame["transformers"].nunique() > 1
    places = frame["inputs_on"].nunique() > 1
    layouts, columns, cells = {}, {}, {}
    for row in frame.itertuples(index=False):
        layout = f"{row.model.rsplit('/', 1)[-1]}  {row.gpus}x{row.memory}  {row.strategy}"
        layout += f"  ({row.transformers})" if releases else ""
        column = f"{row.inputs}\n{row.action}" + (f"\non {row.inputs_on}" if places else "")
        layouts.setdefault(layout, len(layouts))
        columns.setdefault(column, len(columns))
        cells[layouts[layout], columns[column]] = row
    outcomes = list(OUTCOME_COLOURS)
    values = [[float("nan")] * len(columns) for _ in layouts]
    for (i, j), row in cells.items():
        values[i][j] = outcomes.index(row.outcome)
    ax = _axes(plt, ax, (1.6 + 1.25 * len(columns), 0.8 + 0.32 * len(layouts)))
    colours = ListedColormap(list(OUTCOME_COLOURS.values())).with_extremes(bad="white")
    ax.imshow(values, cmap=colours, vmin=-0.5, vmax=len(outcomes) - 0.5, aspect="auto")
    for (i, j), row in cells.items():
        ax.text(j, i, _sweep_label(row), ha="center", va="center", fontsize=6.5, color="#1a1a1a")
    ax.set_xticks(range(len(columns)), list(columns), fontsize=8)
    ax.set_yticks(range(len(layouts)), list(layouts), fontsize=7)
    ax.xaxis.tick_top()
    ax.set_xticks([x - 0.5 for x in range(1, len(columns))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(layouts))], minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in OUTCOME_COLOURS.values()]
    ax.legend(handles, outcomes, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    failed = int((frame["outcome"] != "passed").sum())
    ax.set_title(f"{len(frame)} scenarios, {failed} not passed", fontsize=10, pad=28)
    ax.figure.tight_layout()
    return ax.figure
