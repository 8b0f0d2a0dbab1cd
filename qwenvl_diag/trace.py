"""`trace_devices`: where every module ran, every cross-device copy, and every op that mixed devices.

The tracer is a torch function mode plus global module hooks, pushed for one run and removed after
it (also when the run raises). It reads only `tensor.device`, so it works the same on real CUDA
devices and on simulated ones; a mismatching op is recorded *before* it runs, so the first mismatch
is known even when that op is the one that raises.

Frames (columns are module constants):
- `tensors`: one row per module call, in call order.
- `transfers`: one row per copy to another device (`.to`, `.cuda`, `.cpu`, `copy_`).
- `mismatches`: one row per call that mixes devices in a way PyTorch refuses: a call that sees
  tensors on several devices is replayed first on shape-only (meta) copies under PyTorch's device
  rules (0-dim CPU tensors may join elementwise ops, CPU indices may index, copies are free), so
  the row is written before the real op runs; `raised` says whether it then raised. A call that
  raises a device error the replay could not foresee is recorded too, with `raised` True.
"""

from __future__ import annotations

import contextlib
import linecache
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from .choices import ALL_ACTIONS
from .device_errors import is_device_error
from .errors import InvalidArgumentError
from .placement.modules import module_kind
from .placement.sharded import is_shard
from .simulate.checker import KERNEL_CHECKS, DeviceCheckMode

TENSOR_COLUMNS = [
    "call",
    "module",
    "kind",
    "execution_device",
    "input_devices",
    "output_devices",
    "input_shapes",
    "output_shapes",
    "dtypes",
]
TRANSFER_COLUMNS = ["from", "to", "bytes", "shape", "module", "op", "file", "line", "code"]
MISMATCH_COLUMNS = ["op", "devices", "module", "file", "line", "function", "code", "raised", "error"]

_SKIPPED_DIRS = tuple(str(Path(m.__file__).parent) for m in (torch,)) + (str(Path(__file__).parent),)
_Tensor = torch.Tensor
_COPIES = {
    _Tensor.to,
    _Tensor.cuda,
    _Tensor.cpu,
    _Tensor.copy_,
    _Tensor.data.__set__,
    torch.as_tensor,
    torch.asarray,
    torch.tensor,
}


def _tensors(value, found: list) -> list:
    if isinstance(value, _Tensor):
        found.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensors(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _tensors(item, found)
    return found


def _several_devices(args) -> bool:
    """Whether the tensors in `args` (one level of lists) are on more than one device: the hot path."""
    first = None
    for value in args:
        items = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, (list, tuple))
            else (value,)
        )
        for item in items:
            if isinstance(item, _Tensor):
                device = item.device
                if first is None:
                    first = device
                elif device != first:
                    return True
    return False


def _devices_text(tensors: list) -> str:
    return ", ".join(sorted({str(t.device) for t in tensors}))


def op_name(func) -> str:
    """A readable name for a torch function, method or property."""
    name = getattr(func, "__name__", None) or repr(func)
    owner = getattr(func, "__objclass__", None) or getattr(func, "__self__", None)
    if name == "__set__" and owner is not None:
        return f"Tensor.{getattr(owner, '__name__', 'data')} ="
    if isinstance(owner, type) and issubclass(owner, torch._C.TensorBase):
        return f"Tensor.{name}"
    qualname = getattr(func, "__qualname__", name)
    return f"Tensor.{name}" if qualname.startswith(("Tensor.", "TensorBase.")) else f"torch.{name}"


def caller_frame(skip_dirs: tuple[str, ...] = _SKIPPED_DIRS) -> tuple[str, int, str, str]:
    """(file, line, function, code) of the innermost frame outside torch and qwenvl-diag."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(skip_dirs):
        frame = frame.f_back
    if frame is None:
        return "", 0, "", ""
    filename, line = frame.f_code.co_filename, frame.f_lineno
    return filename, line, frame.f_code.co_name, linecache.getline(filename, line).strip()


def _meta_twin(value):
    if not isinstance(value, _Tensor):
        return value
    twin = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
    twin._sim_device = value.device
    return twin


def would_raise(func, args, kwargs) -> bool | None:
    """Whether a call that sees several devices raises on CUDA: its ops replayed on shape-only copies
    under PyTorch's device rules (the simulator's rule engine, hand-modelled kernels first). None when
    the call cannot be replayed without data (e.g. a tensor used as a size)."""
    tensors = _tensors((args, kwargs), [])
    context = next((t.device for t in tensors if t.device.type == "cuda"), torch.device("cpu"))
    meta_args, meta_kwargs = tree_map(_meta_twin, (args, kwargs))
    kernel_check = KERNEL_CHECKS.get(func)
    try:
        if kernel_check is None or kernel_check(meta_args, meta_kwargs) is None:
            with torch._C.DisableTorchFunctionSubclass(), DeviceCheckMode(context):
                func(*meta_args, **meta_kwargs)
    except RuntimeError as error:
        return True if is_device_error(str(error)) else None
    except Exception:
        return None
    return False


def _execution_device(module: torch.nn.Module) -> str:
    hook = getattr(module, "_hf_hook", None)
    hooks = getattr(hook, "hooks", [hook]) if hook is not None else []
    for item in hooks:
        device = getattr(item, "execution_device", None)
        if device is not None:
            return str(torch.device(device) if not isinstance(device, int) else torch.device("cuda", device))
    fsdp_state = getattr(module, "_get_fsdp_state", None)
    if fsdp_state is not None:  # an FSDP2 unit computes on its rank's device, wherever its shards are held
        return str(fsdp_state()._device)
    for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False), *module.parameters()]:
        if not is_shard(tensor):  # a unit's shard is not where it computes (the unit says: above)
            return str(tensor.device)
    return ""


@dataclass
class Trace:
    """What one traced run saw. `frames` holds "tensors", "transfers" and "mismatches"."""

    frames: dict[str, pd.DataFrame]
    action: str
    error: BaseException | None = None
    output: object = field(default=None, repr=False)

    @property
    def tensors(self) -> pd.DataFrame:
        return self.frames["tensors"]

    @property
    def transfers(self) -> pd.DataFrame:
        return self.frames["transfers"]

    @property
    def mismatches(self) -> pd.DataFrame:
        return self.frames["mismatches"]

    @property
    def first_mismatch(self) -> dict | None:
        """The first op that mixed devices (the one that raised when the run failed), as a dict."""
        frame = self.mismatches
        if frame.empty:
            return None
        raised = frame[frame["raised"]]
        return (raised if self.error is not None and not raised.empty else frame).iloc[0].to_dict()


class _Recorder(TorchFunctionMode):
    """Records transfers and mismatching calls; module rows come from the global module hooks."""

    def __init__(self, names: dict[int, str]):
        super().__init__()
        self.names = names
        self.stack: list[str] = []
        self.devices: dict[int, str] = {}
        self.calls = 0
        self.tensor_rows: list[dict] = []
        self.open_rows: list[dict] = []
        self.transfer_rows: list[dict] = []
        self.mismatch_rows: list[dict] = []

    def _execution_device(self, module: torch.nn.Module) -> str:
        # weights do not move during a run: look each module up once
        key = id(module)
        if key not in self.devices:
            self.devices[key] = _execution_device(module)
        return self.devices[key]

    @property
    def module(self) -> str:
        return self.stack[-1] if self.stack else ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _COPIES:
            return self._copy(func, args, kwargs)
        row = None
        if _several_devices(args) or (kwargs and _several_devices((args, kwargs))):
            if would_raise(func, args, kwargs):
                row = self._mismatch(func, _tensors((args, kwargs), []))
        try:
            return func(*args, **kwargs)
        except RuntimeError as error:
            if row is None and is_device_error(str(error)):
                row = self._mismatch(func, _tensors((args, kwargs), []))
            if row is not None:
                row["raised"], row["error"] = True, str(error)
            raise

    def _mismatch(self, func, tensors: list) -> dict:
        filename, line, function, code = caller_frame()
        row = {
            "op": op_name(func),
            "devices": _devices_text(tensors),
            "module": self.module,
            "file": filename,
            "line": line,
            "function": function,
            "code": code,
            "raised": False,
            "error": None,
        }
        self.mismatch_rows.append(row)
        return row

    def _copy(self, func, args, kwargs):
        source = args[0] if args and isinstance(args[0], _Tensor) else None
        if func is _Tensor.copy_ and len(args) > 1:
            source = args[1]
        before = source.device if source is not None else None
        out = func(*args, **kwargs)
        target = out if isinstance(out, _Tensor) else (args[0] if func is not torch.tensor else None)
        if before is not None and isinstance(target, _Tensor) and target.device != before:
            filename, line, _, code = caller_frame()
            self.transfer_rows.append(
                {
                    "from": str(before),
                    "to": str(target.device),
                    "bytes": source.numel() * source.element_size(),
                    "shape": tuple(source.shape),
                    "module": self.module,
                    "op": op_name(func),
                    "file": filename,
                    "line": line,
                    "code": code,
                }
            )
        return out

    def pre_hook(self, module, args, kwargs=None):
        name = self.names.get(id(module))
        if name is None:
            return None
        tensors = _tensors(args, [])
        if kwargs:
            _tensors(kwargs, tensors)
        # raw values here, text in frames(): the hooks run for every module call
        row = {
            "call": self.calls,
            "module": name,
            # a module without weights (an activation) computes where its parent does
            "execution_device": self._execution_device(module)
            or (self.open_rows[-1]["execution_device"] if self.open_rows else ""),
            "inputs": [(t.device, t.shape, t.dtype) for t in tensors],
            "outputs": [],
        }
        self.calls += 1
        self.stack.append(name)
        self.open_rows.append(row)
        self.tensor_rows.append(row)
        return None

    def post_hook(self, module, args, output):
        if self.names.get(id(module)) is None or not self.open_rows:
            return None
        row = self.open_rows.pop()
        self.stack.pop()
        tensors = _tensors(output if isinstance(output, (tuple, list, dict)) else [output], [])
        if hasattr(output, "to_tuple"):  # transformers ModelOutput
            tensors = _tensors(list(output.values()), [])
        row["outputs"] = [(t.device, t.shape, t.dtype) for t in tensors[:4]]
        return None

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            "tensors": pd.DataFrame([_tensor_row(row) for row in self.tensor_rows], columns=TENSOR_COLUMNS),
            "transfers": pd.DataFrame(self.transfer_rows, columns=TRANSFER_COLUMNS),
            "mismatches": pd.DataFrame(self.mismatch_rows, columns=MISMATCH_COLUMNS).astype({"raised": bool}),
        }


def _tensor_row(raw: dict) -> dict:
    inputs, outputs = raw["inputs"], raw["outputs"]
    return {
        "call": raw["call"],
        "module": raw["module"],
        "kind": module_kind(raw["module"]) if raw["module"] else "model",
        "execution_device": raw["execution_device"],
        "input_devices": ", ".join(sorted({str(d) for d, _, _ in inputs})),
        "output_devices": ", ".join(sorted({str(d) for d, _, _ in outputs})),
        "input_shapes": str([tuple(shape) for _, shape, _ in inputs]),
        "output_shapes": str([tuple(shape) for _, shape, _ in outputs]),
        "dtypes": ", ".join(sorted({str(dtype).removeprefix("torch.") for _, _, dtype in inputs})),
    }


def run_action(model, inputs, action: str, generate_kwargs: dict):
    """One forward (no grad), one greedy `generate` of a few tokens, or one training step (forward with
    the input ids as labels, padding left out, then backward): the run every diagnosis makes. A training
    step's gradients are taken off the model again afterwards."""
    if action == "forward":
        with torch.no_grad():
            return model(**inputs)
    if action == "train_step":
        return train_step(model, inputs)
    return model.generate(**inputs, **{"max_new_tokens": 4, "do_sample": False, **generate_kwargs})


def training_labels(inputs) -> torch.Tensor:
    """Labels of a causal-LM step on `inputs`: the input ids, -100 (ignored) where the attention mask is 0."""
    labels = inputs["input_ids"].clone()
    mask = inputs.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        labels[mask == 0] = -100
    return labels


def train_step(model, inputs):
    """Forward with labels, the loss, backward; the parameters' gradients are as before afterwards."""
    grads = {id(param): param.grad for param in model.parameters()}
    try:
        output = model(**inputs, labels=training_labels(inputs))
        output.loss.backward()
        return output
    finally:
        for param in model.parameters():
            if id(param) in grads:
                param.grad = grads[id(param)]


def check_run_arguments(model, inputs, action: str) -> None:
    """The kit's own error for arguments a traced run cannot take (shared by every function that runs
    the model once: trace_devices, diagnose, rope_inputs_frame)."""
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError(f"Expected a torch.nn.Module model; got {type(model).__name__}.")
    if not isinstance(inputs, Mapping):
        raise InvalidArgumentError(
            f"inputs must be a dict or BatchFeature (what the processor returns); got "
            f"{type(inputs).__name__}. Build them with qd.sample_inputs(processor, kind) or processor(...)."
        )
    if action not in ALL_ACTIONS:
        raise InvalidArgumentError(
            f"Unknown action {action!r}: action must be one of {', '.join(ALL_ACTIONS)}."
        )
    if action == "train_step" and not isinstance(inputs.get("input_ids"), torch.Tensor):
        raise InvalidArgumentError(
            "action='train_step' uses the input_ids as labels; these inputs have none. Pass the "
            "processor's output (it has input_ids), or use action='forward'."
        )
    if action == "generate" and not hasattr(model, "generate"):
        raise InvalidArgumentError(f"{type(model).__name__} has no generate(); use action='forward'.")


@contextlib.contextmanager
def module_state_kept(model: torch.nn.Module):
    """Put back every module's attributes as they were: a run stores state on the model (Qwen-VL keeps
    `rope_deltas` between generate steps), and a diagnosis must leave the model exactly as it found it."""
    saved = [(vars(module), dict(vars(module))) for module in model.modules()]
    try:
        yield
    finally:
        for attributes, before in saved:
            if attributes.keys() != before.keys() or any(attributes[k] is not v for k, v in before.items()):
                attributes.clear()
                attributes.update(before)


class tracing:
    """Context manager: record module calls, transfers and mismatches of `model` until exit."""

    def __init__(self, model: torch.nn.Module):
        self.recorder = _Recorder({id(m): n for n, m in model.named_modules()})
        self._handles = []

    def __enter__(self) -> _Recorder:
        hooks = torch.nn.modules.module
        self._handles = [
            hooks.register_module_forward_pre_hook(self.recorder.pre_hook),
            hooks.register_module_forward_hook(self.recorder.post_hook, always_call=True),
        ]
        self.recorder.__enter__()
        return self.recorder

    def __exit__(self, *exc) -> bool:
        try:
            self.recorder.__exit__(*exc)
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []
        return False


def trace_devices(model, inputs, action: str = "forward", **generate_kwargs) -> Trace:
    """Run `model` on `inputs` once (a forward, or `generate` with a few greedy tokens) and trace devices.

    A failing run does not raise: its error is `trace.error`, and the frames hold everything up to it.

    >>> trace = trace_devices(model, inputs, action="generate")
    >>> trace.first_mismatch["code"]
    """
    check_run_arguments(model, inputs, action)
    with module_state_kept(model), tracing(model) as recorder:
        try:
            output, error = run_action(model, inputs, action, generate_kwargs), None
        except Exception as caught:  # the user's forward failing is what is being diagnosed
            output, error = None, caught
    return Trace(recorder.frames(), action, error, output)
