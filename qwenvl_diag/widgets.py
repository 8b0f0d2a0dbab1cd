"""Notebook panels, thin over the public functions: set a control, and the frames and figures follow.

- `PlacementPanel`: checkpoint, GPUs, memory per GPU, strategy or explicit split points; the placement
  strip, the memory plot and the risk flags update on every change; "Run scenario" diagnoses the layout.
- `DiagnosisPanel`: one Diagnosis as tabs (its report, then each of its frames).
- `VerifyPanel`: a failure (a scenario preset, or your Scenario) and fixes; "Verify" runs `qd.verify`
  and shows the table coloured by verdict (`qd.style_verify`).
- `TriagePanel`: a paste box; "Explain" shows the facts, the known bugs and the reply (`qd.explain`),
  "Reproduce" runs the best candidate's scenario (here or in the version lab).

Every panel keeps its results on itself (`panel.plan`, `panel.diagnosis`, the figures as PNG bytes in
image widgets), so it works, and is tested, without a browser: set `panel.controls[...].value` and read
them back. ipywidgets is imported when a panel is made; without it the kit's error says what to install.

>>> panel = qd.widgets.PlacementPanel("Qwen/Qwen2.5-VL-7B-Instruct", gpus=8, strategy="balanced")
>>> panel                                   # in Jupyter: the controls, strip, memory plot and flags
>>> panel.controls["gpus"].value = 4        # re-plans, re-draws, re-flags
>>> diagnosis = panel.run()                 # the same as clicking "Run scenario"
"""

from __future__ import annotations

import base64
import html
import io

from ._compat import TRANSFORMERS_VERSION
from .choices import ACTIONS, INPUT_KINDS
from .diagnose import Diagnosis
from .errors import InvalidArgumentError, PlacementError, QwenVLDiagError
from .explain import Explanation, explain
from .fixes import CATALOGUE, resolve
from .models.catalog import resolve_checkpoint, shipped_checkpoints
from .placement import (
    STRATEGIES,
    DevicePlan,
    device_summary_frame,
    flags_frame,
    split_device_map,
)
from .plots import plot_memory, plot_placement
from .report import counted, html_report
from .running import run
from .scenario import PRESETS, Scenario, plan_scenario
from .tables import style_frame, style_verify
from .verify import verify
from .versions import run_in_versions

PANEL_CLASS = "qd-panel"
"""The CSS class every panel's outer widget carries (browser tests and custom styles find it by it)."""

EXPLICIT = "explicit"
_RED, _GREEN = "#b00020", "#1b5e20"
_LABELS = {"description_width": "110px"}  # room for the longest control label
_GPUS, _GIB = (1, 8), (4, 192)  # what the sliders offer


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as error:
        raise QwenVLDiagError(
            "The panels need ipywidgets: pip install 'qwenvl-diag[notebooks]' (or pip install ipywidgets), "
            "then restart the kernel. Every panel is a view of a public function you can call instead "
            "(qd.plan_device_map, qd.plot_placement, qd.run)."
        ) from error
    return ipywidgets


def _png(figure) -> bytes:
    """The figure as PNG bytes, closed afterwards so that Jupyter does not also show it below the cell."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _message(text: str, colour: str) -> str:
    return f"<span style='color:{colour}'>{html.escape(text)}</span>"


def _parse_splits(text: str) -> list[int]:
    """ "14" -> [14], "10, 20" -> [10, 20], "" -> []: the split points typed into the panel."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise PlacementError(
            "Split points are decoder-layer numbers separated by commas, e.g. '14' or '10, 20'; "
            f"got {text!r}."
        )
    return [int(p) for p in parts]


def _img(image) -> str:
    """An image widget's PNG as an <img> that needs no kernel ("" when it holds none)."""
    data = bytes(image.value)
    return f"<img src='data:image/png;base64,{base64.b64encode(data).decode()}'/>" if data else ""


def _check_start(
    strategy: str, gpus: int, memory_gib: int, vision_gpu: int, inputs: str, action: str
) -> None:
    """The kit's errors for starting values the controls cannot hold (a widget would clamp a number
    silently, or raise its own TraitError for an unknown choice)."""
    if strategy not in (*STRATEGIES, EXPLICIT):
        raise PlacementError(
            f"Unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)} or 'explicit'."
        )
    Scenario(gpus=gpus, inputs=inputs, action=action)  # the scenario's own checks of these three
    for name, value, (low, high) in (
        ("gpus", gpus, _GPUS),
        ("memory_gib", memory_gib, _GIB),
        ("vision_gpu", vision_gpu, (0, _GPUS[1] - 1)),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidArgumentError(
                f"The panel's {name} is an int from {low} to {high}; got {value!r}. For other layouts call "
                "qd.plan_device_map(checkpoint, gpus, memory, strategy) directly."
            )


class _Panel:
    """Shows its outer widget when it is the value of a notebook cell, with a static HTML copy of what it
    shows at that moment for viewers without live widgets (GitHub, nbviewer, an HTML export); frontends
    with the widget manager render the live widget instead."""

    widget: object

    def _static_html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        return {**self.widget._repr_mimebundle_(**kwargs), "text/html": self._static_html()}


class DiagnosisPanel(_Panel):
    """A Diagnosis as tabs: "diagnosis" (its report: the error, the line, the known bug, the advice),
    then one tab per frame (`qd.diagnose.FRAMES`: placement, summary, flags, tensors, ...).

    >>> qd.widgets.DiagnosisPanel(qd.run(qd.Scenario.preset("seed-video")))
    """

    def __init__(self, diagnosis) -> None:
        if not isinstance(diagnosis, Diagnosis):
            raise InvalidArgumentError(
                "DiagnosisPanel shows a qd.Diagnosis (from qd.run or qd.diagnose); "
                f"got {type(diagnosis).__name__}."
            )
        widgets = _ipywidgets()
        self.diagnosis = diagnosis
        pages = {"diagnosis": html_report(diagnosis, frames=False)}
        for name, frame in diagnosis.frames.items():  # counts inside: tab titles have a fixed width
            table = frame.to_html(max_rows=60, index=False) if not frame.empty else ""
            pages[name] = f"<p>{name}: {counted(len(frame), 'row')}</p>{table}"
        self.pages = {title: widgets.HTML(value) for title, value in pages.items()}
        self.widget = widgets.Tab(children=list(self.pages.values()), titles=list(self.pages))
        self.widget.add_class(PANEL_CLASS)

    def _static_html(self) -> str:
        return html_report(self.diagnosis)


class PlacementPanel(_Panel):
    """Device-map experiments: checkpoint, number of GPUs, memory per GPU (GiB), strategy, and for the
    "explicit" strategy the split points (decoder layers where the next GPU starts) and the vision
    tower's GPU. Every change re-plans (`qd.plan_device_map`), re-draws the placement strip and the
    memory plot, and lists the risk flags; "Run scenario" runs the layout with the chosen inputs and
    action (`qd.run`) and shows the diagnosis.

    Results: `plan` (the DevicePlan, None when the settings are invalid), `scenario` (the Scenario the
    button runs), `diagnosis` (the last run's), `error` (why the settings are invalid, else None).
    """

    def __init__(
        self,
        model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        gpus: int = 2,
        memory_gib: int = 24,
        strategy: str = "auto",
        splits: str = "",
        vision_gpu: int = 0,
        inputs: str = "batch",
        action: str = "generate",
    ) -> None:
        widgets = _ipywidgets()
        _check_start(strategy, gpus, memory_gib, vision_gpu, inputs, action)
        wide = _LABELS
        self.controls = {
            "model": widgets.Dropdown(
                options=shipped_checkpoints(),
                value=resolve_checkpoint(model),
                description="checkpoint",
                style=wide,
                layout=widgets.Layout(width="400px"),  # the longest name whole (the default cuts it)
            ),
            "gpus": widgets.IntSlider(value=gpus, min=_GPUS[0], max=_GPUS[1], description="GPUs", style=wide),
            "memory_gib": widgets.IntSlider(
                value=memory_gib, min=_GIB[0], max=_GIB[1], step=4, description="GiB per GPU", style=wide
            ),
            "strategy": widgets.Dropdown(
                options=[*STRATEGIES, EXPLICIT], value=strategy, description="strategy", style=wide
            ),
            "splits": widgets.Text(
                value=splits, placeholder="e.g. 14 or 10, 20", description="split at layers", style=wide
            ),
            "vision_gpu": widgets.BoundedIntText(
                value=vision_gpu, min=0, max=_GPUS[1] - 1, description="vision on GPU", style=wide
            ),
            "inputs": widgets.Dropdown(options=INPUT_KINDS, value=inputs, description="inputs", style=wide),
            "action": widgets.Dropdown(options=ACTIONS, value=action, description="action", style=wide),
        }
        self.status = widgets.HTML()
        self.strip = widgets.Image(format="png")
        # the memory plot at its own size (not stretched to the flags' height; smaller in a narrow panel),
        # the flags beside it, or under it when they do not fit
        self.memory_plot = widgets.Image(format="png", layout=widgets.Layout(flex="0 1 auto"))
        self.flags = widgets.HTML(layout=widgets.Layout(flex="1 1 320px"))
        self.button = widgets.Button(description="Run scenario", button_style="primary", icon="play")
        self.result = widgets.HTML()
        self.plan: DevicePlan | None = None
        self.error: str | None = None
        self.diagnosis = None
        for name in ("model", "gpus", "memory_gib", "strategy", "splits", "vision_gpu"):
            self.controls[name].observe(lambda _change: self.refresh(), names="value")
        self.button.on_click(lambda _button: self.run())
        c = self.controls
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [
                        widgets.VBox([c["model"], c["gpus"], c["memory_gib"], c["strategy"]]),
                        widgets.VBox([c["splits"], c["vision_gpu"], c["inputs"], c["action"]]),
                    ]
                ),
                self.status,
                self.strip,
                widgets.HBox(
                    [self.memory_plot, self.flags],
                    layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"),
                ),
                widgets.HBox([self.button]),
                self.result,
            ]
        )
        self.widget.add_class(PANEL_CLASS)
        self.refresh()

    def _static_html(self) -> str:
        parts = [
            self.status.value,
            _img(self.strip),
            _img(self.memory_plot),
            self.flags.value,
            self.result.value,
        ]
        return "<div>" + "".join(parts) + "</div>"

    @property
    def strategy(self) -> str | dict:
        """The planner strategy, or for "explicit" the {module: gpu} map cut at the split points."""
        c = self.controls
        if c["strategy"].value != EXPLICIT:
            return c["strategy"].value
        return split_device_map(c["model"].value, _parse_splits(c["splits"].value), c["vision_gpu"].value)

    @property
    def scenario(self) -> Scenario:
        """The Scenario "Run scenario" runs: these settings, as plain data (`.to_json()` to keep it)."""
        c = self.controls
        return Scenario(
            model=c["model"].value,
            gpus=c["gpus"].value,
            memory=f"{c['memory_gib'].value}GiB",
            strategy=self.strategy,
            inputs=c["inputs"].value,
            action=c["action"].value,
        )

    def refresh(self) -> DevicePlan | None:
        """Plan the current settings and redraw; returns the plan (None, with `error` set, if invalid)."""
        explicit = self.controls["strategy"].value == EXPLICIT
        self.controls["splits"].disabled = self.controls["vision_gpu"].disabled = not explicit
        self.result.value = ""
        try:
            scenario = self.scenario
            self.plan = plan_scenario(scenario, scenario.model)
        except QwenVLDiagError as error:
            self.plan, self.error = None, str(error)
            self.status.value = _message(f"Cannot plan this layout: {error}", _RED)
            self.strip.value = self.memory_plot.value = b""
            self.flags.value = ""
            return None
        self.error = None
        self.strip.value = _png(plot_placement(self.plan))
        self.memory_plot.value = _png(plot_memory(self.plan))
        flags = flags_frame(self.plan)
        used = ", ".join(device_summary_frame(self.plan).query("modules > 0")["device"])
        modules = counted(len(self.plan.device_map), "module")
        summary = f"{self.plan.model}, {self.plan.strategy}: {modules} on {used}"
        if flags.empty:
            self.status.value = _message(f"{summary}. No risky layout flagged.", _GREEN)
            self.flags.value = ""
        else:
            codes = ", ".join(flags["code"])
            self.status.value = _message(f"{summary}. Risky: {codes}.", _RED)
            self.flags.value = flags.to_html(index=False)
        return self.plan

    def run(self):
        """Run the current scenario (`qd.run`) and show its diagnosis; returns the Diagnosis (None when
        the settings are invalid)."""
        if self.plan is None:
            self.result.value = _message(f"Fix the settings first: {self.error}", _RED)
            return None
        self.button.disabled = True
        self.result.value = _message("running the scenario ...", "#555")
        try:
            self.diagnosis = run(self.scenario)
        except QwenVLDiagError as error:
            self.result.value = _message(f"The scenario could not run: {error}", _RED)
            return None
        finally:
            self.button.disabled = False
        self.result.value = self.diagnosis._repr_html_()
        return self.diagnosis


class VerifyPanel(_Panel):
    """Which fix works on which failure: pick a scenario (the presets, or the `scenario` you pass, listed
    as "yours") and fixes; "Verify" runs `qd.verify` and shows its table coloured by verdict. The fixes
    preselected are every catalogue fix that runs here (not `upgrade_transformers`, which builds a side
    environment from a package index: tick it to include it).

    Results: `scenario` (the chosen Scenario), `frame` (the last verify table, None before).

    >>> panel = qd.widgets.VerifyPanel("seed-video")
    >>> frame = panel.verify()          # the same as clicking "Verify"
    """

    def __init__(self, scenario: str | Scenario = "seed-batched", fixes: list[str] | None = None) -> None:
        widgets = _ipywidgets()
        self.scenarios = {name: Scenario.preset(name) for name in PRESETS}
        if isinstance(scenario, Scenario):
            self.scenarios["yours"] = scenario
            chosen = "yours"
        elif scenario in PRESETS:
            chosen = scenario
        else:
            raise InvalidArgumentError(
                f"VerifyPanel takes a qd.Scenario or a preset name ({', '.join(PRESETS)}); got {scenario!r}."
            )
        if fixes is None:
            fixes = [fix.name for fix in CATALOGUE if fix.stage != "environment"]
        wide = _LABELS
        self.controls = {
            "scenario": widgets.Dropdown(
                options=list(self.scenarios), value=chosen, description="failure", style=wide
            ),
            "fixes": widgets.SelectMultiple(
                options=[fix.name for fix in CATALOGUE],
                value=[fix.name for fix in resolve(fixes)],
                rows=len(CATALOGUE),
                description="fixes",
                style=wide,
            ),
        }
        self.described = widgets.HTML()
        self.button = widgets.Button(description="Verify", button_style="primary", icon="check")
        self.table = widgets.HTML()
        self.frame = None
        self.controls["scenario"].observe(lambda _change: self._describe(), names="value")
        self.button.on_click(lambda _button: self.verify())
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.controls["scenario"], self.controls["fixes"]]),
                self.described,
                self.button,
                self.table,
            ]
        )
        self.widget.add_class(PANEL_CLASS)
        self._describe()

    @property
    def scenario(self) -> Scenario:
        return self.scenarios[self.controls["scenario"].value]

    def _static_html(self) -> str:
        return f"<div><p>{self.described.value}</p>{self.table.value}</div>"

    def _describe(self) -> None:
        s = self.scenario
        strategy = s.strategy if isinstance(s.strategy, str) else "explicit map"
        self.described.value = html.escape(
            f"{s.model} on {s.gpus} x {s.memory} ({strategy}), {s.inputs} inputs, {s.action}"
        )
        self.table.value = ""

    def verify(self):
        """Run `qd.verify` on the chosen scenario and fixes, show the coloured table and return the frame
        (None when no fix is chosen or the kit refuses the run: the message says why)."""
        fixes = list(self.controls["fixes"].value)
        if not fixes:
            self.table.value = _message("Choose at least one fix.", _RED)
            return None
        self.button.disabled = True
        self.table.value = _message(f"verifying {len(fixes)} fix(es) ...", "#555")
        try:
            self.frame = verify(self.scenario, fix=fixes)
        except QwenVLDiagError as error:
            self.table.value = _message(f"Could not verify: {error}", _RED)
            return None
        finally:
            self.button.disabled = False
        shown = self.frame[["fix", "verdict", "max_abs_logit_diff", "why"]]
        self.table.value = style_verify(shown).hide(axis="index").to_html()
        return self.frame


class TriagePanel(_Panel):
    """Triage a pasted report: paste what the reporter gave (a traceback, `transformers env`, a few
    words) into the box; "Explain" shows the facts and the known bugs they point to (`qd.explain`) and the
    reply to paste; "Reproduce" runs the best candidate's scenario, in this environment when it runs the
    reported transformers release (`qd.run`), else in that release's side environment of the version lab
    (`qd.run_in_versions`; `build=True` lets it make one, which needs a package index).

    Results: `explanation` (the last `Explanation`), `reproduced` (a `Diagnosis`, or a `run_in_versions`
    frame when it ran in another release; None before).

    >>> panel = qd.widgets.TriagePanel(open("issue.txt").read())
    >>> panel.explain().best["id"]        # the same as clicking "Explain"
    >>> panel.reproduce()                 # the same as clicking "Reproduce"
    """

    def __init__(self, text: str = "", build: bool = False) -> None:
        if not isinstance(text, str):
            raise InvalidArgumentError(
                f"TriagePanel takes the pasted text as a str; got {type(text).__name__}."
            )
        widgets = _ipywidgets()
        self.build = build
        self.explanation: Explanation | None = None
        self.reproduced = None
        self.box = widgets.Textarea(
            value=text,
            placeholder="Paste the traceback, the error line, `transformers env`, pip list ...",
            rows=12,
            layout=widgets.Layout(width="100%"),
        )
        self.buttons = {
            "explain": widgets.Button(description="Explain", button_style="primary", icon="search"),
            "reproduce": widgets.Button(description="Reproduce", icon="play", disabled=True),
        }
        self.result = widgets.HTML()
        self.reproduction = widgets.HTML()
        self.buttons["explain"].on_click(lambda _button: self.explain())
        self.buttons["reproduce"].on_click(lambda _button: self.reproduce())
        self.widget = widgets.VBox(
            [self.box, widgets.HBox(list(self.buttons.values())), self.result, self.reproduction]
        )
        self.widget.add_class(PANEL_CLASS)
        if text:
            self.explain()

    def _static_html(self) -> str:
        return f"<div>{self.result.value}{self.reproduction.value}</div>"

    def explain(self) -> Explanation:
        """Explain the box's text and show the facts, the candidates and the reply."""
        self.explanation = explain(self.box.value)
        self.reproduced = None
        self.reproduction.value = ""
        self.result.value = _triage_html(self.explanation)
        self.buttons["reproduce"].disabled = self.explanation.scenario is None
        return self.explanation

    def reproduce(self):
        """Run the best candidate's scenario (here, or in the reported release's side environment) and
        show what happened; returns a Diagnosis or a version-lab frame (None: nothing to reproduce, or the
        kit could not run it: the message says why)."""
        if self.explanation is None or self.explanation.scenario is None:
            self.reproduction.value = _message("Explain a report first: no candidate to reproduce yet.", _RED)
            return None
        fields = {k: v for k, v in self.explanation.scenario.items() if k != "preset"}
        scenario = Scenario.from_dict(fields)
        release = self.explanation.facts["versions"].get("transformers")
        self.buttons["reproduce"].disabled = True
        self.reproduction.value = _message("reproducing ...", "#555")
        try:
            if release and release != str(TRANSFORMERS_VERSION):
                self.reproduced = run_in_versions(scenario, [release], build=self.build, progress=False)
                shown = style_frame(self.reproduced).hide(axis="index").to_html()
                self.reproduction.value = (
                    f"<p>In transformers {html.escape(release)} (version lab):</p>{shown}"
                )
            else:
                self.reproduced = run(scenario)
                self.reproduction.value = html_report(self.reproduced, frames=False)
        except QwenVLDiagError as error:
            self.reproduction.value = _message(f"Could not reproduce: {error}", _RED)
            return None
        finally:
            self.buttons["reproduce"].disabled = False
        return self.reproduced


def _triage_html(explanation: Explanation) -> str:
    """The answer and the facts that were found, the candidates, and the reply (as text to copy)."""
    facts = explanation.facts
    frame = facts["library_frame"]
    answer = explanation.answer
    shown = {
        "answer": answer and f"{answer['label']} (confidence {answer['confidence']}): {answer['summary']}",
        "error": facts["error"],
        "devices": ", ".join(facts["devices"]) or None,
        "op": facts["wrapper"] and f"{facts['op']} ({facts['wrapper']}, argument {facts['argument']})",
        "library frame": frame and f"{frame['file']}:{frame['line']} in {frame['function']}",
        "model": facts["checkpoint"] or facts["family"],
        "versions": ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) or None,
        "engine": ", ".join(facts["engine"]) or None,
    }
    cell = "style='text-align:left'"
    rows = "".join(
        f"<tr><th {cell}>{name}</th><td {cell}>{html.escape(str(value))}</td></tr>"
        for name, value in shown.items()
        if value
    )
    parts = [f"<h4>Facts</h4><table>{rows}</table>" if rows else "<p>No facts found in the text.</p>"]
    if explanation.candidates:
        import pandas as pd

        columns = ["id", "score", "confidence", "fixed_in", "evidence", "against"]
        table = pd.DataFrame(explanation.candidates)[columns]
        parts.append("<h4>Known bugs it points to</h4>" + style_frame(table).hide(axis="index").to_html())
    parts.append(f"<h4>Reply</h4><pre style='white-space:pre-wrap'>{html.escape(explanation.reply)}</pre>")
    return "".join(parts)
