"""What the browser tests share: JupyterLab of this stack on loopback, headless Debian Chromium driven by
Playwright, Run All Cells, checks of what a reader sees (no traceback, widgets rendered, tables readable)
and screenshots (test-output/browser/<stack>/, each notebook's files starting with its number, "01-").

`QWENVL_DIAG_SCREENSHOT_TO=docs/images` (a directory, relative to the repository) also writes the
README's pictures there, one per notebook (`<notebook>.png`), as palette PNGs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from qwenvl_diag._compat import TRANSFORMERS_VERSION

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
OUTPUT = REPO / "test-output" / "browser" / f"transformers-{TRANSFORMERS_VERSION}"
SCREENSHOT_ENV = "QWENVL_DIAG_SCREENSHOT_TO"
TOKEN = "qwenvl-diag-browser-test"
PANEL = ".qd-panel"  # the CSS class qwenvl_diag.widgets puts on its panels' root element
# the version lab's side environments, shared with test_notebooks (git ignores test-output/)
LAB_CACHE = REPO / "test-output"

# Debian's Chromium, headless, with nothing that phones home
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
SERVER_START_S = 90
KERNEL_READY_S = 120
RUN_ALL_S = 300  # Run All takes 10-30 s on a 2-core machine (more when the version lab runs)

# JupyterLab settings for the test's own (temporary) user-settings directory
LAB_SETTINGS = {
    # every cell attached to the DOM, so what is asserted is what is there
    # (and no blank page after the last one, which would grow with the window)
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    # the copy under test is never written back (it is a temporary copy anyway)
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # no news or update toasts over the notebook, no requests off the machine
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}

# the current notebook's kernel is started, connected and idle
KERNEL_READY_JS = """() => {
    const kernel = window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel;
    return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""
# where the panel's images and boxes are drawn, against the panel's box (CSS pixels)
PANEL_GEOMETRY_JS = """panel => {
    const box = panel.getBoundingClientRect();
    const images = [...panel.querySelectorAll('img')].map(img => {
        const r = img.getBoundingClientRect();
        return {complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
                shown: [r.width, r.height]};
    });
    let overflow = 0, widest = '';
    for (const e of panel.querySelectorAll('*')) {
        if (!e.checkVisibility()) continue;  // e.g. a folded <details>' table: laid out, not drawn
        const past = e.getBoundingClientRect().right - box.right;
        if (past > overflow) {
            overflow = past;
            widest = `<${e.tagName.toLowerCase()} class="${e.className}"> ${e.textContent.slice(0, 80)}`;
        }
    }
    return {images, overflow, widest};
}"""
# how far below the panel's top its diagnosis's opening ends: the heading and what follows it up to the
# advice list or the folded frames (the README's picture ends there)
DIAGNOSIS_OPENING_JS = """panel => {
    const heading = [...panel.querySelectorAll('h4')].find(h => h.textContent.includes('qwenvl-diag:'));
    let bottom = heading.getBoundingClientRect().bottom;
    for (let e = heading.nextElementSibling; e && !e.matches('ul, ol, details'); e = e.nextElementSibling) {
        bottom = Math.max(bottom, e.getBoundingClientRect().bottom);
    }
    return bottom - panel.getBoundingClientRect().top;
}"""
# all code cells have run: every prompt shows its execution count
ALL_RAN_JS = """() => {
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
    return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
}"""
# a cell raised: Run All stops there, so stop waiting and report it
TRACEBACK_JS = """() => [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .some(o => o.textContent.includes('Traceback'))"""
OUTPUT_TEXTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')]
    .map(o => [o.getAttribute('data-mime-type') || '', o.textContent])"""
# text cells of the notebook's tables drawn as a strip a word or two wide (a long text column squeezed
# beside many others): their text's start, lines drawn, characters per line
SQUEEZED_CELLS_JS = """() => {
    const squeezed = [];
    for (const cell of document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output td')) {
        if (!cell.checkVisibility()) continue;
        const text = cell.textContent.trim();
        if (text.length < 40 || !text.includes(' ')) continue;
        const range = document.createRange();
        range.selectNodeContents(cell);
        const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
        if (lines >= 3 && text.length / lines < 16) {
            squeezed.push([text.slice(0, 60), lines, text.length / lines]);
        }
    }
    return squeezed;
}"""
# tables of the notebook's outputs wider than their output area (the reader would scroll sideways to
# see their last columns): their column names, their width and the area's (CSS pixels)
WIDE_TABLES_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output table')]
    .filter(table => table.checkVisibility())
    .map(table => [[...table.querySelectorAll('thead th')].map(h => h.textContent.trim()).join(' | '),
                   table.getBoundingClientRect().width, table.closest('.jp-OutputArea-output').clientWidth])
    .filter(([, width, area]) => width > area + 1)"""
PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
    .map(p => p.textContent.trim())"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return None


def require_browser() -> str:
    """The Chromium executable, or a skip (a failure on CI) that says how to get what is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append(
            "the playwright package: pip install -e '.[test]' (or pip install playwright; "
            "do not run `playwright install`: the test drives the system Chromium)"
        )
    chromium = _chromium()
    if chromium is None:
        missing.append(
            "Chromium: sudo apt-get install chromium chromium-driver (Debian/Ubuntu; .ci/run does this)"
        )
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " (on CI this test must run, not be skipped)")
        pytest.skip(message)
    return chromium


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(base: str, path: str, method: str = "GET", timeout: float = 5):
    request = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def _jupyter_env(home: Path) -> dict[str, str]:
    """Temporary Jupyter/IPython directories, so that no user configuration, kernel or setting applies,
    and a `python3` kernelspec that runs this interpreter (this stack), first on JUPYTER_PATH."""
    kernel = home / "path" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    (kernel / "kernel.json").write_text(json.dumps(spec, indent=1))
    settings = home / "lab-settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update(
        JUPYTER_PATH=str(home / "path"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def serve_lab(root_dir: Path, home: Path, log_path: Path) -> Iterator[str]:
    """JupyterLab of this interpreter on 127.0.0.1 (a free port, a known token), serving `root_dir`;
    yields its base URL. Kernels and server are shut down on exit, whatever happened."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI runs as root
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.user_settings_dir={home / 'lab-settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",  # no lookups on the package index
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the kernel's real state
        "--ServerApp.terminals_enabled=False",
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command,
            cwd=root_dir,
            env=_jupyter_env(home),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server and the kernels it starts
        )
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                if server.poll() is not None:
                    raise AssertionError(
                        f"jupyter lab exited with {server.returncode}:\n{log_path.read_text()[-3000:]}"
                    )
                try:
                    api(base, "/api/status", timeout=2)
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"jupyter lab did not answer in {SERVER_START_S} s:\n"
                            f"{log_path.read_text()[-3000:]}"
                        ) from None
                    time.sleep(0.5)
            yield base
        finally:
            with contextlib.suppress(Exception):
                api(base, "/api/shutdown", method="POST")  # stops the kernels, then the server
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.pid, signal.SIGKILL)  # a kernel left behind by the group's leader


@contextlib.contextmanager
def open_browser(chromium: str, profile: Path):
    """A fresh headless Chromium profile; anything not on loopback is refused (and listed in
    `context.refused`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            device_scale_factor=1,
            color_scheme="light",
            locale="en-US",
            timezone_id="UTC",
        )
        try:
            context.refused = []

            def refuse(route):
                context.refused.append(route.request.url)
                route.abort()

            context.route(re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/]).*"), refuse)
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def run_all_cells(page, base: str, name: str) -> float:
    """Open notebook `name`, wait for its kernel, Run > Run All Cells, wait for every cell; seconds."""
    from playwright.sync_api import expect

    page.goto(f"{base}/lab/tree/{name}?token={TOKEN}", wait_until="domcontentloaded")
    expect(page.locator(".jp-NotebookPanel .jp-Cell").first).to_be_visible(timeout=KERNEL_READY_S * 1000)
    # the notebook's kernel is started, connected and idle before anything is run (the toolbar's
    # indicator says "idle" before that: Run All then runs nothing)
    page.wait_for_function(KERNEL_READY_JS, timeout=KERNEL_READY_S * 1000, polling=250)
    started = time.perf_counter()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    # the run has begun: the first code cell is queued or done
    expect(page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt").first).to_have_text(
        re.compile(r"^\[(\*|\d+)\]:$"), timeout=30_000
    )
    page.wait_for_function(
        f"() => ({ALL_RAN_JS})() || ({TRACEBACK_JS})()", timeout=RUN_ALL_S * 1000, polling=500
    )
    expect(page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=60_000
    )
    return time.perf_counter() - started


def screenshot_whole_notebook(page, path: Path) -> None:
    """The whole notebook in one image: scrolled to the top, the window as tall as its content."""
    measure = """() => {
        const outer = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
        outer.scrollTop = 0;
        return window.innerHeight + outer.scrollHeight - outer.clientHeight;
    }"""
    height = page.evaluate(measure)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height), 32000)})
    page.wait_for_timeout(500)
    height = page.evaluate(measure)  # after the new layout
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height), 32000)})
    page.wait_for_timeout(500)
    page.screenshot(path=path)
    page.set_viewport_size(VIEWPORT)
    page.wait_for_timeout(300)


def screenshot_element(page, locator, path: Path) -> None:
    """`locator` whole: the window made tall enough for it below JupyterLab's bars, then restored."""
    box = locator.bounding_box()
    page.set_viewport_size(
        {"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(box["height"]) + 240)}
    )
    page.wait_for_timeout(300)
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=path)
    page.set_viewport_size(VIEWPORT)
    page.wait_for_timeout(300)


def file_prefix(notebook: Path) -> str:
    """The start of the names of `notebook`'s files in OUTPUT: its number, "01-"."""
    return notebook.name[:2] + "-"


def readme_picture(notebook: Path) -> Path | None:
    """Where the README's picture of `notebook` goes (`<notebook>.png` in the directory
    QWENVL_DIAG_SCREENSHOT_TO names); None: no pictures asked for."""
    target = os.environ.get(SCREENSHOT_ENV)
    return REPO / target / f"{notebook.stem}.png" if target else None


def readme_screenshot(page, locator, target: Path, height: float | None = None) -> None:
    """A README picture: `locator` whole (or its top `height` CSS pixels), as a palette PNG (small, and
    the same from run to run)."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_suffix(".raw.png")
    screenshot_element(page, locator, raw)
    with Image.open(raw) as image:
        if height is not None:
            image = image.crop((0, 0, image.width, min(image.height, round(height))))
        image.convert("RGB").quantize(colors=64).save(target, optimize=True)
    raw.unlink()


def clear_screenshots(notebook: Path) -> None:
    """`notebook`'s screenshots of an earlier run."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob(f"{file_prefix(notebook)}*.png"):
        old.unlink()


@contextlib.contextmanager
def notebook_in_lab(chromium: str, notebook: Path, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """JupyterLab serving a temporary copy of `notebook` and a browser page: yields (base URL, page).
    A failure inside leaves `<NN>-failure.png`; the requests the browser refused (off
    loopback) are listed in `<NN>-refused-requests.txt`."""
    prefix = file_prefix(notebook)
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy2(notebook, root / notebook.name)  # JupyterLab serves (and may write) only this copy
    with (
        serve_lab(root, tmp_path / "jupyter", OUTPUT / f"{prefix}jupyter.log") as base,
        open_browser(chromium, tmp_path / "chromium-profile") as browser,
    ):
        # the notebook's kernel is this stack's interpreter
        spec = api(base, "/api/kernelspecs")["kernelspecs"]["python3"]["spec"]
        assert spec["argv"][0] == sys.executable, spec
        page = browser.new_page()
        try:
            yield base, page
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=OUTPUT / f"{prefix}failure.png")
            raise
        finally:
            (OUTPUT / f"{prefix}refused-requests.txt").write_text(
                "".join(f"{url}\n" for url in browser.refused)
            )


def run_and_check_cells(page, base: str, notebook: Path) -> tuple[str, str]:
    """Run All Cells of `notebook` (open in `page`), then: every code cell ran, in order, in one fresh
    kernel, and no cell raised. Returns the outputs' text (also in `<NN>-outputs.txt`) and a context
    line for assertion messages."""
    code_cells = sum(c.cell_type == "code" for c in nbformat.read(notebook, as_version=4).cells)
    run_seconds = run_all_cells(page, base, notebook.name)
    outputs = page.evaluate(OUTPUT_TEXTS_JS)
    text = "\n".join(body for _, body in outputs)
    (OUTPUT / f"{file_prefix(notebook)}outputs.txt").write_text(text)
    context = f"transformers {TRANSFORMERS_VERSION}, Run All took {run_seconds:.1f} s"

    # every code cell ran, in order, in one fresh kernel; no cell raised
    tracebacks = [body for mime, body in outputs if mime.endswith("stderr") and "Traceback" in body]
    assert not tracebacks, f"{context}: a cell raised:\n{tracebacks[0][-3000:]}"
    prompts = page.evaluate(PROMPTS_JS)
    assert prompts == [f"[{n}]:" for n in range(1, code_cells + 1)], (context, prompts)
    kernels = api(base, "/api/kernels")
    assert [k["name"] for k in kernels] == ["python3"], kernels
    return text, context


def expect_widgets_rendered(page) -> None:
    """The widget manager rendered every widget: no placeholder or error in its place."""
    from playwright.sync_api import expect

    for placeholder in ("Loading widget...", "Error displaying widget", "model not found"):
        expect(page.get_by_text(placeholder)).to_have_count(0)


def check_tables_readable(page, context: str) -> None:
    """Every table in the notebook's outputs fits its output area, and none squeezes a text cell into
    a strip a word or two wide."""
    wide = page.evaluate(WIDE_TABLES_JS)
    assert not wide, (f"{context}: tables wider than the notebook (columns, width, room)", wide)
    squeezed = page.evaluate(SQUEEZED_CELLS_JS)
    assert not squeezed, (f"{context}: table cells squeezed (text, lines, characters per line)", squeezed)


def check_panel_geometry(panel, context: str) -> dict:
    """The panel's two images loaded and drawn without distortion, nothing drawn past its right edge
    (what a user would otherwise see: a stretched plot, a cut-off table); returns the measures."""
    geometry = panel.evaluate(PANEL_GEOMETRY_JS)
    images = geometry["images"]
    assert len(images) == 2, (context, geometry)  # the placement strip and the memory plot
    for image in images:
        (natural_w, natural_h), (shown_w, shown_h) = image["natural"], image["shown"]
        assert image["complete"] and natural_w > 0 and natural_h > 0, (context, geometry)
        assert shown_w > 0 and shown_h > 0, (context, geometry)
        distortion = (shown_w / shown_h) / (natural_w / natural_h)
        assert abs(distortion - 1) < 0.02, (f"{context}: an image is drawn distorted", geometry)
    assert geometry["overflow"] <= 1, (f"{context}: the panel draws past its right edge", geometry)
    return geometry
