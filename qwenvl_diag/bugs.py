"""The known-bug catalogue: transformers bugs that raise "Expected all tensors to be on the same device"
for Qwen-VL models, and a matcher that recognises a failure location as one of them.

Each entry names the library line that raises (`file`, `function`, `code`, checked by the tests
against the installed source of every affected release the kit's stacks hold) and the releases it
affects. Sources: `../shared/research/BUG_FACTS.md` and the transformers source itself.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ._compat import TRANSFORMERS_VERSION
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd

KNOWN_BUG_COLUMNS = [
    "id",
    "title",
    "families",
    "affected",
    "trigger",
    "location",
    "code",
    "fixed_in",
    "references",
    "signature",
    "scenario",
    "workaround",
]
"""Columns of `known_bugs()`, one row per catalogue entry. `families` is a list of family names
("qwen2_vl", "qwen2_5_vl", "qwen3_vl"); `affected` a version specifier string (">=4.49.0,<4.52.1");
`location` "models/<family>/<file>.py: <function>" (the path inside the transformers package);
`code` a substring of the source line that raises; `fixed_in` the first fixed release; `references`
a list of issue / pull-request URLs; `signature` the error as the kit's reproduction raises it (a dict:
`ErrorSignature`'s fields); `scenario` the name of the `Scenario.preset` that reproduces it (None: none
yet); `workaround` what to do short of upgrading, naming the kit's fixes (`qd.fixes()`) for it."""

TRANSFORMERS = "https://github.com/huggingface/transformers"
MASK_CODE = (
    "diagonal_attend_mask = torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)"
)
MASK_FUNCTION = "_prepare_4d_causal_attention_mask_with_cache_position"
MASK_TRIGGER = (
    "generate() (it fails at the prefill step; a plain forward passes) on a padded batch with sdpa "
    "attention (eager: any input), any modality, with the vision tower on the main GPU and embed_tokens "
    "on another GPU: the mask is built on the embeddings' GPU from a cache_position that accelerate's "
    "root hook put on the main GPU."
)
MASK_REFERENCES = (f"{TRANSFORMERS}/issues/37606", f"{TRANSFORMERS}/pull/37612")


@dataclass(frozen=True)
class ErrorSignature:
    """How a bug's error looks where the kit reproduces it: `op` the ATen op that mixed devices ("gt"),
    `devices` the kind of pair, "gpu/gpu" or "gpu/cpu", `wrapper` the CUDA wrapper its message names
    (None: TensorIterator's message names none) and `argument` the argument the message names."""

    op: str
    devices: str
    wrapper: str | None = None
    argument: str | None = None

    def row(self) -> dict:
        return {"op": self.op, "devices": self.devices, "wrapper": self.wrapper, "argument": self.argument}


@dataclass(frozen=True)
class KnownBug:
    """One catalogue entry. `file` is the path inside the transformers package."""

    id: str
    title: str
    families: tuple[str, ...]
    affected: str
    trigger: str
    file: str
    function: str
    code: str
    fixed_in: str
    references: tuple[str, ...]
    signature: ErrorSignature
    scenario: str | None
    workaround: str

    @property
    def location(self) -> str:
        return f"{self.file}: {self.function}"

    def affects(self, version: str | Version) -> bool:
        """Whether transformers `version` is in the affected range. Dev and rc builds count as the
        release they lead to (4.52.0.dev0 as 4.52.0), as in `transformers_at_least`."""
        return SpecifierSet(self.affected).contains(Version(_version(version).base_version))

    def row(self) -> dict:
        """The entry as a `known_bugs()` row: lists for `families` and `references`."""
        return {
            "id": self.id,
            "title": self.title,
            "families": list(self.families),
            "affected": self.affected,
            "trigger": self.trigger,
            "location": self.location,
            "code": self.code,
            "fixed_in": self.fixed_in,
            "references": list(self.references),
            "signature": self.signature.row(),
            "scenario": self.scenario,
            "workaround": self.workaround,
        }


def _causal_mask_bug(family: str, name: str, affected: str, scenario: str | None) -> KnownBug:
    """The batched-generate causal-mask bug as it appears in one family's modeling file."""
    return KnownBug(
        id=f"{family}-batched-causal-mask",
        title=f"{name} batched generate across GPUs: the causal mask mixes two GPUs",
        families=(family,),
        affected=affected,
        trigger=MASK_TRIGGER,
        file=f"models/{family}/modeling_{family}.py",
        function=MASK_FUNCTION,
        code=MASK_CODE,
        fixed_in="4.52.1",
        references=MASK_REFERENCES,
        # Tensor.gt of an arange on the embeddings' GPU and cache_position on the main GPU
        signature=ErrorSignature(op="gt", devices="gpu/gpu"),
        scenario=scenario,
        workaround=(
            "keep the vision tower and embed_tokens on one GPU (fix vision_with_embeddings: re-plan with "
            "them together), run on one GPU (single_device), or patch the model instance (rope_mask_hotfix)"
        ),
    )


CATALOGUE: tuple[KnownBug, ...] = (
    KnownBug(
        id="qwen2_5_vl-video-second-per-grid-ts",
        title="Qwen2.5-VL video: get_rope_index multiplies a CPU arange by a CUDA second_per_grid_ts",
        families=("qwen2_5_vl",),
        affected=">=4.49.0,<4.52.1",
        trigger=(
            "video input whose second_per_grid_ts is a tensor on a GPU (inputs.to('cuda'), or any tensor "
            "under a device map: accelerate's root hook moves it); one GPU is enough. get_rope_index builds "
            "its time index with torch.arange on the CPU and multiplies it by a 0-dim CUDA tensor, which "
            "PyTorch refuses (only 0-dim CPU tensors are exempt). The list form never fails."
        ),
        file="models/qwen2_5_vl/modeling_qwen2_5_vl.py",
        function="get_rope_index",
        code="time_tensor = expanded_range * second_per_grid_t",
        fixed_in="4.52.1",
        references=(
            f"{TRANSFORMERS}/pull/37597",
            "https://github.com/QwenLM/Qwen3-VL/issues/270",
            "https://github.com/QwenLM/Qwen3-VL/issues/1131",
            "https://github.com/EvolvingLMMs-Lab/lmms-eval/issues/643",
        ),
        # Tensor.mul of the CPU arange and the 0-dim CUDA second_per_grid_t
        signature=ErrorSignature(op="mul", devices="gpu/cpu"),
        scenario="seed-video",
        workaround=(
            "hand second_per_grid_ts to the model as a list of floats (fix second_per_grid_ts_as_list), "
            "or patch the model instance (rope_mask_hotfix)"
        ),
    ),
    _causal_mask_bug("qwen2_5_vl", "Qwen2.5-VL", ">=4.49.0,<4.52.1", "seed-batched"),
    # Before 4.47 Qwen2-VL's generation wrapper did not pass cache_position (BUG_FACTS.md). No Qwen2-VL
    # checkpoint ships yet, so no scenario reproduces it.
    _causal_mask_bug("qwen2_vl", "Qwen2-VL", ">=4.47.0,<4.52.1", None),
)


def _version(version: str | Version | None) -> Version:
    if version is None:
        return TRANSFORMERS_VERSION
    if isinstance(version, Version):
        return version
    try:
        return Version(str(version))
    except InvalidVersion as error:
        raise InvalidArgumentError(
            f"{version!r} is not a version string; pass a transformers release such as '4.51.3'."
        ) from error


def known_bugs() -> pd.DataFrame:
    """The catalogue as a DataFrame with the columns `KNOWN_BUG_COLUMNS`, one row per entry.

    >>> qd.known_bugs()[["id", "affected", "fixed_in"]]
    """
    import pandas as pd

    return pd.DataFrame([bug.row() for bug in CATALOGUE], columns=KNOWN_BUG_COLUMNS)


def get_bug(bug_id: str) -> KnownBug:
    """The catalogue entry called `bug_id`."""
    for bug in CATALOGUE:
        if bug.id == bug_id:
            return bug
    raise InvalidArgumentError(
        f"No known bug {bug_id!r}; the catalogue holds {', '.join(b.id for b in CATALOGUE)}."
    )


def same_file(path: str, file: str) -> bool:
    """Whether `path` (any machine's, "/" or "\\" separated) is `file`, a path inside transformers."""
    path = path.replace("\\", "/")
    return path == file or path.endswith("/" + file)


def squeeze(text: str) -> str:
    """`text` with each run of whitespace made one space: code compared whatever its layout."""
    return " ".join(text.split())


def match_known_bugs(
    file: str,
    function: str,
    code: str,
    transformers_version: str | None = None,
    *,
    include_unaffected: bool = False,
) -> list[dict]:
    """The catalogue entries a failure location is an instance of, as `known_bugs()` rows plus
    `version` (the release checked) and `version_affected`.

    A location matches an entry when `file` ends with the entry's path inside transformers
    (".../transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py"), `function` is its function (a
    qualified "Class.function" counts) and `code`, the source line that raised, contains the entry's
    code (whitespace-insensitive). `transformers_version` defaults to the installed release.

    A location match on a release outside the entry's affected range is *not* a known bug of that
    release (the same line can raise for another reason): it is left out, unless
    `include_unaffected=True`, which returns it with `version_affected` False.
    """
    for name, value in (("file", file), ("function", function), ("code", code)):
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a string; got {type(value).__name__}.")
    version = _version(transformers_version)
    matches = []
    for bug in CATALOGUE:
        located = (
            same_file(file, bug.file)
            and function.rsplit(".", 1)[-1] == bug.function
            and squeeze(bug.code) in squeeze(code)
        )
        if not located:
            continue
        affected = bug.affects(version)
        if affected or include_unaffected:
            matches.append({**bug.row(), "version": str(version), "version_affected": affected})
    return matches


def transformers_root() -> Path:
    """The installed transformers package directory."""
    import transformers

    return Path(transformers.__file__).parent


def find_in_source(bug: KnownBug | str, root: Path | None = None) -> tuple[Path, int] | None:
    """Where the bug's code line sits in a transformers source tree (default: the installed one):
    (file, line number) of the first line inside a function named `bug.function` that contains
    `bug.code`, or None when the file, the function or the line is absent (a fixed release)."""
    bug = get_bug(bug) if isinstance(bug, str) else bug
    if not isinstance(bug, KnownBug):
        raise InvalidArgumentError(f"Expected a KnownBug or a bug id; got {type(bug).__name__}.")
    path = (root or transformers_root()) / bug.file
    if not path.is_file():
        return None
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == bug.function:
            for number in range(node.lineno, node.end_lineno + 1):
                if squeeze(bug.code) in squeeze(lines[number - 1]):
                    return path, number
    return None
