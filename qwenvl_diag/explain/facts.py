"""Facts from a pasted text: the error (kind, devices, op, CUDA wrapper, argument), the traceback's
frames and its deepest library frame, the model, the versions, the GPUs and the engine. Pure text: no
torch, no transformers.

The error texts recognised are PyTorch's own (torch 2.x; `Expected all tensors ...` in both the
"found at least two devices" wording of torch <= 2.5 and TensorIterator, and the "but got X is on ..."
wording of the generated wrappers from torch 2.6), `masked_fill_`'s, indexing's and SDPA's, read here for
their devices, op and argument; any other text `qwenvl_diag.device_errors` knows as a device error,
the convolution type check's among them, counts too.
"""

from __future__ import annotations

import re
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ..device_errors import convolution_type_mismatch, is_device_error, type_device
from ..models.families import FAMILIES
from .pins import PINNING, pinned_range
from .text import INTERNALS, PLAIN_FRAME, as_printed, clean_lines, spaced
from .tools import tools_in

FACT_KEYS = (
    "error_kind",
    "error",
    "devices",
    "device_pair",
    "op",
    "wrapper",
    "argument",
    "torch_wording",
    "frames",
    "library_frame",
    "family",
    "model_type",
    "checkpoint",
    "versions",
    "transformers_range",
    "range_from",
    "transformers_ref",
    "preview_api",
    "python",
    "gpus",
    "engine",
    "action",
    "inputs",
    "warnings",
    "tools",
)
"""Keys of `read_facts`' dict, always all present (None, [] or {} when the text does not say): `error_kind`
one of `ERROR_KINDS` or None; `error` the error line; `devices` the devices it names, in its order
("cuda:1", "cpu", "npu:0"); `device_pair` "gpu/gpu", "gpu/cpu", "gpu/meta" or None; `op` the ATen op of the
CUDA wrapper ("masked_scatter_"), `wrapper` its name ("wrapper_CUDA__masked_scatter_"), `argument` the
argument it checked ("mask"), or, for a device error read without a wrapper, an op the text names in its
words (`masked_scatter`, `index_select`); `torch_wording` "found at least two devices" (torch <= 2.5
wrappers and TensorIterator), "but got ... is on" (wrappers from torch 2.6) or "fake tensor propagation"
(torch.compile's fake tensors in older torch, the op from its ATen name); `frames` the traceback's
frames ({file, line, end, function, code}, outermost first; without a traceback, the files and lines the
text quotes, a GitHub link's `#L1687-L1695` among them, function and code None, `end` the last line of a
quoted span, else None); `library_frame` the deepest one inside transformers (else the deepest outside torch
and accelerate); `family` the Qwen-VL family ("qwen2_5_vl"), `model_type` the transformers model directory a
frame runs in ("llama": not Qwen-VL); `checkpoint` a Qwen-VL checkpoint name; `versions` {package: version}
for transformers, accelerate, torch, qwen-vl-utils; `transformers_range` a requirement on transformers
stated instead of a version (">=4.57.1", from a pin like `transformers>=4.57.1`), or implied by a tool release
the text states (`pins`: "llamafactory 0.9.1" -> ">=4.41.2,<=4.46.1"), `range_from` that tool release (None
for a stated range); `transformers_ref` the
git commit or tag a source build of transformers was installed from (`transformers@f742a64`; a
model-release tag, `@v4.49.0-Gemma-3`, also gives `versions` its release); `preview_api` what the text's code
uses of its family's preview API (`Family.preview_api`: `Qwen2_5OmniModel`, which no release has);
`python` "3.10"; `gpus` {count,
type}; `engine` a list of "device_map", "torchrun", "fsdp", "deepspeed", "vllm"; `action` "training" or
"inference" where the text says which (a trainer, `backward`, fine-tuning vs `generate`, an inference
server; None when it says both or neither); `inputs` the inputs it names, a list of "video", "image",
"batch", "text"; `warnings` the library warnings it quotes that say how the tensors got where they are
(`WARNINGS`); `tools` the packages built on transformers it shows (`tools.TOOL_KEYS` rows: the tool, and
whether its code raised, called the code that raised, or is only named)."""

ERROR_KINDS = ("device", "type", "index", "masked_fill", "sdpa", "other")
"""`device`: "Expected all tensors to be on the same device"; `type`: the convolution's "Input type (...)
and weight type (...) should be the same" with types of two devices; `index`: "indices should be either
on cpu or on the same device as the indexed tensor"; `masked_fill`: its own device check; `sdpa`:
"Expected query, key, and value to have the same device type"; `other`: an error that is not about
devices (out of memory, shapes, ...)."""

DEVICE_ERROR_KINDS = ("device", "type", "index", "masked_fill", "sdpa")

# the op each of torch's own wordings comes from (device_errors.py names the ATen source of each): the
# wrapper-less ones say no op, but only one op family writes each
_WORDING_OPS = {
    "type": "convolution",
    "index": "index",
    "masked_fill": "masked_fill",
    "sdpa": "scaled_dot_product_attention",
}
# the warnings transformers and accelerate print before a device error, which say how it came about
WARNINGS = {
    # generation/utils.py _validate_model_kwargs' device check (4.x, 5.x)
    "inputs-on-another-device": re.compile(
        r"`?input_ids`? (?:is|are) on \w+, whereas the model is on \w+", re.IGNORECASE
    ),
    # accelerate big_modeling.py: a `.to()` on a model dispatched with hooks
    "moved-dispatched-model": re.compile(
        r"You shouldn't move a model that is dispatched using accelerate hooks"
    ),
}
# a CUDA wrapper's name quoted in words ("a `wrapper_CUDA_bmm` mismatch") says the op of a device error
_WRAPPER = re.compile(r"\b(?P<wrapper>wrapper_(?:CUDA|NPU|XPU|MPS|PrivateUse1)?_+\w+)")
# what people write instead of the error: "tensors are not on the same device", "device mismatch"
_PARAPHRASE = re.compile(
    r"(?:not|n't|aren't|isn't|are not)\s+(?:all\s+)?(?:on|in)\s+the\s+same\s+(?:device|gpu)"
    r"|(?:on|across)\s+(?:two|different|multiple)\s+(?:devices|gpus).{0,40}(?:error|fail)"
    r"|device[- ]mismatch|mismatch(?:ed)?\s+devices|same[- ]device\s+error"
    r"|(?:tensors?|张量)\W.{0,60}?\b(?:on|in)\s+different\s+(?:devices|gpus)\b"
    r"|(?:不|没有)\s*(?:在|位于)\s*(?:同一|相同)\S{0,6}设备|设备不一致|设备不匹配|不同(?:的)?(?:计算)?设备上",
    re.IGNORECASE,
)

# ops people name in words that are no English word: ATen names with an underscore, the convolutions, bmm
_OPS_IN_WORDS = re.compile(
    r"(?<![\w.])(?:torch\.|F\.|\.)?(?P<op>masked_scatter_?|masked_fill_?|index_select|index_put_?|scatter_add_?"
    r"|conv[123]d|bmm|baddbmm|addmm|layer_norm|rms_norm|index_add_?)(?!\w)"
)

_DEVICE = r"(?:cuda|npu|xpu|mps|hpu|cpu|meta|privateuseone)(?::\d+)?"
_ERRORS = (
    (
        "device",
        "found at least two devices",
        re.compile(
            rf"Expected all tensors to be on the same device, but found at least two devices, "
            rf"(?P<a>{_DEVICE}) and (?P<b>{_DEVICE})!?"
            r"(?: \(when checking argument for argument (?P<argument>\w+) in method (?P<wrapper>\w+)\))?"
        ),
    ),
    (
        "device",
        "but got ... is on",
        re.compile(
            r"Expected all tensors to be on the same device, but got (?P<argument>\w+) "
            rf"is on (?P<a>{_DEVICE}), different from other tensors on (?P<b>{_DEVICE}) "
            r"\(when checking argument in method (?P<wrapper>\w+)\)"
        ),
    ),
    (
        "masked_fill",
        None,
        re.compile(
            rf"expected self and mask to be on the same device, but got mask on (?P<a>{_DEVICE}) "
            rf"and self on (?P<b>{_DEVICE})",
            re.IGNORECASE,
        ),
    ),
    ("masked_fill", None, re.compile(r"masked_fill_?: Expected inputs to be on same device")),
    (
        "index",
        None,
        re.compile(
            r"indices should be either on cpu or on the same device as the indexed tensor "
            rf"\((?P<b>{_DEVICE})\)"
        ),
    ),
    (
        "sdpa",
        None,
        re.compile(
            rf"Expected query, key, and value to have the same device type, but got query\.device: "
            rf"(?P<a>{_DEVICE}) key\.device: (?P<b>{_DEVICE})"
        ),
    ),
    # torch.compile's fake tensors in older torch (torch/_subclasses/fake_tensor.py's merge_devices:
    # f"Unhandled FakeTensor Device Propagation for {func}, found two different devices {common_device},
    # {t.device}"); 2.14's FakeTensorDeviceMismatchError prints the first wording above
    (
        "device",
        "fake tensor propagation",
        re.compile(
            r"Unhandled FakeTensor Device Propagation for aten\.(?P<op>\w+?)(?:\.\w+)?, found two different "
            rf"devices (?P<a>{_DEVICE}), (?P<b>{_DEVICE})"
        ),
    ),
)
_OTHER_ERROR = re.compile(r"^\s*(?:[\w.]+\.)?(?P<name>\w*(?:Error|Exception)):\s*(?P<message>.*)$")

# a traceback frame as IPython >= 8 prints it and as older IPython did (as Python prints it: PLAIN_FRAME)
_IPYTHON_FRAME = re.compile(r"File (?P<file>\S+?\.py):(?P<line>\d+), in (?P<function>[\w.<>]+)")
_OLD_IPYTHON_FRAME = re.compile(r"^\s*(?P<file>\S+?\.py) in (?P<function>[\w.<>]+)\(")
_ARROW = re.compile(r"^\s*-+>\s*(?P<line>\d+)\s?(?P<code>.*)$")
# rich's tracebacks: "path.py:1687 in forward", the line that ran marked "❱ 1687 │   │   code" (older: ">")
_RICH_FRAME = re.compile(
    r"^\s*(?P<file>(?:[A-Za-z]:)?[^\s:]+?\.py):(?P<line>\d+) in (?P<function>[\w.<>]+)\s*$"
)
_RICH_ARROW = re.compile(r"^\s*(?:❱|>)\s*(?P<line>\d+)\s(?P<code>.*)$")
_RICH_WRAPPED = re.compile(r"^\s*\S*[/\\]\S*$")  # a long path rich wrapped: its first part alone
_RICH_PARTIAL = re.compile(r"^\s*(?:[A-Za-z]:)?[^\s:]+?\.py:\d+(?: in)?\s*$")  # "path.py:1687 in", cut
# a file and a line (or a few) quoted outside a traceback: "modeling_qwen2_5_vl.py:1334", "modeling_x.py
# line 12", a GitHub link's "modeling_x.py#L1687-L1695", "modeling_x.py的1687-1695行" (spaced), "lines 1687 to
# 1695 of modeling_x.py"
_MODELING_FILE = r"(?P<file>[\w./\\~-]*modeling_\w+\.py)"
_SPAN = r"(?P<line>\d+)(?:\s*(?:-|–|~|to|到|至)\s*L?(?P<end>\d+))?"
_FILE_LINES = (
    re.compile(rf"{_MODELING_FILE}(?:#L|:|,?\s+lines?\s+){_SPAN}"),
    re.compile(rf"{_MODELING_FILE}\s*(?:的\s*)?第?\s*{_SPAN}\s*行"),
    re.compile(rf"\blines?\s+{_SPAN}\s+(?:of|in)\s+{_MODELING_FILE}"),
)
_MOST_LINES = 50  # a quoted span longer than this names a region, not a line

# most specific first; the Omni thinkers carry Qwen-VL's vision tower and M-RoPE. Names as people write
# them: "Qwen2.5-VL", "qwen2_5_vl", "Qwen2_5_VL...", "Qwen2.5vl", "qwen25vl", "Qwen2.5 VL"
_SEP = r"[-_ ]?"
_FAMILIES = (
    ("qwen3_omni_moe", re.compile(rf"qwen3{_SEP}omni", re.IGNORECASE)),
    ("qwen2_5_omni", re.compile(rf"qwen2[._]?5{_SEP}omni", re.IGNORECASE)),
    ("qwen4_exp", re.compile(rf"qwen4{_SEP}exp|Qwen3\.8-", re.IGNORECASE)),
    ("qwen3_5_moe", re.compile(r"qwen3_5_moe|Qwen3_5Moe|Qwen3\.5-\d+B-A\d+B", re.IGNORECASE)),
    ("qwen3_5", re.compile(r"qwen3[._]5(?!\d)", re.IGNORECASE)),
    ("qwen3_vl_moe", re.compile(r"qwen3_vl_moe|Qwen3VLMoe|Qwen3-VL-\d+B-A\d+B", re.IGNORECASE)),
    ("qwen3_vl", re.compile(rf"qwen3{_SEP}vl", re.IGNORECASE)),
    ("qwen2_5_vl", re.compile(rf"qwen2[._]?5{_SEP}vl", re.IGNORECASE)),
    ("qwen2_vl", re.compile(rf"qwen2{_SEP}vl", re.IGNORECASE)),
)
_CLASS = re.compile(r"\bQwen\w*?(?:ForConditionalGeneration|Model|Processor)\b")
_CHECKPOINT = re.compile(r"(?:Qwen/)?Qwen(?:(?:2\.5|2|3)-VL|3\.5|2\.5-Omni|3-Omni|3\.8)-[\w.]+(?:-[\w.]+)*")
_MODEL_DIR = re.compile(r"transformers[/\\]models[/\\](?P<type>\w+)[/\\]")

_VERSION = r"v?(?P<version>\d+\.\d+(?:\.\d+)*(?:\.?(?:dev|rc|a|b|post)\d*)*(?:\+[\w.]+)?)"
_PACKAGES = {
    "transformers": r"transformers",
    "accelerate": r"accelerate",
    "torch": r"(?:torch|pytorch)",
    "qwen-vl-utils": r"qwen[-_]vl[-_]utils",
}
_SOURCE_BUILD = re.compile(
    r"transformers(?:\.git)?@(?P<ref>[0-9a-f]{7,40}\b|v\d+\.\d+[\w.]*-[\w.-]*\w)"
    r"|transformers.{0,40}\bcommit (?P<commit>[0-9a-f]{7,40})\b"
)
_PYTHON = (
    re.compile(r"python(?P<version>3\.\d+)[/\\](?:site|dist)-packages", re.IGNORECASE),
    re.compile(r"Python(?: version)?:?\s+(?P<version>3\.\d+)(?:\.\d+)?"),
)
_VISIBLE = re.compile(r"(?:CUDA|ASCEND_RT|HIP|ZE_AFFINITY_MASK)_VISIBLE_DEVICES=[\"']?(?P<ids>[\d,\s]+)")
_GPU_LINE = re.compile(r"^\s*GPU (?P<index>\d+): (?P<type>.+?)\s*$")
_GPU_COUNT = re.compile(
    r"\b(?P<count>\d+)\s*[x×]\s*(?P<type>(?:NVIDIA\s+)?(?:[AHLBV]\d{2,3}\w*|RTX\s*\d{4}\w*|Tesla\s+\w+|MI\d+\w*|Ascend\s*\w+))",
    re.IGNORECASE,
)
_NPROC = re.compile(r"--nproc[_-]per[_-]node[= ](?P<count>\d+)")
_ENGINES = (
    ("device_map", re.compile(r"device_map|accelerate[/\\]hooks\.py|dispatch_model", re.IGNORECASE)),
    (
        "torchrun",
        re.compile(
            r"torchrun|^\[rank\d+\]|torch[/\\]distributed[/\\]elastic|DistributedDataParallel", re.MULTILINE
        ),
    ),
    ("fsdp", re.compile(r"fsdp|FullyShardedDataParallel|fully_shard", re.IGNORECASE)),
    ("deepspeed", re.compile(r"deepspeed", re.IGNORECASE)),
    ("vllm", re.compile(r"vllm", re.IGNORECASE)),
)


_TOOL_ENGINES = ("deepspeed", "vllm")  # engines that are tools too (`tools.py`)


def _op(wrapper: str) -> str:
    """The ATen op of a wrapper: wrapper_CUDA__index_select, wrapper_CUDA_bmm, wrapper__index_select
    (PrivateUse1 devices, an NPU's) -> index_select, bmm."""
    return re.sub(r"^wrapper_(?:[A-Za-z0-9]+_)?_*", "", wrapper)


# the first words of torch's device wordings: a paste may wrap the rest onto the next lines
_ERROR_START = re.compile(
    r"Expected all tensors to be on the same device|expected self and mask|indices should be either"
    r"|Expected query, key, and value",
    re.IGNORECASE,
)


def _unwrapped_error(index: int, lines: list[str]) -> str:
    """Line `index` with its runs of spaces made one; a device error's first line with the three lines
    after it, where a paste (or a terminal's width) may have wrapped the rest of it."""
    if _ERROR_START.search(lines[index]):
        return re.sub(r"\s+", " ", " ".join(lines[index : index + 4]))
    return re.sub(r"[ \t]+", " ", lines[index])


def _error(lines: list[str]) -> dict[str, Any]:
    """The last device error the patterns read (devices, op, argument), else the first line of another of
    PyTorch's device texts, else the last exception line (an error that is not about devices)."""
    found: dict[str, Any] = {}
    for line in (_unwrapped_error(index, lines) for index in range(len(lines))):
        for kind, wording, pattern in _ERRORS:
            match = pattern.search(line)
            if not match:
                continue
            groups = match.groupdict()
            devices = [groups[k] for k in ("a", "b") if groups.get(k)]
            wrapper = groups.get("wrapper")
            found = {
                "error_kind": kind,
                "error": line[: match.end()].strip(),
                "devices": devices,
                "wrapper": wrapper,
                "op": _op(wrapper) if wrapper else groups.get("op") or _WORDING_OPS.get(kind),
                "argument": groups.get("argument"),
                "torch_wording": wording,
            }
            break
        if not found and (types := convolution_type_mismatch(line)):
            # a convolution's input and weight (or bias) on different kinds of device
            found = {
                "error_kind": "type",
                "error": line.strip(),
                "devices": [type_device(types[0]), type_device(types[2])],
            }
            found.update(wrapper=None, op="convolution", argument=types[1], torch_wording=None)
        elif not found and is_device_error(line):  # another of PyTorch's device texts
            found = {"error_kind": "device", "error": line.strip(), "devices": re.findall(_DEVICE, line)}
    if found:
        return found
    for line in map(spaced, lines):
        if _PARAPHRASE.search(line) or _WRAPPER.search(line):  # said in words: no devices read
            wrapper = match["wrapper"] if (match := _WRAPPER.search("\n".join(lines))) else None
            told = {"error_kind": "device", "error": line.strip(), "devices": [], "wrapper": wrapper}
            return {**told, "op": _op(wrapper) if wrapper else None}
    for line in lines:
        match = _OTHER_ERROR.match(line)
        if match and match["name"] not in ("Traceback",):
            found = {"error_kind": "other", "error": line.strip()}
    return found


def _unwrap(lines: list[str]) -> list[str]:
    """`lines` with the frame lines rich wrapped at its box's width joined, however many times: a long
    path folded (".../site-packages/transf" + "ormers/models/qwen2_vl/modelin" + "g_qwen2_vl.py:1687 in"),
    the words after it on the next line ("forward")."""
    joined: list[str] = []
    for line in lines:
        previous, piece = (joined[-1].strip() if joined else ""), line.strip()
        whole = None
        fragment = bool(re.fullmatch(r"\S+", piece))
        if previous and fragment and _RICH_FRAME.match(previous):
            whole = previous + piece  # a function name longer than the box, folded
        elif previous and piece and (_RICH_WRAPPED.match(previous) or _RICH_PARTIAL.match(previous)):
            # cut inside a word (a path) or at a space, which the wrap dropped
            for candidate in (previous + piece, f"{previous} {piece}"):
                if _RICH_FRAME.match(candidate) or _RICH_PARTIAL.match(candidate):
                    whole = candidate
                    break
            if whole is None and _RICH_WRAPPED.match(previous) and fragment:
                whole = previous + piece  # more of the path
        if whole is None:
            joined.append(line)
        else:
            joined[-1] = whole
    return joined


def _frames(lines: list[str]) -> list[dict[str, Any]]:
    """The traceback's frames, outermost first, each with the code line shown under it (or None)."""
    frames: list[dict[str, Any]] = []
    lines = _unwrap(lines)
    starts = (PLAIN_FRAME, _IPYTHON_FRAME, _OLD_IPYTHON_FRAME, _RICH_FRAME)
    for index, line in enumerate(lines):
        match = next((m for pattern in starts if (m := pattern.search(line))), None)
        if not match:
            continue
        groups = match.groupdict()
        frame = {
            "file": groups["file"],
            "line": int(groups["line"]) if groups.get("line") else None,
            "end": None,
            "function": groups["function"].rsplit(".", 1)[-1],
            "code": None,
        }
        following = lines[index + 1 : index + 16]
        if match.re is PLAIN_FRAME:
            code = following[0].strip() if following else ""
            if code and not PLAIN_FRAME.search(code) and not _OTHER_ERROR.match(code):
                frame["code"] = code
        else:  # IPython and rich: the arrow marks the line that ran
            arrow_pattern = _RICH_ARROW if match.re is _RICH_FRAME else _ARROW
            for candidate in following:
                if any(pattern.search(candidate) for pattern in starts):
                    break
                arrow = arrow_pattern.match(candidate)
                if arrow:
                    frame["line"] = frame["line"] or int(arrow["line"])
                    # rich draws indentation guides in the code: "│   │   code"
                    frame["code"] = re.sub(r"^[\s│]+", "", arrow["code"]).strip()
                    break
        frames.append(frame)
    return frames


def _library_frame(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The deepest frame inside transformers, else the deepest outside torch and accelerate."""
    for inside in (
        lambda f: re.search(r"[/\\]transformers[/\\]", f["file"]),
        lambda f: not INTERNALS.search(f["file"]),
    ):
        chosen = [frame for frame in frames if inside(frame)]
        if chosen:
            return chosen[-1]
    return None


def _versions(text: str, packages: dict[str, str] = _PACKAGES) -> dict[str, str]:
    """{package: the last version the text states for it} for `packages` ({package: its name's pattern})."""
    versions = {}
    for package, name in packages.items():
        pattern = re.compile(
            rf"(?<![\w-])`?{name}`?(?:\s+version)?(?:\s*\(GPU\?\))?\s*(?:==|:|=|\s)\s*`?{_VERSION}",
            re.IGNORECASE,
        )
        found = [match["version"] for match in pattern.finditer(text)]
        if found:
            versions[package] = found[-1]
    return versions


_RANGE = re.compile(
    r"(?<![\w-])transformers\s*(?P<spec>(?:>=|<=|~=|!=|>|<)\s*\d[\w.]*(?:\s*,\s*(?:>=|<=|~=|!=|>|<|==)\s*\d[\w.]*)*)",
    re.IGNORECASE,
)


def _range(text: str) -> str | None:
    """A requirement on transformers stated instead of a version ("transformers>=4.57.1"), as a
    specifier set; None when none (or one that is not a valid specifier)."""
    for match in _RANGE.finditer(text):
        spec = re.sub(r"\s+", "", match["spec"])
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            continue
        return spec
    return None


# what a text says it was doing: training (a trainer, backward, fine-tuning) or inference (generate, a
# server); frames outrank words, since a training log quotes the trainer and an inference one `generate`
_TRAINING = re.compile(
    r"Trainer\b|\btrainer\b|\.train\(|backward\(|fine-?tun|\bSFT\b|\bGRPO|\bDPO\b|\bPPO\b|\btraining\b"
    r"|llamafactory-cli train|zero[-_ ]?3|fully_shard|FullyShardedDataParallel|\bfsdp|训练|微调",
    re.IGNORECASE,
)
_INFERENCE = re.compile(
    r"\.generate\(|\bgenerate\b|\binference\b|\bvllm\b|\bsglang\b|\blmdeploy\b|\.chat\(|\bserving\b"
    r"|\bevaluat|\bbenchmark|推理|评测",
    re.IGNORECASE,
)
_TRAINING_FRAME = re.compile(r"trainer\w*\.py|[/\\]autograd[/\\]|[/\\]optim[/\\]|training_step|train\b")
_INFERENCE_FRAME = re.compile(r"generation[/\\]utils\.py|\bgenerate\b")
_INPUTS = (
    ("video", re.compile(r"video|pixel_values_videos|视频", re.IGNORECASE)),
    ("image", re.compile(r"\bimages?\b|pixel_values\b|图片|图像", re.IGNORECASE)),
    ("batch", re.compile(r"\bbatch(?:ed|es)?\b|batch_size|padding_side|批量", re.IGNORECASE)),
    ("text", re.compile(r"text[- ]only|pure text|only text|without (?:an )?images?|纯文本", re.IGNORECASE)),
)


def _action(frames: list[dict[str, Any]], text: str) -> str | None:
    """ "training" or "inference" where the frames (else the words) say only one of them."""
    where = " ".join(f"{frame['file']} {frame['function']}" for frame in frames)
    for training, inference in (
        (_TRAINING_FRAME.search(where), _INFERENCE_FRAME.search(where)),
        (_TRAINING.search(text), _INFERENCE.search(text)),
    ):
        if bool(training) != bool(inference):
            return "training" if training else "inference"
    return None


def _gpus(lines: list[str], text: str) -> dict[str, Any]:
    count, kind = None, None
    listed = {int(m["index"]): m["type"] for line in lines if (m := _GPU_LINE.match(line))}
    if listed:
        count, kind = len(listed), listed[min(listed)]
    for pattern in (_VISIBLE, _NPROC):
        if count is None and (match := pattern.search(text)):
            count = (
                len([i for i in match["ids"].split(",") if i.strip()])
                if "ids" in match.groupdict()
                else int(match["count"])
            )
    if match := _GPU_COUNT.search(text):
        count = count or int(match["count"])
        kind = kind or match["type"]
    return {"count": count, "type": kind}


def _family(text: str, model_type: str | None) -> str | None:
    """The family a frame's file runs in, else the one a class name says (`Qwen2VLForConditionalGeneration`
    in code outranks "Qwen2.5-VL" in prose), else the first the words name."""
    if model_type:
        return model_type if any(model_type == family for family, _ in _FAMILIES) else None
    for source in (" ".join(_CLASS.findall(text)), text):
        for family, pattern in _FAMILIES:
            if pattern.search(source):
                return family
    return None


def device_pair(devices: list[str]) -> str:
    """The kind of a device pair: "gpu/cpu" (a CPU tensor among them), "gpu/meta" (a meta tensor: an
    offloaded weight's placeholder that accelerate never swapped for its data), else "gpu/gpu"."""
    kinds = {device.split(":")[0] for device in devices}
    return "gpu/cpu" if "cpu" in kinds else "gpu/meta" if "meta" in kinds else "gpu/gpu"


def _quoted_lines(words: str) -> list[dict[str, Any]]:
    """The files and lines a text quotes outside a traceback, as frames (function and code None; `end`
    the last line of a quoted span, else None), in the order quoted."""
    found = []
    for pattern in _FILE_LINES:
        for match in pattern.finditer(words):
            line, end = int(match["line"]), int(match["end"]) if match["end"] else None
            if end is not None and not 0 < end - line <= _MOST_LINES:
                end = None
            found.append((match.start(), {"file": match["file"], "line": line, "end": end}))
    return [{**frame, "function": None, "code": None} for _, frame in sorted(found, key=lambda f: f[0])]


def _op_in_words(words: str) -> str | None:
    """An op a text names in its words ("the error happens in masked_scatter"), for a device error read
    without one: only names no prose uses otherwise (`_OPS_IN_WORDS`)."""
    match = _OPS_IN_WORDS.search(words)
    return match["op"] if match else None


def read_facts(text: str) -> dict[str, Any]:
    """The facts of a pasted text (`FACT_KEYS`).

    >>> read_facts("RuntimeError: Expected all tensors to be on the same device, but found at least two "
    ...            "devices, cuda:1 and cuda:0!")["devices"]
    ['cuda:1', 'cuda:0']
    """
    text = as_printed(text)
    lines = clean_lines(text)
    joined = "\n".join(lines)
    words = spaced(joined)  # for words and names; the frames are read from the lines as printed
    facts: dict[str, Any] = {key: None for key in FACT_KEYS}
    facts.update(devices=[], frames=[], versions={}, engine=[])
    facts.update(_error(lines))
    if facts["error_kind"] == "device" and not facts["op"]:
        facts["op"] = _op_in_words(words)
    devices = facts["devices"]
    if len(devices) >= 2 or (facts["error_kind"] == "index" and devices):
        facts["device_pair"] = device_pair(devices)
    facts["frames"] = _frames(lines) or _quoted_lines(words)
    facts["library_frame"] = _library_frame(facts["frames"])
    model_dirs = [match["type"] for frame in facts["frames"] if (match := _MODEL_DIR.search(frame["file"]))]
    facts["model_type"] = model_dirs[-1] if model_dirs else None
    facts["family"] = _family(words, facts["model_type"])
    if match := _CHECKPOINT.search(joined):
        facts["checkpoint"] = match.group().removesuffix(".")
    facts["versions"] = _versions(words)
    if match := _SOURCE_BUILD.search(joined):
        facts["transformers_ref"] = match["ref"] or match["commit"]
        # a model-release tag (`v4.49.0-Gemma-3`) is a branch of that release with one model added
        if release := re.match(r"v(\d+\.\d+\.\d+)-", facts["transformers_ref"]):
            facts["versions"].setdefault("transformers", release[1])
    if "transformers" not in facts["versions"]:
        facts["transformers_range"] = _range(words)
        if facts["transformers_range"] is None and (pinned := pinned_range(_versions(words, PINNING))):
            facts["transformers_range"], facts["range_from"] = pinned
    family = FAMILIES.get(facts["family"] or "")
    api = family.preview_api if family else ()
    facts["preview_api"] = [match["name"] for pattern in api if (match := re.search(pattern, joined))]
    for pattern in _PYTHON:
        if match := pattern.search(joined):
            facts["python"] = match["version"]
            break
    facts["gpus"] = _gpus(lines, words)
    facts["tools"] = tools_in(facts["frames"], words)
    # an engine that is also a tool counts where the text used it, not where a list of versions says it is
    # installed ("DeepSpeed version: not installed", "vllm: 0.11.0")
    used = {tool["tool"] for tool in facts["tools"] if tool["where"] != "listed"}
    # the raw text: launchers' "[rank3]:" prefixes, taken off the lines above, say torchrun
    facts["engine"] = [
        engine
        for engine, pattern in _ENGINES
        if (pattern.search(text) or pattern.search(words)) and (engine not in _TOOL_ENGINES or engine in used)
    ]
    facts["action"] = _action(facts["frames"], words)
    facts["inputs"] = [name for name, pattern in _INPUTS if pattern.search(words)]
    facts["warnings"] = [name for name, pattern in WARNINGS.items() if pattern.search(joined)]
    return facts
