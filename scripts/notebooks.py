"""Executed notebooks, for the documentation site and for posts.

`executed(name)` runs `notebooks/<name>` top to bottom in a fresh kernel of this interpreter (nbclient)
and keeps the result in `test-output/executed/transformers-<version>/`, keyed by the committed
notebook's bytes: the test suite's run (tests/test_notebooks.py) and `make docs` share one execution.

`make post NB=01` (this script) writes a notebook as a Markdown post with its figures beside it:

    python scripts/notebooks.py post 01 --to posts
    # posts/01_reproduce/01_reproduce.md and posts/01_reproduce/01_reproduce_files/*.png
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
CACHE = ROOT / "test-output"
SOURCE_KEY = "qwenvl_diag_source_sha256"  # the committed notebook's hash, in the executed one's metadata


def notebook_path(name: str) -> Path:
    """`notebooks/<name>`, from its file name, its stem or its number ("01")."""
    found = [path for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")) if name in (path.name, path.stem)]
    found = found or [path for path in sorted(NOTEBOOK_DIR.glob(f"{name}_*.ipynb"))]
    if len(found) != 1:
        names = ", ".join(path.stem for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")))
        raise SystemExit(f"no single notebook {name!r} in notebooks/ (there are: {names})")
    return found[0]


def _source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_path(path: Path) -> Path:
    """Where the executed copy of `path` is kept for this stack's transformers."""
    import transformers

    return CACHE / "executed" / f"transformers-{transformers.__version__}" / path.name


def execute(path: Path, after: Callable[[NotebookClient], None] | None = None) -> nbformat.NotebookNode:
    """Run the notebook at `path` in a fresh kernel of this interpreter (the version lab's cache is the
    kit's test-output, as in the tests), then `after(client)` in the same kernel; keep the result in
    the cache and return it."""
    notebook = nbformat.read(path, as_version=4)
    # nbclient waits only 4 s (its default) for a cell's output after the cell's reply, then drops what is
    # late without a word: on a loaded machine a printed line went missing that way (CI, legacy stack,
    # notebook 02). Wait a minute, and fail loudly rather than lose output.
    client = NotebookClient(
        notebook,
        timeout=300,
        iopub_timeout=60,
        raise_on_iopub_timeout=True,
        kernel_name="python3",
        resources={"metadata": {"path": path.parent}},
    )
    # the kernel must be this stack's interpreter, not whatever "python3" means elsewhere
    client.km_kwargs = {"kernel_cmd": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]}
    environment = {**os.environ, "QWENVL_DIAG_CACHE": os.environ.get("QWENVL_DIAG_CACHE", str(CACHE))}
    with client.setup_kernel(env=environment):
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        if after is not None:
            after(client)
    notebook.metadata[SOURCE_KEY] = _source_hash(path)
    target = cached_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return notebook


def executed(name: str) -> nbformat.NotebookNode:
    """The notebook `name` executed in this stack: the cached run when the committed notebook has not
    changed since, else a new one."""
    path = notebook_path(name)
    target = cached_path(path)
    if target.exists():
        notebook = nbformat.read(target, as_version=4)
        if notebook.metadata.get(SOURCE_KEY) == _source_hash(path):
            return notebook
    return execute(path)


def write_post(name: str, to: Path) -> Path:
    """Write the executed notebook `name` as `<to>/<stem>/<stem>.md`, its figures in `<stem>_files/`
    beside it (nbconvert's Markdown exporter); returns the Markdown file."""
    from nbconvert import MarkdownExporter
    from nbconvert.writers import FilesWriter

    path = notebook_path(name)
    notebook = executed(name)
    notebook.metadata.pop(SOURCE_KEY, None)
    directory = to / path.stem
    body, resources = MarkdownExporter().from_notebook_node(
        notebook, resources={"output_files_dir": f"{path.stem}_files"}
    )
    FilesWriter(build_directory=str(directory)).write(body, resources, notebook_name=path.stem)
    return directory / f"{path.stem}.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    post = verbs.add_parser("post", help="write a notebook as a Markdown post with its figures")
    post.add_argument("notebook", help="its number (01), stem or file name")
    post.add_argument("--to", type=Path, default=ROOT / "posts", help="the posts' directory (posts/)")
    arguments = parser.parse_args(argv)
    written = write_post(arguments.notebook, arguments.to)
    print(f"wrote {written.relative_to(Path.cwd()) if written.is_relative_to(Path.cwd()) else written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
