"""The documentation site (mkdocs.yml, docs/) and the notebooks as posts (scripts/notebooks.py).

The generated pages (the catalogue from `qd.known_bugs()`, the API reference from the export table) are
checked in both stacks. The site itself is built, as `make docs` builds it, in the legacy stack, whose
notebooks show the seed's failures as they fail: `mkdocs build --strict` (a warning fails it), the
notebook pages with their outputs, every entry on the catalogue page, every section the README had on a
page; a post written from 01 renders with its figures; and in headless Chromium the site's page of 01
shows the diagnosis and the placement figure. This file sorts after test_notebooks.py, so the site reuses
the notebooks that test executed (test-output/executed) instead of running them again.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import markdown
import pytest
from conftest import MASK_CODE, VIDEO_CODE, load_script

import qwenvl_diag as qd
from qwenvl_diag import _EXPORTS
from qwenvl_diag._compat import TRANSFORMERS_5
from qwenvl_diag.bugs import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "test-output" / "site"
SAME_DEVICE = "Expected all tensors to be on the same device"
BUILT_HERE = not TRANSFORMERS_5  # the legacy stack builds the site; the current one checks its pages
built_here = pytest.mark.skipif(
    not BUILT_HERE, reason="the site is built in the legacy stack (make docs), where the seed's failures fail"
)

# every section the README had before it was cut to a page, and the site page that holds it now
MOVED = {
    "Supported stacks": "guide/stacks-and-releases",
    "Supported releases": "guide/stacks-and-releases",
    "Release day: make refresh (the maintainer's routine)": "guide/stacks-and-releases",
    "What is there": "guide/api",
    "Simulated GPUs": "guide/simulated-gpus",
    "Training engines: FSDP2": "guide/engines",
    "Placement": "guide/placement",
    "Diagnostics": "guide/diagnosis",
    "Start from a traceback": "guide/explain",
    "Known bugs: the catalogue": "catalogue",
    "Fixes, verification and the version lab": "guide/fixes",
    "Sweeps: which layouts fail, on which release": "guide/sweeps",
    "Findings: where the layouts break (the realistic sweep)": "findings",
    "Findings: the new families (Qwen3.5, Qwen3.5-MoE, the Omni thinkers)": "findings",
    "Notebooks and panels": "guide/notebooks",
    "Tests and benchmarks": "development",
    "Two commands": "",
}


gen_pages = load_script("gen_pages", folder="docs")
notebooks = load_script("notebooks")


def _text(html: str) -> str:
    """A page's visible text, roughly: tags dropped, entities of quotes and ampersands read."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"<[^>]+>", "", text)
    for entity, char in (("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'")):
        text = text.replace(entity, char)
    return text


def _page(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text()


def test_the_catalogue_table_says_what_the_catalogue_says():
    rows = [line.split(" | ") for line in gen_pages.catalogue_table().splitlines() if line.startswith("| [`")]
    found = {re.match(r"\| \[`([^`]+)`\]", row[0]).group(1): row for row in rows}
    assert list(found) == [bug.id for bug in CATALOGUE]
    fixes = qd.fixes().set_index("name")["addresses"]
    for bug in CATALOGUE:
        _, kind, affected, fixed_in, where, scenario, named = found[bug.id]
        assert (kind, affected.replace(" ", ""), fixed_in) == (bug.kind, bug.affected, bug.fixed_in or "—")
        assert where.strip("`") == bug.location.rsplit("/", 1)[-1] and scenario.strip("`") == bug.scenario
        listed = [name.strip("` |") for name in named.split(",")]
        assert listed == ([name for name, addressed in fixes.items() if bug.id in addressed] or ["—"]), bug.id


def test_the_catalogue_page_has_a_section_per_entry_with_its_line_and_trigger():
    page = gen_pages.catalogue_page()
    assert gen_pages.CATALOGUE_MARKER not in page
    sections = re.split(r"\n### ", page.split("\n## The entries\n", 1)[1])[1:]
    assert [re.match(r"`([^`]+)`", section).group(1) for section in sections] == [b.id for b in CATALOGUE]
    for bug, section in zip(CATALOGUE, sections, strict=True):
        assert f"`{bug.code}`" in section and bug.trigger in section and bug.function in section, bug.id
        assert all(url in section for url in bug.references), bug.id


def test_the_reference_documents_every_public_name_where_it_is_defined():
    page = gen_pages.reference_page()
    documented = re.findall(r"^::: qwenvl_diag\.(\S+)$", page, flags=re.M)
    names = {path.rsplit(".", 1)[-1] for path in documented}
    assert names == set(qd.__all__)
    for path in documented:
        module, _, name = path.rpartition(".")
        if module:  # each block names the module that defines the name, as the package loads it
            assert name in _EXPORTS[module], path


@pytest.fixture(scope="module")
def site() -> tuple[Path, str]:
    """The site built as `make docs` builds it (strict), into test-output/site; (the site, the log)."""
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "DISABLE_MKDOCS_2_WARNING": "true",
        "QWENVL_DIAG_CACHE": str(ROOT / "test-output"),
    }
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(SITE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-4000:]
    return SITE, log


@built_here
def test_the_site_builds_strict_without_a_warning(site):
    _, log = site
    assert not re.search(r"^(WARNING|ERROR)\b", log, flags=re.M), log[-4000:]
    assert "Documentation built in" in log


@built_here
def test_the_notebook_pages_show_their_outputs(site):
    root, _ = site
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        html = _page(root, f"notebooks/{path.stem}")
        assert html.count("jp-OutputArea-output") >= 3, path.name  # executed, outputs kept
        outputs = [
            output for cell in notebooks.executed(path.name).cells for output in cell.get("outputs", [])
        ]
        assert not [output for output in outputs if output.output_type == "error"], path.name
    reproduce = _text(_page(root, "notebooks/01_reproduce"))
    for shown in (SAME_DEVICE, MASK_CODE, VIDEO_CODE, "qwen2_5_vl-batched-causal-mask"):
        assert shown in reproduce, shown  # on transformers 4.51.3 both seed failures fail on the page
    assert "data:image/png;base64," in _page(root, "notebooks/01_reproduce")  # the placement figure


@built_here
def test_the_catalogue_page_lists_every_entry(site):
    root, _ = site
    html = _page(root, "catalogue")
    for bug in CATALOGUE:
        assert f'id="{bug.id}"' in html and bug.code in _text(html), bug.id


@built_here
def test_every_section_of_the_old_readme_lives_on_a_page(site):
    root, _ = site
    for heading, page in MOVED.items():
        assert heading in _text(_page(root, page)), (heading, page)


@built_here
def test_the_api_reference_page_documents_every_public_name(site):
    root, _ = site
    html = _page(root, "reference")
    for module, names in _EXPORTS.items():
        for name in names:
            assert f'id="qwenvl_diag.{module}.{name}"' in html, f"{module}.{name}"


@built_here
def test_a_post_renders_with_its_figures(tmp_path):
    post = notebooks.write_post("01", tmp_path)
    assert post == tmp_path / "01_reproduce" / "01_reproduce.md"
    text = post.read_text()
    html = markdown.markdown(text, extensions=["fenced_code", "tables"])
    figures = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert figures, "the post has no figure"
    for source in figures:
        assert not source.startswith(("data:", "/", "http")), source  # files beside the post
        figure = post.parent / source
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", source
    assert "qd.plot_placement(plan)" in text and SAME_DEVICE in text and MASK_CODE in text
    assert "qwenvl_diag_source_sha256" not in text


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    """`directory` over HTTP on loopback (the site's links are directory URLs); yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@built_here
@pytest.mark.browser
def test_the_site_page_of_01_shows_the_diagnosis_and_the_placement_figure(site, tmp_path):
    from browser_support import OUTPUT, open_browser, readme_screenshot, require_browser, screenshot_element

    chromium = require_browser()
    root, _ = site
    with _serve(root) as base, open_browser(chromium, tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{base}/notebooks/01_reproduce/", wait_until="load")
        body = page.inner_text("body")
        assert SAME_DEVICE in body and MASK_CODE in body and "qwen2_5_vl-batched-causal-mask" in body
        placement = page.locator(".jp-Cell", has_text="qd.plot_placement(plan)").first
        figure = placement.locator(".jp-OutputArea-output img").first
        figure.scroll_into_view_if_needed()
        width, height = figure.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert width > 300 and height > 100, (width, height)  # the figure decoded and drawn
        diagnosis = page.locator(".jp-Cell", has_text="explain(video)").first
        assert "get_rope_index" in diagnosis.inner_text()
        OUTPUT.mkdir(parents=True, exist_ok=True)
        screenshot_element(page, placement, OUTPUT / "site-01_reproduce-placement.png")
        if target := os.environ.get("QWENVL_DIAG_SCREENSHOT_TO"):
            readme_screenshot(page, placement, ROOT / target / "site_01_reproduce.png")
        assert context.refused == [], context.refused  # the site reads offline: nothing off loopback
