"""The version lab: run a scenario under other transformers releases, each in a side environment.

A side environment is a venv per transformers release, made on demand and cached (by default under
~/.cache/qwenvl-diag/envs/transformers-<version>-<kit environment>; QWENVL_DIAG_CACHE moves the cache). It
holds only transformers and the accelerate of the same weeks, plus what those need in other versions
(tokenizers, huggingface-hub). torch, qwen-vl-utils and the kit itself come from the kit's own
environment, through a `.pth` file that adds the kit's site-packages *after* the side environment's
own, so the side environment's packages shadow the kit's. (A venv made with --system-site-packages
from a venv's interpreter would see the base Python's site-packages, not the kit's: hence the .pth.)
The packages are installed by uv when the kit's environment has it (the `uv` wheel, a dependency, or one on
PATH): uv resolves the pair against the kit's environment, as pip would, and installs only what that lacks;
otherwise, or when `pip_args` are given, pip runs from the kit's environment (`pip --python <side env>`),
so the side environment needs neither. Runs in a side environment go to its worker (`workers`).

The environment is built in a temporary directory next to its final place and renamed into place only
once transformers imports at the release asked for and torch was not reinstalled; a failed or
interrupted install (offline, unreachable index, no such release) leaves nothing behind.

>>> qd.run_in_versions(qd.Scenario.preset("seed-video"), ["4.49.0", "4.51.3", "4.52.4", "latest"])

Releases from 4.45.0 (the first with Qwen-VL) run; `ACCELERATE_FOR` pairs each minor release
with its accelerate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pandas as pd
from packaging.version import InvalidVersion, Version

from ._compat import TRANSFORMERS_VERSION
from .errors import InvalidArgumentError, UnsupportedReleaseError, VersionLabError
from .explain.lines import index_note
from .judged import Judged
from .report import short_path
from .scenario import Scenario

VERSION_COLUMNS = ["transformers", "accelerate", "outcome", "error", "file", "line", "known_bug", "note"]
"""Columns of `run_in_versions`: one row per release, in the order asked. `transformers` and
`accelerate` are the versions the run used; `outcome` one of `OUTCOMES`; `error` the run's error text
(or the kit's message when it could not run the scenario); `file` and `line` where devices were mixed,
`file` as the path inside the site-packages ("transformers/models/..."); `known_bug` the catalogue id
it matched (None when none); `note` what limited the run's matching (a release newer than the kit's line
index: `index_note`), else None."""

OUTCOMES = ("passed", "failed", "kit error")
INSTALLED = "installed"
LATEST = "latest"
OLDEST = Version("4.45.0")
RELEASES = Path(__file__).resolve().parent / "data" / "releases.json"
ACCELERATE_FOR: dict[str, str] = json.loads(RELEASES.read_text())["accelerate_for"]
"""The accelerate release of the same weeks as each transformers minor release ("5.25" -> "1.16.0"), from
`qwenvl_diag/data/releases.json` (`make refresh` adds each new minor); a minor newer than the table gets
the newest accelerate on the index."""

READY = "qwenvl-diag-env.json"
PIP_TIMEOUT_S = 900
RUN_TIMEOUT_S = 900


@dataclass
class SideEnv:
    """A side environment: its `python`, the `transformers` and `accelerate` it runs, and, when this
    call made it, how long that took (`created`, `seconds`)."""

    transformers: str
    accelerate: str
    python: str
    path: Path | None = None
    created: bool = False
    seconds: float = 0.0
    details: dict = field(default_factory=dict, repr=False)


def cache_dir(root: str | Path | None = None) -> Path:
    """Where side environments live: `root`, else $QWENVL_DIAG_CACHE/envs, else ~/.cache/qwenvl-diag/envs."""
    if root is not None:
        return Path(root).expanduser().absolute()
    base = os.environ.get("QWENVL_DIAG_CACHE")
    return (Path(base).expanduser().absolute() if base else Path.home() / ".cache" / "qwenvl-diag") / "envs"


def _run_tool(name: str, command: list[str], timeout: float = PIP_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`command` (pip or uv, called `name`), its output captured; too slow is a `VersionLabError`."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise VersionLabError(f"{name} took longer than {timeout:.0f} s: {' '.join(command)}") from error


def _pip(*args: str, timeout: float = PIP_TIMEOUT_S) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    return _run_tool("pip", command, timeout)


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(line for line in text.strip().splitlines()[-lines:])


@lru_cache(maxsize=8)
def released_versions(package: str = "transformers", pip_args: tuple[str, ...] = ()) -> tuple[Version, ...]:
    """The final releases of `package` on the package index, newest first (asks pip once per process)."""
    done = _pip("index", "versions", package, *pip_args, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("Available versions:")]
    if done.returncode != 0 or not lines:
        raise VersionLabError(
            f"Cannot list the releases of {package} on the package index (offline, or the index is "
            f"unreachable?). pip said:\n{_tail(done.stderr or done.stdout)}"
        )
    versions = [Version(v.strip()) for v in lines[0].split(":", 1)[1].split(",")]
    return tuple(v for v in versions if not v.is_prerelease and not v.is_devrelease)


def resolve_version(version: str, pip_args: tuple[str, ...] = ()) -> str:
    """A concrete transformers release for `version`: "latest" (the newest on the index), "installed"
    (the kit's own), or a release string such as "4.51.3" (checked: 4.45.0 or newer)."""
    if not isinstance(version, str):
        raise InvalidArgumentError(f"A transformers version is a string like '4.51.3'; got {version!r}.")
    if version == INSTALLED:
        return str(TRANSFORMERS_VERSION)
    if version == LATEST:
        return str(released_versions("transformers", pip_args)[0])
    try:
        parsed = Version(version)
    except InvalidVersion as error:
        raise InvalidArgumentError(
            f"{version!r} is not a release: use 'latest', 'installed' or one like '4.51.3'."
        ) from error
    if parsed < OLDEST:
        raise UnsupportedReleaseError(
            f"The kit runs on transformers >= {OLDEST} (the first release with Qwen-VL, Qwen2-VL); "
            f"{version} is older: pick {OLDEST} or newer."
        )
    return str(parsed)


def matching_accelerate(transformers: str, pip_args: tuple[str, ...] = ()) -> str:
    """The accelerate release to pair with a transformers release (`ACCELERATE_FOR`; a minor newer than
    the table: the newest on the index)."""
    parsed = Version(transformers)
    pinned = ACCELERATE_FOR.get(f"{parsed.major}.{parsed.minor}")
    return pinned or str(released_versions("accelerate", pip_args)[0])


def _site_lines() -> str:
    """The .pth that puts the kit's site-packages (and their own .pth files) after the side env's."""
    paths = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    return "".join(f"import site; site.addsitedir({path!r})\n" for path in paths)


def _kit_tag() -> str:
    """Names the kit environment a side environment is built on (its Python, its site-packages and what
    is installed there), so that kits in several environments can share one cache, and a side
    environment is made anew when the kit's packages change (what it hides depends on them)."""
    site = sysconfig.get_paths()["purelib"]
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions(path=[site]))
    digest = hashlib.sha1("\n".join([site, *installed]).encode()).hexdigest()[:8]
    return f"py{sys.version_info[0]}{sys.version_info[1]}-{digest}"


# Run by a side environment's Python once its packages are installed: the top-level modules of the kit's
# packages that the release's own environment would not have. transformers 5.25 brings `kernels`: an
# older transformers that finds it importable uses it and dies (4.52: `kernels` needs a newer
# huggingface-hub; 5.8: its API changed). Hidden are the kit's packages that only the kit's own (shadowed)
# transformers or accelerate require, and those whose requirements the side environment's versions break;
# never the kit itself or what it requires (it is what runs there). Hidden (None in sys.modules), find_spec
# says it is absent, as it is in that release's own environment.
_HIDDEN = """
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
import re
kit = sys.argv[1]
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
def mine(dist): return str(dist.locate_file("")).startswith(kit)
def needs(dist):
    found = [Requirement(text) for text in dist.requires or []]
    return [r for r in found if r.marker is None or r.marker.evaluate({"extra": ""})]
def tops(dist):
    names = {str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith("..")}
    names -= {"__pycache__"}
    return sorted(n.removesuffix(".py") for n in names if not n.endswith((".dist-info", ".pth")))
visible, shadowed = {}, []
for dist in md.distributions():
    name = norm(dist.metadata["Name"])
    (shadowed.append((name, dist)) if name in visible else visible.__setitem__(name, dist))
libraries = [d for n, d in shadowed if n in ("transformers", "accelerate") and mine(d)]
came = {norm(r.name) for d in libraries for r in needs(d)}
used = {norm(r.name) for n, d in visible.items() if n not in came or not mine(d) for r in needs(d)}
hidden = {n for n in came - used if n in visible and mine(visible[n])}
for name, dist in visible.items():
    if mine(dist) and any(
        norm(r.name) in visible and not r.specifier.contains(visible[norm(r.name)].version, prereleases=True)
        for r in needs(dist)
    ):
        hidden.add(name)
if "qwenvl-diag" in visible:
    hidden -= {"qwenvl-diag", *(norm(r.name) for r in needs(visible["qwenvl-diag"]))}
print(json.dumps(sorted({top for name in hidden for top in tops(visible[name])})))
"""


def _hide_kit_only_packages(python: Path, site: Path) -> list[str]:
    """Hide, in the side environment, the kit's packages that release's own environment would not have
    (`_HIDDEN`); the hidden modules. It runs outside any checkout (cwd: the side environment), so that a
    checkout's own metadata on the path is not taken for the kit's."""
    kit = sysconfig.get_paths()["purelib"]
    command = [str(python), "-c", _HIDDEN, kit]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=site)
    if done.returncode != 0:
        raise VersionLabError(
            f"The side environment cannot read its packages' requirements:\n{_tail(done.stderr)}"
        )
    hidden = json.loads(done.stdout.strip().splitlines()[-1])
    if hidden:
        with open(site / "_qwenvl_diag_kit.pth", "a") as pth:
            pth.write(f"import sys; sys.modules.update(dict.fromkeys({hidden!r}))\n")
    return hidden


def _python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _probe(python: Path) -> dict:
    """Versions and origins of the packages that matter, as the side environment's Python sees them."""
    code = (
        "import json, accelerate, sysconfig, torch, transformers;"
        "print(json.dumps({'transformers': transformers.__version__, 'accelerate': accelerate.__version__,"
        "'torch': torch.__version__, 'torch_file': torch.__file__,"
        "'site': sysconfig.get_paths()['purelib']}))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise VersionLabError(f"The side environment does not import its packages:\n{_tail(done.stderr)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _uv() -> str | None:
    """The uv executable: the kit environment's `uv` wheel, else one on PATH, else None (then pip)."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _install_failed(transformers: str, accelerate: str, tool: str, said: str) -> VersionLabError:
    return VersionLabError(
        f"Installing transformers {transformers} and accelerate {accelerate} failed (offline, the index "
        f"unreachable, or no such release?); nothing was left behind. {tool} said:\n{_tail(said)}"
    )


def _other_torch(transformers: str, accelerate: str, what: str) -> UnsupportedReleaseError:
    kit = metadata.version("torch")
    return UnsupportedReleaseError(
        f"transformers {transformers} with accelerate {accelerate} does not run on the kit's torch {kit} "
        f"({what}); nothing was left behind. Pick a release that runs on torch {kit} (each minor release "
        f"from {OLDEST} did when this kit was made: tests/test_releases.py), or run the kit in an "
        "environment with the torch that release needs."
    )


def _uv_install(uv: str, python: Path, transformers: str, accelerate: str) -> None:
    """What pip's install does, with uv: resolve the pair against the kit's environment (uv's dry run
    there lists what the kit lacks or has at other versions), then install just those, without their
    dependencies, into the side environment; the rest comes from the kit's, as with pip."""
    wanted = [f"transformers=={transformers}", f"accelerate=={accelerate}"]
    # --color never: a Jupyter kernel forces colour on its children (CLICOLOR_FORCE), and uv's
    # coloured list would hide every pin from the parse below
    plan = _run_tool(
        "uv", [uv, "pip", "install", "--color", "never", "--python", sys.executable, "--dry-run", *wanted]
    )
    if plan.returncode != 0:
        raise _install_failed(transformers, accelerate, "uv", plan.stderr)
    pins = [line.strip()[2:] for line in plan.stderr.splitlines() if line.startswith(" + ")]
    torch = [pin for pin in pins if pin.split("==")[0] == "torch"]
    if torch:
        raise _other_torch(transformers, accelerate, f"uv would install {torch[0]}")
    if not pins:
        return
    done = _run_tool(
        "uv", [uv, "pip", "install", "--color", "never", "--python", str(python), "--no-deps", *pins]
    )
    if done.returncode != 0:
        raise _install_failed(transformers, accelerate, "uv", done.stderr)


def _pip_install(python: Path, transformers: str, accelerate: str, pip_args: tuple[str, ...]) -> None:
    done = _pip(
        "--python",
        str(python),
        "install",
        "--progress-bar",
        "off",
        *pip_args,
        f"transformers=={transformers}",
        f"accelerate=={accelerate}",
    )
    if done.returncode != 0:
        raise _install_failed(transformers, accelerate, "pip", done.stderr)


def _build(temp: Path, transformers: str, accelerate: str, pip_args: tuple[str, ...]) -> dict:
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(temp)
    python = _python_of(temp)
    site = Path(_probe_site(python))
    (site / "_qwenvl_diag_kit.pth").write_text(_site_lines())
    uv = None if pip_args else _uv()  # pip_args are pip's options: with them, pip
    if uv:
        _uv_install(uv, python, transformers, accelerate)
    else:
        _pip_install(python, transformers, accelerate, pip_args)
    hidden = _hide_kit_only_packages(python, site)
    details = _probe(python)
    details["installer"] = "uv" if uv else "pip"
    details["hidden"] = hidden
    if Path(details["torch_file"]).resolve().is_relative_to(temp.resolve()):
        installed = f"{details['installer']} installed torch {details['torch']}"
        raise _other_torch(transformers, accelerate, installed)
    if details["transformers"] != transformers:
        raise VersionLabError(
            f"The side environment imports transformers {details['transformers']}, not {transformers}."
        )
    return details


def _probe_site(python: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise VersionLabError(f"The new virtual environment does not start:\n{_tail(done.stderr)}")
    return done.stdout.strip()


def side_env(
    version: str, *, cache: str | Path | None = None, pip_args: Sequence[str] = (), build: bool = True
) -> SideEnv:
    """The side environment of transformers `version` ("4.51.3", "latest", "installed"), made on demand.

    A cached environment is reused (`created` False). "installed" is the kit's own environment.
    `pip_args` go to `pip install` (e.g. ["--index-url", URL]). With `build=False` only a cached one is
    used (no download; give an exact release then). Raises `VersionLabError` when it cannot be made (or
    is not cached and `build` is False); then nothing is left in the cache.
    """
    pip_args = tuple(pip_args)
    if version == INSTALLED:
        details = _probe(Path(sys.executable))
        return SideEnv(details["transformers"], details["accelerate"], sys.executable, details=details)
    transformers = resolve_version(version, pip_args)
    root = cache_dir(cache)
    target = root / f"transformers-{transformers}-{_kit_tag()}"
    marker = target / READY
    if marker.is_file():
        details = json.loads(marker.read_text())
        return SideEnv(transformers, details["accelerate"], str(_python_of(target)), target, details=details)
    if not build:
        raise VersionLabError(
            f"The side environment of transformers {transformers} is not made yet (in {root}), and this call "
            f"makes none. Make it once (needs a package index, about a minute): "
            f"qd.run_in_versions(scenario, [{transformers!r}]), or `make lab-envs`."
        )
    accelerate = matching_accelerate(transformers, pip_args)  # may ask the index: only when building
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    temp = Path(tempfile.mkdtemp(prefix=f".building-transformers-{transformers}-", dir=root))
    try:
        details = _build(temp, transformers, accelerate, pip_args)
        details["site"] = str(target / Path(details["site"]).relative_to(temp))  # where it will be
        seconds = time.perf_counter() - started
        (temp / READY).write_text(json.dumps({**details, "seconds": seconds}, indent=2))
        try:
            temp.rename(target)
        except OSError:  # made meanwhile by another process: use that one
            if not (target / READY).is_file():
                raise
            shutil.rmtree(temp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return SideEnv(
        transformers, details["accelerate"], str(_python_of(target)), target, True, seconds, details
    )


def doctor_in(env: SideEnv, scenario: Scenario, fmt: str = "json") -> subprocess.CompletedProcess:
    """`qwenvl-diag doctor` for `scenario` run by the side environment's Python (its worker, kept
    running between runs: `workers`)."""
    from .workers import run_cli

    argv = ["doctor", "--scenario", scenario.to_json(), "--format", fmt]
    what = f"the scenario under transformers {env.transformers}"
    return run_cli(env.python, argv, RUN_TIMEOUT_S, what)


def judge_in(env: SideEnv, scenario: Scenario) -> Judged:
    """`qd.verify`'s judgement of `scenario` (error, logit difference and ids against its single-device
    reference) made by the side environment's Python."""
    code = "import sys; from qwenvl_diag.verify import main; sys.exit(main())"
    command = [env.python, "-c", code, scenario.to_json()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise VersionLabError(
            f"The check ran longer than {RUN_TIMEOUT_S} s under {env.transformers}."
        ) from error
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise VersionLabError(
            f"The check failed to run under transformers {env.transformers}:\n{_tail(done.stderr)}"
        )
    return Judged(**json.loads(lines[-1]))


def _row(env: SideEnv, done: subprocess.CompletedProcess) -> dict:
    if done.returncode not in (0, 1) or not done.stdout.lstrip().startswith("{"):
        message = _tail(done.stderr, 1) or f"exit status {done.returncode}"
        return {
            "transformers": env.transformers,
            "accelerate": env.accelerate,
            "outcome": "kit error",
            "error": message.removeprefix("qwenvl-diag: "),
            "file": None,
            "line": None,
            "known_bug": None,
            "note": index_note(env.transformers),
        }
    report = json.loads(done.stdout)
    versions = report.get("environment") or {}
    return {
        "transformers": versions.get("transformers", env.transformers),
        "accelerate": versions.get("accelerate", env.accelerate),
        **outcome_fields(report),
    }


def outcome_fields(report: dict) -> dict:
    """`outcome`, `error`, `file`, `line`, `known_bug` and `note` (as in `VERSION_COLUMNS`) of a diagnosis
    report (`Diagnosis.to_dict()`; only its `error`, `first_mismatch`, `known_bugs` and `notes` are read)."""
    first = report.get("first_mismatch") or {}
    bugs = report.get("known_bugs") or []
    return {
        "outcome": "passed" if report.get("error") is None else "failed",
        "error": report.get("error"),
        "file": short_path(first["file"]) if first.get("file") else None,
        "line": first.get("line"),
        "known_bug": bugs[0]["id"] if bugs else None,
        "note": "; ".join(report.get("notes") or []) or None,
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a `VERSION_COLUMNS` frame: None stays None, `line` a nullable integer."""
    return pd.DataFrame(rows, columns=VERSION_COLUMNS, dtype=object).astype({"line": "Int64"})


def _progress(items: Sequence, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="release")


def run_in_versions(
    scenario: Scenario,
    versions: Sequence[str],
    *,
    cache: str | Path | None = None,
    progress: bool = True,
    pip_args: Sequence[str] = (),
    build: bool = True,
) -> pd.DataFrame:
    """Run `scenario` under each transformers release in `versions` ("4.51.3", "latest", "installed"),
    each in its side environment (made on demand, cached), and return one row per release (columns
    `VERSION_COLUMNS`). A release whose environment cannot be made raises `VersionLabError` (and leaves
    nothing half-installed); a scenario the kit cannot run there is a "kit error" row. `build=False`
    uses cached environments only (no download): one not made yet raises `VersionLabError`.

    >>> qd.run_in_versions(qd.Scenario.preset("seed-batched"), ["4.51.3", "4.52.4", "latest"])
    """
    if not isinstance(scenario, Scenario):
        raise InvalidArgumentError(f"run_in_versions takes a qd.Scenario; got {type(scenario).__name__}.")
    if isinstance(versions, str) or not versions:
        raise InvalidArgumentError(
            f"versions must be a non-empty list like ['4.51.3', 'latest']; got {versions!r}."
        )
    rows, timings = [], []
    bar = _progress(list(versions), progress, "transformers releases")
    for version in bar:
        if progress:
            bar.set_postfix_str(f"{version}: environment")
        env = side_env(version, cache=cache, pip_args=pip_args, build=build)
        if progress:
            bar.set_postfix_str(f"{env.transformers}: running")
        started = time.perf_counter()
        rows.append(_row(env, doctor_in(env, scenario)))
        timings.append(
            {
                "transformers": env.transformers,
                "created_s": env.seconds,
                "run_s": time.perf_counter() - started,
            }
        )
    frame = _frame(rows)
    frame.attrs["timings"] = timings
    return frame


@dataclass
class Bisection:
    """What `bisect_versions` found: `first` is the first release whose outcome differs from `good`'s,
    `last` the release before it; `probes` the rows of the releases it ran (columns `VERSION_COLUMNS`)."""

    first: str
    last: str
    probes: pd.DataFrame


def _signature(row: dict) -> tuple:
    return row["outcome"], row["known_bug"]


def bisect_versions(
    scenario: Scenario,
    good: str,
    bad: str,
    *,
    cache: str | Path | None = None,
    progress: bool = True,
    pip_args: Sequence[str] = (),
) -> Bisection:
    """The first transformers release between `good` and `bad` (either order of age, either may be the
    failing one) where the scenario's outcome (outcome and known bug) changes, by bisection over the
    final releases on the index; each probe runs in its side environment.

    >>> qd.bisect_versions(qd.Scenario.preset("seed-video"), "4.51.3", "4.52.4").first
    """
    pip_args = tuple(pip_args)
    ends = sorted([Version(resolve_version(good, pip_args)), Version(resolve_version(bad, pip_args))])
    releases = sorted(v for v in released_versions("transformers", pip_args) if ends[0] <= v <= ends[1])
    releases = [str(v) for v in releases]
    probed: dict[str, dict] = {}

    def outcome(index: int) -> tuple:
        version = releases[index]
        if version not in probed:
            probed[version] = (
                run_in_versions(scenario, [version], cache=cache, progress=progress, pip_args=pip_args)
                .iloc[0]
                .to_dict()
            )
        return _signature(probed[version])

    low, high = 0, len(releases) - 1
    if outcome(low) == outcome(high):
        raise VersionLabError(
            f"The scenario gives the same outcome on {releases[low]} and {releases[high]} "
            f"({probed[releases[low]]['outcome']}): nothing changes between them to bisect."
        )
    while high - low > 1:
        middle = (low + high) // 2
        if outcome(middle) == outcome(low):
            low = middle
        else:
            high = middle
    order = sorted(probed, key=Version)
    probes = _frame([probed[v] for v in order])
    return Bisection(first=releases[high], last=releases[low], probes=probes)
