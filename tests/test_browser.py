"""01_reproduce.ipynb in a real browser: JupyterLab on loopback, headless Chromium, Run All Cells.

What a user sees after `make lab` and Run > Run All Cells: the diagnosis report, no traceback, and the
widget panel rendered (not "Loading widget..."). Screenshots go to test-output/browser/<stack>/.

Needs Debian's Chromium (`apt-get install chromium chromium-driver`, as `.ci/run` does) and the
`playwright` package (the `test` extra); Playwright's own browser downloads are never used. Without
them the test is skipped with that advice (on CI, where `CI` is set, it fails instead).

`QWENVL_DIAG_SCREENSHOT_TO=docs/images/01_reproduce.png` (relative to the repository) also writes the
README's picture: the notebook cell with the widget panel (its first tab is the diagnosis), as a
palette PNG. Run it in .venv-legacy for the failing diagnosis.
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

import nbformat
import pytest

from qwenvl_diag import versions
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "01_reproduce.ipynb"
OUTPUT = REPO / "test-output" / "browser" / f"transformers-{TRANSFORMERS_VERSION}"
SCREENSHOT_ENV = "QWENVL_DIAG_SCREENSHOT_TO"
TOKEN = "qwenvl-diag-browser-test"
PANEL = ".qd-panel"  # the CSS class qwenvl_diag.widgets puts on its panels' root element
SEED_FIXED = transformers_at_least("4.52.1")
BATCHED_ERROR = "found at least two devices, cuda:1 and cuda:0!"
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
PROMPTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
    .map(p => p.textContent.trim())"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return None


def _require_browser() -> str:
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


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base: str, path: str, method: str = "GET", timeout: float = 5):
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
                    _api(base, "/api/status", timeout=2)
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
                _api(base, "/api/shutdown", method="POST")  # stops the kernels, then the server
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


def _screenshot_whole_notebook(page, path: Path) -> None:
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


def _screenshot_element(page, locator, path: Path) -> None:
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


def _readme_screenshot(page, target: Path) -> None:
    """The README's picture: the cell with the widget panel (its first tab is the diagnosis), as a
    palette PNG (small, and the same from run to run)."""
    from PIL import Image

    cell = page.locator(".jp-NotebookPanel .jp-Cell").filter(has=page.locator(PANEL))
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_suffix(".raw.png")
    _screenshot_element(page, cell, raw)
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=64).save(target, optimize=True)
    raw.unlink()


@pytest.fixture
def committed_notebook_unchanged():
    """The committed notebook is byte for byte what it was, and no checkpoint appears beside it."""
    before = _digest(NOTEBOOK)
    checkpoints = NOTEBOOK.parent / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    yield
    assert _digest(NOTEBOOK) == before, f"{NOTEBOOK} was modified by the browser test"
    assert checkpoints.exists() == had_checkpoints, f"{checkpoints} was created by the browser test"


def test_reproduce_notebook_in_jupyterlab(tmp_path, monkeypatch, committed_notebook_unchanged):
    chromium = _require_browser()
    from playwright.sync_api import expect

    monkeypatch.setenv("QWENVL_DIAG_CACHE", str(LAB_CACHE))  # the server and its kernel inherit it
    if SEED_FIXED:
        versions.side_env("4.51.3")  # made before the notebook runs, as `make lab` does for users

    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob("*.png"):
        old.unlink()
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy2(NOTEBOOK, root / NOTEBOOK.name)  # JupyterLab serves (and may write) only this copy
    code_cells = sum(c.cell_type == "code" for c in nbformat.read(NOTEBOOK, as_version=4).cells)

    started = time.perf_counter()
    with (
        serve_lab(root, tmp_path / "jupyter", OUTPUT / "jupyter.log") as base,
        open_browser(chromium, tmp_path / "chromium-profile") as browser,
    ):
        # the notebook's kernel is this stack's interpreter
        spec = _api(base, "/api/kernelspecs")["kernelspecs"]["python3"]["spec"]
        assert spec["argv"][0] == sys.executable, spec
        page = browser.new_page()
        try:
            run_seconds = run_all_cells(page, base, NOTEBOOK.name)
            outputs = page.evaluate(OUTPUT_TEXTS_JS)
            text = "\n".join(body for _, body in outputs)
            (OUTPUT / "outputs.txt").write_text(text)
            context = f"transformers {TRANSFORMERS_VERSION}, Run All took {run_seconds:.1f} s"

            # every code cell ran, in order, in one fresh kernel; no cell raised
            tracebacks = [body for mime, body in outputs if mime.endswith("stderr") and "Traceback" in body]
            assert not tracebacks, f"{context}: a cell raised:\n{tracebacks[0][-3000:]}"
            prompts = page.evaluate(PROMPTS_JS)
            assert prompts == [f"[{n}]:" for n in range(1, code_cells + 1)], (context, prompts)
            kernels = _api(base, "/api/kernels")
            assert [k["name"] for k in kernels] == ["python3"], kernels
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
            page.screenshot(path=OUTPUT / "diagnosis-viewport.png")

            # the widget panel is rendered by the widget manager, not left as a placeholder
            for placeholder in ("Loading widget...", "Error displaying widget", "model not found"):
                expect(page.get_by_text(placeholder)).to_have_count(0)
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
            _screenshot_element(page, panel, OUTPUT / "panel.png")
            page.screenshot(path=OUTPUT / "panel-viewport.png")
            # it is live: another tab shows that frame's table
            panel.get_by_role("tab", name="placement", exact=True).click()
            shown = panel.locator("table.dataframe:visible")
            expect(shown).to_have_count(1)
            expect(shown).to_contain_text("embed_tokens")
            expect(panel.get_by_text(re.compile(r"^placement: \d+ rows$"))).to_be_visible()
            expect(panel_report).to_be_hidden()
            panel.get_by_role("tab", name="diagnosis").click()
            expect(panel_report).to_be_visible()

            _screenshot_whole_notebook(page, OUTPUT / "notebook.png")
            (OUTPUT / "refused-requests.txt").write_text("".join(f"{url}\n" for url in browser.refused))
            if target := os.environ.get(SCREENSHOT_ENV):
                _readme_screenshot(page, REPO / target)
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=OUTPUT / "failure.png")
            raise
    print(f"browser test ({context}): {time.perf_counter() - started:.1f} s in all")
