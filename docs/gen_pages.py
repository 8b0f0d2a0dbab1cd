"""The site's generated pages (mkdocs-gen-files runs this at every build; mkdocs.yml):

- `catalogue.md`: docs/_gen/catalogue.md with the table and one section per entry from `qd.known_bugs()`
  and `qd.fixes()`, so the page cannot drift from the code;
- `reference.md`: the API reference, one mkdocstrings block per public name, from the package's export
  table (the public names load lazily, so griffe cannot list them from `__init__` alone);
- `notebooks/<name>.ipynb`: each notebook executed in this stack (scripts/notebooks.py; the test suite's
  run when the notebook has not changed since), rendered with its outputs by mkdocs-jupyter.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

import qwenvl_diag as qd
from qwenvl_diag import _EXPORTS

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
CATALOGUE_MARKER = "<!-- the table and the entries: docs/gen_pages.py, from qd.known_bugs() -->"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fixes_by_entry() -> dict[str, list[str]]:
    fixes = qd.fixes()
    return {
        bug_id: [
            name
            for name, addresses in zip(fixes["name"], fixes["addresses"], strict=True)
            if bug_id in addresses
        ]
        for bug_id in qd.known_bugs()["id"]
    }


def catalogue_table() -> str:
    """The catalogue as a Markdown table: entry, kind, affected, fixed in, raises at, reproduce, fixes."""
    fixes = _fixes_by_entry()
    rows = [
        "| entry | kind | affected | fixed in | raises at | reproduce | fixes |",
        "|---|---|---|---|---|---|---|",
    ]
    for bug in qd.known_bugs().itertuples():
        where = bug.location.rsplit("/", 1)[-1]
        named = ", ".join(f"`{name}`" for name in fixes[bug.id]) or "—"
        affected = bug.affected.replace(",", ", ")
        rows.append(
            f"| [`{bug.id}`](#{bug.id}) | {bug.kind} | {affected} | {bug.fixed_in or '—'} | `{where}` "
            f"| `{bug.scenario}` | {named} |"
        )
    return "\n".join(rows)


def catalogue_entries() -> str:
    """One section per entry: what triggers it, the line, its signature, the workaround, references."""
    fixes = _fixes_by_entry()
    sections = []
    for bug in qd.known_bugs().itertuples():
        signature = bug.signature or {}
        said = (
            ", ".join(
                f"{key.replace('_', ' ')} "
                + ", ".join(f"`{v}`" for v in (value if isinstance(value, list) else [value]))
                for key, value in signature.items()
                if value
            )
            or "—"
        )
        lines = [
            f"### `{bug.id}` {{#{bug.id}}}",
            "",
            f"**{bug.title}**",
            "",
            f"- **families**: {', '.join(f'`{family}`' for family in bug.families)}; **kind**: {bug.kind}",
            f"- **affected**: `{bug.affected}`; **fixed in**: {bug.fixed_in or 'open upstream'}",
            f"- **raises at**: `{bug.location}`",
            f"- **code**: `{bug.code}`",
            *(f"- **also written**: `{variant}`" for variant in bug.variants),
            f"- **error signature**: {said}",
            f"- **trigger**: {bug.trigger}",
            f"- **reproduce**: `qd.run(qd.Scenario.preset({bug.scenario!r}))`",
            f"- **workaround**: {bug.workaround}",
            f"- **fixes**: {', '.join(f'`{name}`' for name in fixes[bug.id]) or '—'}",
            f"- **references**: {', '.join(f'<{url}>' for url in bug.references) or '—'}",
        ]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def catalogue_page() -> str:
    """docs/_gen/catalogue.md with the generated table, and the entries at its end."""
    template = (DOCS / "_gen" / "catalogue.md").read_text()
    if CATALOGUE_MARKER not in template:
        raise SystemExit(f"docs/_gen/catalogue.md lost its marker {CATALOGUE_MARKER!r}")
    page = template.replace(CATALOGUE_MARKER, catalogue_table())
    return f"{page.rstrip()}\n\n## The entries\n\n{catalogue_entries()}\n"


def reference_page() -> str:
    """The API reference: the public names by the module that defines them, as `__init__` lists them."""
    parts = [
        "# API reference",
        "",
        "Every public name of `qwenvl_diag` (`import qwenvl_diag as qd`), by the module that defines it;",
        "generated from the package's export table and the docstrings.",
    ]
    for module, names in _EXPORTS.items():
        parts += ["", f"## `qwenvl_diag.{module}`", ""]
        parts += [f"::: qwenvl_diag.{module}.{name}\n" for name in names]
    parts += ["", "## `qwenvl_diag.widgets`", "", "::: qwenvl_diag.widgets", ""]
    return "\n".join(parts)


def _load_notebooks_script():
    spec = importlib.util.spec_from_file_location("scripts_notebooks", ROOT / "scripts" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    import mkdocs_gen_files

    with mkdocs_gen_files.open("catalogue.md", "w") as page:
        page.write(catalogue_page())
    with mkdocs_gen_files.open("reference.md", "w") as page:
        page.write(reference_page())
    notebooks = _load_notebooks_script()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = notebooks.executed(path.name)
        with mkdocs_gen_files.open(f"notebooks/{path.name}", "w") as page:
            nbformat.write(notebook, page)


if __name__ in ("__main__", "<run_path>"):  # mkdocs-gen-files runs it with runpy.run_path
    main()
