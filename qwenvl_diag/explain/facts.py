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

from ..device_errors import convolution_type_mismatch, is_device_error, type_device
from .text import clean_lines

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
    "transformers_commit",
    "python",
    "gpus",
    "engine",
)
"""Keys of `read_facts`' dict, always all present (None, [] or {} when the text does not say): `error_kind`
one of `ERROR_KINDS` or None; `error` the error line; `devices` the devices it names, in its order
("cuda:1", "cpu", "npu:0"); `device_pair` "gpu/gpu", "gpu/cpu", "gpu/meta" or None; `op` the ATen op of the
CUDA wrapper ("masked_scatter_"), `wrapper` its name ("wrapper_CUDA__masked_scatter_"), `argument` the
argument it checked ("mask"); `torch_wording` "found at least two devices" (torch <= 2.5 wrappers and
TensorIterator) or "but got ... is on" (wrappers from torch 2.6); `frames` the traceback's frames ({file,
line, function, code}, outermost first; without a traceback, the files and lines the text quotes, function
and code None); `library_frame` the deepest one inside transformers (else the deepest outside torch and
accelerate); `family` the Qwen-VL family ("qwen2_5_vl"), `model_type` the transformers model directory a
frame runs in ("llama": not Qwen-VL); `checkpoint` a Qwen-VL checkpoint name; `versions` {package: version}
for transformers, accelerate, torch, qwen-vl-utils; `transformers_commit` a source build's commit; `python`
"3.10"; `gpus` {count, type}; `engine` a list of "device_map", "torchrun", "fsdp", "deepspeed", "vllm"."""

ERROR_KINDS = ("device", "type", "index", "masked_fill", "sdpa", "other")
"""`device`: "Expected all tensors to be on the same device"; `type`: the convolution's "Input type (...)
and weight type (...) should be the same" with types of two devices; `index`: "indices should be either
on cpu or on the same device as the indexed tensor"; `masked_fill`: its own device check; `sdpa`:
"Expected query, key, and value to have the same device type"; `other`: an error that is not about
devices (out of memory, shapes, ...)."""

DEVICE_ERROR_KINDS = ("device", "type", "index", "masked_fill", "sdpa")

_DEVICE = r"(?:cuda|npu|xpu|mps|hpu|cpu|meta|privateuseone)(?::\d+)?"
_ERRORS = (
    (
        "device",
        "found at least two devices",
        re.compile(
            rf"Expected all tensors to be on the same device, but found at least two devices, "
            rf"(?P<a>{_DEVICE}) and (?P<b>{_DEVICE})!"
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
)
_OTHER_ERROR = re.compile(r"^\s*(?:[\w.]+\.)?(?P<name>\w*(?:Error|Exception)):\s*(?P<message>.*)$")

# a traceback frame, as Python prints it, as IPython >= 8 prints it, and as older IPython did
_PLAIN_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>[\w.<>]+)')
_IPYTHON_FRAME = re.compile(r"File (?P<file>\S+?\.py):(?P<line>\d+), in (?P<function>[\w.<>]+)")
_OLD_IPYTHON_FRAME = re.compile(r"^(?P<file>\S+?\.py) in (?P<function>[\w.<>]+)\(")
_ARROW = re.compile(r"^\s*-+>\s*(?P<line>\d+)\s?(?P<code>.*)$")
# a file and line quoted outside a traceback: "modeling_qwen2_5_vl.py:1334", "... modeling_x.py line 12"
_FILE_LINE = re.compile(r"(?P<file>[\w./\\~-]*modeling_\w+\.py)(?::|,? line )(?P<line>\d+)")

_FAMILIES = (  # most specific first; the Omni thinkers carry Qwen-VL's vision tower and M-RoPE
    ("qwen3_omni_moe", re.compile(r"qwen3_omni_moe|Qwen3OmniMoe|Qwen3-Omni", re.IGNORECASE)),
    ("qwen2_5_omni", re.compile(r"qwen2_5_omni|Qwen2_5Omni|Qwen2\.5-Omni", re.IGNORECASE)),
    ("qwen4_exp", re.compile(r"qwen4_exp|Qwen4Exp|Qwen4-Exp|Qwen3\.8-", re.IGNORECASE)),
    ("qwen3_5_moe", re.compile(r"qwen3_5_moe|Qwen3_5Moe|Qwen3\.5-\d+B-A\d+B", re.IGNORECASE)),
    ("qwen3_5", re.compile(r"qwen3_5|Qwen3_5|Qwen3\.5", re.IGNORECASE)),
    ("qwen3_vl_moe", re.compile(r"qwen3_vl_moe|Qwen3VLMoe|Qwen3-VL-\d+B-A\d+B", re.IGNORECASE)),
    ("qwen3_vl", re.compile(r"qwen3_vl|Qwen3VL|Qwen3-VL", re.IGNORECASE)),
    ("qwen2_5_vl", re.compile(r"qwen2_5_vl|Qwen2_5_VL|Qwen2\.5-VL", re.IGNORECASE)),
    ("qwen2_vl", re.compile(r"qwen2_vl|Qwen2VL|Qwen2-VL", re.IGNORECASE)),
)
_CHECKPOINT = re.compile(r"(?:Qwen/)?Qwen(?:(?:2\.5|2|3)-VL|3\.5|2\.5-Omni|3-Omni|3\.8)-[\w.]+(?:-[\w.]+)*")
_MODEL_DIR = re.compile(r"transformers[/\\]models[/\\](?P<type>\w+)[/\\]")

_VERSION = r"v?(?P<version>\d+\.\d+(?:\.\d+)*(?:\.?(?:dev|rc|a|b|post)\d*)*(?:\+[\w.]+)?)"
_PACKAGES = {
    "transformers": r"transformers",
    "accelerate": r"accelerate",
    "torch": r"(?:torch|pytorch)",
    "qwen-vl-utils": r"qwen[-_]vl[-_]utils",
}
_COMMIT = re.compile(
    r"transformers(?:\.git)?@(?P<commit>[0-9a-f]{7,40})\b"
    r"|transformers.{0,40}\bcommit (?P<c2>[0-9a-f]{7,40})\b"
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
_TORCH_INTERNALS = re.compile(r"[/\\](?:torch|accelerate)[/\\]")


def _error(lines: list[str]) -> dict[str, Any]:
    """The last device error the patterns read (devices, op, argument), else the first line of another of
    PyTorch's device texts, else the last exception line (an error that is not about devices)."""
    found: dict[str, Any] = {}
    for line in lines:
        for kind, wording, pattern in _ERRORS:
            match = pattern.search(line)
            if not match:
                continue
            groups = match.groupdict()
            devices = [groups[k] for k in ("a", "b") if groups.get(k)]
            wrapper = groups.get("wrapper")
            found = {
                "error_kind": kind,
                "error": line.strip(),
                "devices": devices,
                "wrapper": wrapper,
                "op": re.sub(r"^wrapper_[A-Za-z0-9]+_+", "", wrapper) if wrapper else None,
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
            found.update(wrapper=None, op=None, argument=types[1], torch_wording=None)
        elif not found and is_device_error(line):  # another of PyTorch's device texts
            found = {"error_kind": "device", "error": line.strip(), "devices": re.findall(_DEVICE, line)}
    if found:
        return found
    for line in lines:
        match = _OTHER_ERROR.match(line)
        if match and match["name"] not in ("Traceback",):
            found = {"error_kind": "other", "error": line.strip()}
    return found


def _frames(lines: list[str]) -> list[dict[str, Any]]:
    """The traceback's frames, outermost first, each with the code line shown under it (or None)."""
    frames: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        match = _PLAIN_FRAME.search(line) or _IPYTHON_FRAME.search(line) or _OLD_IPYTHON_FRAME.search(line)
        if not match:
            continue
        groups = match.groupdict()
        frame = {
            "file": groups["file"],
            "line": int(groups["line"]) if groups.get("line") else None,
            "function": groups["function"].rsplit(".", 1)[-1],
            "code": None,
        }
        following = lines[index + 1 : index + 16]
        if match.re is _PLAIN_FRAME:
            code = following[0].strip() if following else ""
            if code and not _PLAIN_FRAME.search(code) and not _OTHER_ERROR.match(code):
                frame["code"] = code
        else:  # IPython: the arrow marks the line that ran
            for candidate in following:
                if _PLAIN_FRAME.search(candidate) or _IPYTHON_FRAME.search(candidate):
                    break
                arrow = _ARROW.match(candidate)
                if arrow:
                    frame["line"] = frame["line"] or int(arrow["line"])
                    frame["code"] = arrow["code"].strip()
                    break
        frames.append(frame)
    return frames


def _library_frame(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The deepest frame inside transformers, else the deepest outside torch and accelerate."""
    for inside in (
        lambda f: re.search(r"[/\\]transformers[/\\]", f["file"]),
        lambda f: not _TORCH_INTERNALS.search(f["file"]),
    ):
        chosen = [frame for frame in frames if inside(frame)]
        if chosen:
            return chosen[-1]
    return None


def _versions(text: str) -> dict[str, str]:
    versions = {}
    for package, name in _PACKAGES.items():
        pattern = re.compile(
            rf"(?<![\w-])`?{name}`?(?:\s+version)?(?:\s*\(GPU\?\))?\s*(?:==|:|=|\s)\s*`?{_VERSION}",
            re.IGNORECASE,
        )
        found = [match["version"] for match in pattern.finditer(text)]
        if found:
            versions[package] = found[-1]
    return versions


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
    if model_type:
        return model_type if any(model_type == family for family, _ in _FAMILIES) else None
    for family, pattern in _FAMILIES:
        if pattern.search(text):
            return family
    return None


def device_pair(devices: list[str]) -> str:
    """The kind of a device pair: "gpu/cpu" (a CPU tensor among them), "gpu/meta" (a meta tensor: an
    offloaded weight's placeholder that accelerate never swapped for its data), else "gpu/gpu"."""
    kinds = {device.split(":")[0] for device in devices}
    return "gpu/cpu" if "cpu" in kinds else "gpu/meta" if "meta" in kinds else "gpu/gpu"


def read_facts(text: str) -> dict[str, Any]:
    """The facts of a pasted text (`FACT_KEYS`).

    >>> read_facts("RuntimeError: Expected all tensors to be on the same device, but found at least two "
    ...            "devices, cuda:1 and cuda:0!")["devices"]
    ['cuda:1', 'cuda:0']
    """
    lines = clean_lines(text)
    joined = "\n".join(lines)
    facts: dict[str, Any] = {key: None for key in FACT_KEYS}
    facts.update(devices=[], frames=[], versions={}, engine=[])
    facts.update(_error(lines))
    devices = facts["devices"]
    if len(devices) >= 2 or (facts["error_kind"] == "index" and devices):
        facts["device_pair"] = device_pair(devices)
    facts["frames"] = _frames(lines) or [
        {"file": match["file"], "line": int(match["line"]), "function": None, "code": None}
        for match in _FILE_LINE.finditer(joined)
    ]
    facts["library_frame"] = _library_frame(facts["frames"])
    model_dirs = [match["type"] for frame in facts["frames"] if (match := _MODEL_DIR.search(frame["file"]))]
    facts["model_type"] = model_dirs[-1] if model_dirs else None
    facts["family"] = _family(joined, facts["model_type"])
    if match := _CHECKPOINT.search(joined):
        facts["checkpoint"] = match.group().removesuffix(".")
    facts["versions"] = _versions(joined)
    if match := _COMMIT.search(joined):
        facts["transformers_commit"] = match["commit"] or match["c2"]
    for pattern in _PYTHON:
        if match := pattern.search(joined):
            facts["python"] = match["version"]
            break
    facts["gpus"] = _gpus(lines, joined)
    # the raw text: launchers' "[rank3]:" prefixes, taken off the lines above, say torchrun
    facts["engine"] = [
        engine for engine, pattern in _ENGINES if pattern.search(text) or pattern.search(joined)
    ]
    return facts
