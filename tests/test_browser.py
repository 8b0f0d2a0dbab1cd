"""The notebooks in a real browser: JupyterLab on loopback, headless Chromium, Run All Cells.

- 01_reproduce.ipynb: what a user sees after `make lab` and Run > Run All Cells: the diagnosis report,
  no traceback, and the widget panel rendered (not "Loading widget...").
- 02_layer_placement.ipynb: the placement panel is live: it shows the layout the notebook's last cells
  set, and a user's choices in it reach the kernel (the strategy dropdown re-plans and re-draws, "Run
  scenario" diagnoses the layout under the panel).
- 03_fix_and_verify.ipynb: the verify tables are coloured by verdict, green and red where this stack
  has the bugs, grey-green where it does not, and the verify panel's "Verify" colours its table the same.
- 04_triage.ipynb: the triage panel shows the notebook's report explained; a report pasted into its box
  and "Explain" clicked in the browser is explained by the kernel.
Every notebook: no table squeezes a text column into a strip a word or two wide.

Screenshots go to test-output/browser/<stack>/ (each notebook's files start with its number, "01-").

Needs Debian's Chromium (`apt-get install chromium chromium-driver`, as `.ci/run` does) and the
`playwright` package (the `test` extra); Playwright's own browser downloads are never used. Without
them the tests are skipped with that advice (on CI, where `CI` is set, they fail instead).

`QWENVL_DIAG_SCREENSHOT_TO=docs/images` (a directory, relative to the repository) also writes the
README's pictures, as palette PNGs: `01_reproduce.png` (the notebook cell with the diagnosis panel, its
first tab the diagnosis), `02_layer_placement.png` (the placement panel after "Run scenario" on the
seed's layout), `03_fix_and_verify.png` (the verify panel after "Verify" on the video failure) and
`04_triage.png` (the triage panel after "Explain" on a pasted video report). Run
it in .venv-legacy for the failing diagnoses.
"""

from __future__ import annotations

import re
import time

import pytest
from browser_support import (
    DIAGNOSIS_OPENING_JS,
    LAB_CACHE,
    NOTEBOOKS,
    OUTPUT,
    PANEL,
    check_panel_geometry,
    check_tables_readable,
    clear_screenshots,
    digest,
    expect_widgets_rendered,
    notebook_in_lab,
    readme_picture,
    readme_screenshot,
    require_browser,
    run_and_check_cells,
    screenshot_element,
    screenshot_whole_notebook,
)
from conftest import SEED_FIX_VERDICTS

from qwenvl_diag import VERDICT_COLOURS, versions
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least

# JupyterLab and the widgets render the same in both stacks; what each stack's notebooks must show is
# checked in both by test_notebooks.py, so the browser runs once, in the legacy stack (the failing
# diagnoses, the README's pictures): run twice it kept the longer current stack 3 minutes longer
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        transformers_at_least("5.0"),
        reason="the browser tests run in the legacy stack (test_notebooks checks both)",
    ),
]

NOTEBOOK = NOTEBOOKS / "01_reproduce.ipynb"
PLACEMENT_NOTEBOOK = NOTEBOOKS / "02_layer_placement.ipynb"
FIX_NOTEBOOK = NOTEBOOKS / "03_fix_and_verify.ipynb"
SEED_FIXED = transformers_at_least("4.52.1")
BATCHED_ERROR = "found at least two devices, cuda:1 and cuda:0!"
REPLAN_S = 60  # a control changed in the browser: the kernel re-plans and re-draws (under 1 s)
RUN_SCENARIO_S = 180  # "Run scenario": the 7B twin on 8 simulated GPUs, generate (1-2 s)
VERIFY_S = 300  # "Verify": five fixes on the video failure, each a run and a reference (10-30 s)

# every verify table shown (a styled table with a "verdict" column): its column headings and, per row, each
# cell's text, classes and background colour as drawn
VERIFY_TABLES_JS = """root => [...root.querySelectorAll('table')]
    .filter(t => t.checkVisibility() && [...t.querySelectorAll('thead th.col_heading')]
        .some(h => h.textContent.trim() === 'verdict'))
    .map(t => ({
        heads: [...t.querySelectorAll('thead th')].map(h => [h.textContent.trim(), h.className]),
        rows: [...t.querySelectorAll('tbody tr')].map(row => [...row.querySelectorAll('td')].map(
            c => [c.textContent.trim(), c.className, getComputedStyle(c).backgroundColor])),
    }))"""


def _verify_rows(table: dict) -> list[dict]:
    """A drawn verify table's rows: fix, verdict and the set of the row's cell colours (pandas' Styler
    gives a column's heading and its cells the same class "col<N>")."""
    column = {
        text: re.search(r"\bcol\d+\b", classes).group()
        for text, classes in table["heads"]
        if "col_heading" in classes
    }
    assert {"fix", "verdict"} <= column.keys(), table["heads"]

    def at(cells: list, name: str) -> str:
        return next(text for text, classes, _ in cells if column[name] in classes.split())

    return [
        {"fix": at(cells, "fix"), "verdict": at(cells, "verdict"), "colours": sorted({c[2] for c in cells})}
        for cells in table["rows"]
    ]


def _rgb(colour: str) -> str:
    """A "#rrggbb" colour as the browser's computed style writes it."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def _expected_verdicts(preset: str) -> dict[str, str]:
    verdicts = SEED_FIX_VERDICTS[preset]
    return {fix: "not needed" if SEED_FIXED else verdict for fix, verdict in verdicts.items()}


def _check_verify_table(table: dict, preset: str, context: str) -> None:
    """A verify table as drawn: this stack's verdicts for `preset`, each row all in its verdict's colour."""
    rows = _verify_rows(table)
    assert {row["fix"]: row["verdict"] for row in rows} == _expected_verdicts(preset), (context, rows)
    for row in rows:
        assert row["colours"] == [_rgb(VERDICT_COLOURS[row["verdict"]])], (context, row)


@pytest.fixture
def chromium(monkeypatch) -> str:
    """The Chromium to drive (else a skip, on CI a failure); the version lab's cache for the server
    and its kernels (they inherit the environment)."""
    executable = require_browser()
    monkeypatch.setenv("QWENVL_DIAG_CACHE", str(LAB_CACHE))
    return executable


@pytest.fixture
def committed_notebooks_unchanged():
    """The committed notebooks are byte for byte what they were, and no checkpoint appears beside them."""
    before = {path: digest(path) for path in NOTEBOOKS.glob("*.ipynb")}
    checkpoints = NOTEBOOKS / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    yield
    after = {path: digest(path) for path in NOTEBOOKS.glob("*.ipynb")}
    changed = sorted(
        str(path) for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )
    assert not changed, f"{changed} modified by the browser test"
    assert checkpoints.exists() == had_checkpoints, f"{checkpoints} was created by the browser test"


def test_reproduce_notebook_in_jupyterlab(tmp_path, chromium, committed_notebooks_unchanged):
    from playwright.sync_api import expect

    if SEED_FIXED:
        versions.side_env("4.51.3")  # made before the notebook runs, as `make lab` does for users
    clear_screenshots(NOTEBOOK)
    started = time.perf_counter()
    with notebook_in_lab(chromium, NOTEBOOK, tmp_path) as (base, page):
        text, context = run_and_check_cells(page, base, NOTEBOOK)
        check_tables_readable(page, context)  # the version lab's table among them, where it runs
        assert f"transformers {TRANSFORMERS_VERSION} | accelerate" in text, context

        # the diagnosis reports (HTML outputs), with this stack's outcome
        html_outputs = page.locator('.jp-OutputArea-output[data-mime-type="text/html"]')
        reports = html_outputs.locator("h4", has_text="qwenvl-diag:")
        expect(reports).to_have_count(2)  # the batched generate, then the video forward
        expect(reports.first).to_contain_text("Qwen/Qwen2.5-VL-7B-Instruct generate")
        expect(reports.nth(1)).to_contain_text("Qwen/Qwen2.5-VL-7B-Instruct forward")
        if SEED_FIXED:
            expect(reports.first).to_contain_text("no device error")
            expect(reports.nth(1)).to_contain_text("no device error")
            assert "is already fixed" in text, context
            # ... and the version lab's side environment shows the failure under 4.51.3
            assert "version lab: transformers 4.51.3 failed at" in text, context
        else:
            expect(reports.first).to_contain_text(BATCHED_ERROR)
            expect(reports.nth(1)).to_contain_text("found at least two devices, cuda:0 and cpu!")
            assert "is already fixed" not in text, context
        reports.first.scroll_into_view_if_needed()
        expect(reports.first).to_be_visible()
        page.screenshot(path=OUTPUT / "01-diagnosis-viewport.png")

        # the widget panel is rendered by the widget manager, not left as a placeholder
        expect_widgets_rendered(page)
        panel = page.locator(PANEL)
        expect(panel).to_have_count(1)  # 01 shows one panel: the batched diagnosis
        panel.scroll_into_view_if_needed()
        expect(panel).to_be_visible()
        box = panel.bounding_box()
        assert box and box["width"] > 400 and box["height"] > 100, (context, box)
        # its first tab is the same report, with the same outcome
        panel_report = panel.locator("h4", has_text="qwenvl-diag:")
        expect(panel_report).to_be_visible()
        expect(panel_report).to_contain_text("no device error" if SEED_FIXED else BATCHED_ERROR)
        screenshot_element(page, panel, OUTPUT / "01-panel.png")
        page.screenshot(path=OUTPUT / "01-panel-viewport.png")
        # it is live: another tab shows that frame's table
        panel.get_by_role("tab", name="placement", exact=True).click()
        shown = panel.locator("table.dataframe:visible")
        expect(shown).to_have_count(1)
        expect(shown).to_contain_text("embed_tokens")
        expect(panel.get_by_text(re.compile(r"^placement: \d+ rows$"))).to_be_visible()
        expect(panel_report).to_be_hidden()
        panel.get_by_role("tab", name="diagnosis").click()
        expect(panel_report).to_be_visible()

        screenshot_whole_notebook(page, OUTPUT / "01-notebook.png")
        if target := readme_picture(NOTEBOOK):
            cell = page.locator(".jp-NotebookPanel .jp-Cell").filter(has=page.locator(PANEL))
            readme_screenshot(page, cell, target)  # the cell with the panel: its first tab is the diagnosis
    print(f"browser test ({context}): {time.perf_counter() - started:.1f} s in all")


def test_placement_panel_is_live_in_jupyterlab(tmp_path, chromium, committed_notebooks_unchanged):
    """02's placement panel after Run All shows the layout the notebook's last cells set (explicit,
    split at 14, vision tower on GPU 1: flagged); choosing a strategy in the browser re-plans in the
    kernel and re-draws; "Run scenario" on the seed's layout shows the diagnosis under the panel."""
    from playwright.sync_api import expect

    clear_screenshots(PLACEMENT_NOTEBOOK)
    started = time.perf_counter()
    with notebook_in_lab(chromium, PLACEMENT_NOTEBOOK, tmp_path) as (base, page):
        text, context = run_and_check_cells(page, base, PLACEMENT_NOTEBOOK)
        check_tables_readable(page, context)
        assert f"transformers {TRANSFORMERS_VERSION}\n" in text, context
        # the twins' frame: every shipped checkpoint with where its config comes from
        assert "Qwen/Qwen3.5-27B" in text and "published config" in text, context
        expect_widgets_rendered(page)

        panel = page.locator(PANEL).first  # the placement panel (the cell after the parameters)
        panel.scroll_into_view_if_needed()
        expect(panel).to_be_visible()
        status = panel.locator(":scope > .widget-html").first  # the line under the controls
        result = panel.locator(":scope > .widget-html").last  # under the button: the diagnosis
        strip = panel.locator(":scope > img")  # the placement strip (the memory plot is in a row)
        flags = panel.locator("table")
        strategy = panel.get_by_label("strategy", exact=True)
        splits = panel.get_by_label("split at layers", exact=True)
        vision_gpu = panel.get_by_label("vision on GPU", exact=True)
        gpus = panel.locator(".widget-slider").filter(
            has=page.locator("label", has_text=re.compile(r"^GPUs$"))
        )
        button = panel.get_by_role("button", name="Run scenario")

        # what the notebook's last cells set from code: explicit, split at layer 14, vision on GPU 1
        expect(strategy).to_have_value("explicit")
        expect(splits).to_have_value("14")
        expect(splits).to_be_enabled()
        expect(vision_gpu).to_have_value("1")
        expect(gpus.locator(".widget-readout")).to_have_text("8")  # GPUS in the parameter cell
        expect(status).to_have_text(
            "Qwen/Qwen2.5-VL-7B-Instruct, explicit: 33 modules on cuda:0, cuda:1. Risky: vision_embed_apart."
        )
        expect(status.locator("span")).to_have_css("color", "rgb(176, 0, 32)")  # red: flagged
        expect(flags).to_have_count(1)
        expect(flags).to_contain_text("vision_embed_apart")
        expect(panel.locator("img")).to_have_count(2)
        for image in (strip, panel.locator("img").last):
            expect(image).to_be_visible()
            expect(image).to_have_js_property("complete", True)
        check_panel_geometry(panel, context)
        expect(result).to_have_text("")  # nothing run from the panel yet
        expect(button).to_be_enabled()
        screenshot_element(page, panel, OUTPUT / "02-panel.png")

        # a user picks "sequential": the kernel re-plans, the strip is re-drawn, the flag goes away
        explicit_strip = strip.get_attribute("src")
        clicked = time.perf_counter()
        strategy.select_option("sequential")
        expect(status).to_have_text(
            re.compile(r"^Qwen/Qwen2\.5-VL-7B-Instruct, sequential: .* No risky layout flagged\.$"),
            timeout=REPLAN_S * 1000,
        )
        replan_seconds = time.perf_counter() - clicked
        expect(strip).not_to_have_attribute("src", explicit_strip, timeout=REPLAN_S * 1000)
        expect(strip).to_have_js_property("complete", True)
        expect(status.locator("span")).to_have_css("color", "rgb(27, 94, 32)")  # green
        expect(flags).to_have_count(0)
        expect(splits).to_be_disabled()  # split points are for "explicit" only
        expect(vision_gpu).to_be_disabled()
        check_panel_geometry(panel, context)
        screenshot_element(page, panel, OUTPUT / "02-panel-sequential.png")

        # back to the seed's layout (balanced on the 8 GPUs the slider still shows): flagged again
        sequential_strip = strip.get_attribute("src")
        expect(gpus.locator(".widget-readout")).to_have_text("8")
        strategy.select_option("balanced")
        expect(status).to_have_text(
            re.compile(
                r"^Qwen/Qwen2\.5-VL-7B-Instruct, balanced: 33 modules on cuda:0, cuda:1, .*"
                r"Risky: vision_embed_apart\.$"
            ),
            timeout=REPLAN_S * 1000,
        )
        expect(strip).not_to_have_attribute("src", sequential_strip, timeout=REPLAN_S * 1000)
        expect(flags).to_contain_text("vision_embed_apart")

        # "Run scenario": the kernel runs the layout (padded batch, generate) and shows the diagnosis
        expect(panel.get_by_label("inputs", exact=True)).to_have_value("batch")
        expect(panel.get_by_label("action", exact=True)).to_have_value("generate")
        clicked = time.perf_counter()
        button.click()
        heading = result.locator("h4", has_text="qwenvl-diag:")
        expect(heading).to_be_visible(timeout=RUN_SCENARIO_S * 1000)
        run_seconds = time.perf_counter() - clicked
        expect(heading).to_contain_text("qwenvl-diag: Qwen/Qwen2.5-VL-7B-Instruct generate: ")
        if SEED_FIXED:
            expect(heading).to_contain_text("no device error")
        else:
            expect(heading).to_contain_text(BATCHED_ERROR)
            expect(result).to_contain_text("qwen2_5_vl-batched-causal-mask")  # the known bug
        expect(button).to_be_enabled()  # again (it is disabled while the scenario runs)
        expect(status).to_contain_text("balanced: 33 modules")  # the run changed no setting
        check_panel_geometry(panel, context)
        heading.scroll_into_view_if_needed()
        screenshot_element(page, panel, OUTPUT / "02-panel-after-run.png")

        screenshot_whole_notebook(page, OUTPUT / "02-notebook.png")
        if target := readme_picture(PLACEMENT_NOTEBOOK):
            # the panel after the run: controls, strip, memory, flags, the diagnosis's heading (and on
            # a release with the bug, the line and the known bug; the advice and frames left out)
            readme_screenshot(page, panel, target, height=panel.evaluate(DIAGNOSIS_OPENING_JS) + 12)
    print(
        f"browser test 02 ({context}; in the panel: re-plan {replan_seconds:.1f} s, "
        f"Run scenario {run_seconds:.1f} s): {time.perf_counter() - started:.1f} s in all"
    )


def test_fix_and_verify_colours_each_verdict_in_jupyterlab(tmp_path, chromium, committed_notebooks_unchanged):
    """03's verify tables are drawn in their verdicts' colours with this stack's verdicts; the verify
    panel, "Verify" clicked on the video failure it was given, colours its table the same way."""
    from playwright.sync_api import expect

    clear_screenshots(FIX_NOTEBOOK)
    started = time.perf_counter()
    with notebook_in_lab(chromium, FIX_NOTEBOOK, tmp_path) as (base, page):
        text, context = run_and_check_cells(page, base, FIX_NOTEBOOK)
        assert f"transformers {TRANSFORMERS_VERSION} | accelerate" in text, context
        expect_widgets_rendered(page)
        check_tables_readable(page, context)

        # the two verify tables of the notebook: the batched failure, then the video
        tables = page.locator(".jp-NotebookPanel .jp-Notebook").evaluate(VERIFY_TABLES_JS)
        panel = page.locator(PANEL)
        expect(panel).to_have_count(1)
        assert len(tables) == 2, (context, tables)  # the panel's table is empty until "Verify"
        for table, preset in zip(tables, ("seed-batched", "seed-video"), strict=True):
            _check_verify_table(table, preset, context)

        # the panel: its failure is the notebook's video scenario ("yours"), every in-process fix ticked
        button = panel.get_by_role("button", name="Verify")
        expect(panel.get_by_label("failure", exact=True)).to_have_value("yours")
        panel.scroll_into_view_if_needed()
        clicked = time.perf_counter()
        button.click()
        expect(panel.locator("table tbody tr")).to_have_count(
            len(SEED_FIX_VERDICTS["seed-video"]), timeout=VERIFY_S * 1000
        )
        verify_seconds = time.perf_counter() - clicked
        expect(button).to_be_enabled()
        [panel_table] = panel.evaluate(VERIFY_TABLES_JS)
        _check_verify_table(panel_table, "seed-video", context)
        screenshot_element(page, panel, OUTPUT / "03-panel-after-verify.png")
        screenshot_whole_notebook(page, OUTPUT / "03-notebook.png")
        if target := readme_picture(FIX_NOTEBOOK):
            readme_screenshot(page, panel, target)
    print(
        f"browser test 03 ({context}; in the panel: Verify {verify_seconds:.1f} s): "
        f"{time.perf_counter() - started:.1f} s in all"
    )


TRIAGE_NOTEBOOK = NOTEBOOKS / "04_triage.ipynb"
PASTED = (
    "my video run dies:\n"
    '  File "/srv/env/lib/python3.11/site-packages/transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py", '
    "line 1681, in get_rope_index\n"
    "    time_tensor = expanded_range * second_per_grid_t\n"
    "RuntimeError: Expected all tensors to be on the same device, but found at least two devices, "
    "cuda:0 and cpu!\n- `transformers` version: 4.50.3\n"
)


def test_triage_panel_explains_a_paste_in_jupyterlab(tmp_path, chromium, committed_notebooks_unchanged):
    """04's triage panel after Run All shows the notebook's report explained (the batched bug); a report
    pasted into its box in the browser and "Explain" clicked shows the video bug instead."""
    from playwright.sync_api import expect

    clear_screenshots(TRIAGE_NOTEBOOK)
    started = time.perf_counter()
    with notebook_in_lab(chromium, TRIAGE_NOTEBOOK, tmp_path) as (base, page):
        text, context = run_and_check_cells(page, base, TRIAGE_NOTEBOOK)
        assert "last failing: 4.51.3, first passing: 4.52.1" in text, context
        expect_widgets_rendered(page)
        check_tables_readable(page, context)
        panel = page.locator(PANEL)
        expect(panel).to_have_count(1)
        panel.scroll_into_view_if_needed()
        box = panel.locator("textarea")
        result = panel.locator(".widget-html").first
        expect(box).to_have_value(re.compile(r"^Batched inference with Qwen2\.5-VL-7B"))
        expect(result).to_contain_text("qwen2_5_vl-batched-causal-mask")
        expect(result).to_contain_text("fixed in 4.52.1")

        # a maintainer pastes another report and clicks Explain: the kernel explains it
        box.fill(PASTED)
        panel.get_by_role("button", name="Explain").click()
        expect(result).to_contain_text("qwen2_5_vl-video-second-per-grid-ts", timeout=60_000)
        expect(result).to_contain_text("the traceback runs through its line: get_rope_index")
        expect(result).not_to_contain_text("qwen2_5_vl-batched-causal-mask")
        expect(panel.get_by_role("button", name="Reproduce")).to_be_enabled()
        screenshot_element(page, panel, OUTPUT / "04-panel-after-explain.png")
        screenshot_whole_notebook(page, OUTPUT / "04-notebook.png")
        if target := readme_picture(TRIAGE_NOTEBOOK):
            readme_screenshot(page, panel, target)
    print(f"browser test 04 ({context}): {time.perf_counter() - started:.1f} s in all")
