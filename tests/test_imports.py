"""The kit's import structure: what each entry point imports, the lazy public API, no import cycles.

Import costs are checked by what lands in `sys.modules` of a fresh interpreter, never by timing
(`benchmarks/bench_import.py` prints the ratios).
"""

from __future__ import annotations

import ast
import graphlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import qwenvl_diag as qd

PACKAGE = Path(qd.__file__).parent
TORCH_SIDE = ("torch", "transformers")
OPTIONAL = ("ipywidgets", "matplotlib", "torchvision", "transformers.image_processing_utils")


def _fresh(code: str) -> dict:
    """What `code` prints as JSON on its last line, run by a fresh interpreter that imports this kit."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _loaded_after(statements: str, watched: tuple[str, ...]) -> list[str]:
    code = f"import json, sys\n{statements}\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    return _fresh(code)


@pytest.mark.parametrize(
    "statements",
    [
        "import qwenvl_diag",
        "import qwenvl_diag.bugs",
        "import qwenvl_diag.errors",
        "import qwenvl_diag.scenario",
        "import qwenvl_diag as qd; qd.explain(open(qd.__file__).read())",
    ],
)
def test_the_package_the_catalogue_and_the_errors_import_without_torch(statements):
    assert _loaded_after(statements, TORCH_SIDE) == []


def test_the_cli_and_every_subcommand_help_import_no_torch():
    code = (
        "import argparse, contextlib, io, json, sys\n"
        "from qwenvl_diag import cli\n"
        "actions = cli._parser()._actions\n"
        "commands = next(a for a in actions if isinstance(a, argparse._SubParsersAction)).choices\n"
        "for argv in [['--help'], *([name, '--help'] for name in commands)]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        cli.main(argv)\n"
        f"loaded = [m for m in {TORCH_SIDE!r} if m in sys.modules]\n"
        "print(json.dumps({'commands': list(commands), 'loaded': loaded}))"
    )
    found = _fresh(code)
    assert {"doctor", "explain"} <= set(found["commands"])
    assert found["loaded"] == []


def test_the_whole_public_api_imports_no_optional_integration():
    """Every public name resolved: torch and transformers, but no widgets, plotting or image processing."""
    loaded = _loaded_after(
        "import qwenvl_diag as qd\nfor name in qd.__all__: getattr(qd, name)", OPTIONAL + TORCH_SIDE
    )
    assert loaded == list(TORCH_SIDE)


@pytest.mark.parametrize("name", qd.__all__)
def test_every_public_name_imports_and_is_listed(name):
    namespace: dict = {}
    exec(f"from qwenvl_diag import {name}", namespace)
    assert namespace[name] is getattr(qd, name)
    assert name in dir(qd)


def test_functions_named_like_their_modules_stay_functions():
    found = _fresh(
        "import json, qwenvl_diag as qd, qwenvl_diag.verify, qwenvl_diag.diagnose, qwenvl_diag.fixes\n"
        "import qwenvl_diag.explain\n"
        "names = ('verify', 'diagnose', 'fixes', 'explain')\n"
        "print(json.dumps([type(getattr(qd, n)).__name__ for n in names]))"
    )
    assert found == ["function"] * 4


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        qd.no_such_name  # noqa: B018


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(module: str, path: Path, modules: set[str]) -> set[str]:
    """The kit modules `module`'s source imports, at any depth (see `test_no_import_cycles`)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    return found & modules


def test_no_import_cycles():
    """The kit's modules import each other without a cycle.

    The graph: one node per module (a package is its `__init__`); an edge A -> B for every import in
    A's source that names B, wherever it stands (module level, inside a function, under
    TYPE_CHECKING), since an import moved into a function to dodge a cycle is still a cycle of the
    design. `from P import n` names the module P.n when there is one, else P; `import P.Q` names P.Q,
    not the packages Python initialises on the way (a package's `__init__`, re-exports included, is
    a dependency only of the modules that import from it). The top package's lazy table of public
    names counts as its imports.
    """
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    graph = {module: _imported(module, path, modules) - {module} for module, path in paths.items()}
    lazy = {f"qwenvl_diag.{module}" for module in [*qd._EXPORTS, *qd._SUBMODULES]}
    assert lazy <= modules
    graph["qwenvl_diag"] |= lazy
    assert "qwenvl_diag.judged" in graph["qwenvl_diag.versions"] & graph["qwenvl_diag.verify"]
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


BENCHMARKS = sorted((PACKAGE.parent / "benchmarks").glob("bench_*.py"))


def test_every_benchmark_imports_what_it_runs():
    """`make bench` must run end to end: each script's imports resolve (a helper it borrows from the tests
    was once renamed under it). One fresh interpreter imports every name the scripts import, without
    running them (benchmarks are timed, tests are not)."""
    folders = [str(PACKAGE.parent / "tests"), str(PACKAGE.parent / "benchmarks")]  # as each script sets it
    lines = [f"import sys; sys.path[:0] = {folders!r}"]
    for path in BENCHMARKS:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                lines.append(f"from {node.module} import {', '.join(alias.name for alias in node.names)}")
            elif isinstance(node, ast.Import):
                lines.append(f"import {', '.join(alias.name for alias in node.names)}")
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, cwd=PACKAGE.parent
    )
    assert len(BENCHMARKS) >= 8 and done.returncode == 0, done.stderr[-800:]


def test_no_two_modules_export_the_same_public_name():
    """A name exported twice would silently be the last module's (a sweep's summary columns once hid the
    placement summary's)."""
    from qwenvl_diag import _EXPORTS

    names = [name for exported in _EXPORTS.values() for name in exported]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
