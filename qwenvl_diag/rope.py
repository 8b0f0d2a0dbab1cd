"""The model's rope-index function (`get_rope_index`): capture its calls, show its inputs and positions.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL compute 3-D rope positions (temporal, height, width) in a method
`get_rope_index`. Where it lives and what it takes differ between releases (transformers 4.x: on
the `...ForConditionalGeneration` model, 5.x: on its inner `model`, with a new required
`mm_token_type_ids`), so the kit finds it by introspection on the model instance and binds every
call's arguments with `inspect.signature` of the method found.

>>> frame = qd.rope_inputs_frame(model, inputs)          # one row per argument per call
>>> positions = qd.rope_positions_frame(model, inputs)   # one row per (batch, token)
>>> qd.plot_rope_positions(positions)

Models without a rope-index function (GPT-2, Llama, ...) get `NotQwenVLError`: an empty frame would
read as "the model never called it", which is a finding of its own (5.x Qwen-VL inputs without
`mm_token_type_ids`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from .errors import InvalidArgumentError, NoRopePositionsError, NotQwenVLError
from .trace import check_run_arguments, module_state_kept, run_action
from .values import value_device, value_dtype, value_shape, value_summary, value_type

ROPE_FUNCTION = "get_rope_index"

ROPE_INPUT_COLUMNS = ["call", "argument", "type", "device", "dtype", "shape", "summary"]
"""Columns of `rope_inputs_frame`: one row per argument per call of the rope-index function, in call
order. `call` numbers the calls from 0; `argument` is the parameter name the call bound the value to
(defaults the caller left out included; the entries of a `**kwargs` parameter as "kwargs.<name>");
`type` "Tensor", "list[float]", "NoneType", ...; `device` and `dtype` "" when the value holds no
tensor; `shape` a tuple (None for non-tensors, `(len,)` for lists); `summary` a short value summary."""

ROPE_POSITION_COLUMNS = ["batch", "token", "token_type", "t", "h", "w"]
"""Columns of `rope_positions_frame`: one row per (batch row, token). `token_type` is "text",
"image", "video", "vision_start", "vision_end", "vision" (from the config's token ids) or "pad"
(attention_mask 0: its positions are filler); `t`, `h`, `w` the three rope position streams."""

TOKEN_TYPES = {
    "image_token_id": "image",
    "video_token_id": "video",
    "vision_start_token_id": "vision_start",
    "vision_end_token_id": "vision_end",
    "vision_token_id": "vision",
}


@dataclass
class RopeCall:
    """One call of the rope-index function. `arguments` maps parameter names to the values passed
    (bound by the method's signature, defaults applied, `**kwargs` entries as "kwargs.<name>");
    `result` is what it returned (None when it raised), `error` what it raised (None when it returned)."""

    index: int
    arguments: dict[str, Any]
    token_types: dict[int, str] = field(repr=False, default_factory=dict)
    result: Any = field(repr=False, default=None)
    error: BaseException | None = None

    @property
    def returned(self) -> bool:
        return self.error is None and self.result is not None

    @property
    def position_ids(self) -> torch.Tensor | None:
        """The returned position ids, shape (3, batch, tokens), or None when the call raised."""
        if not self.returned:
            return None
        return self.result[0] if isinstance(self.result, (tuple, list)) else self.result


@dataclass
class RopeCapture:
    """What `capture_rope` recorded: the wrapped method's owner (`module`, a path in the model, ""
    for the model itself), its qualified name, its signature, and the calls in order."""

    module: str
    function: str
    signature: inspect.Signature
    token_types: dict[int, str]
    calls: list[RopeCall] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[RopeCall]:
        return iter(self.calls)

    def frame(self) -> pd.DataFrame:
        """The calls as a `rope_inputs_frame` (columns `ROPE_INPUT_COLUMNS`)."""
        rows = [
            {
                "call": call.index,
                "argument": name,
                "type": value_type(value),
                "device": value_device(value),
                "dtype": value_dtype(value),
                "shape": value_shape(value),
                "summary": value_summary(value),
            }
            for call in self.calls
            for name, value in call.arguments.items()
        ]
        return pd.DataFrame(rows, columns=ROPE_INPUT_COLUMNS)


def find_rope_index(model: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    """(path, module) of the module whose `get_rope_index` the model calls, or None when it has none.

    When several modules expose one (a wrapper delegating to an inner model), the deepest is the one
    doing the work, and every call reaches it.
    """
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError(f"Expected a torch.nn.Module model; got {type(model).__name__}.")
    found = _rope_owners(model)
    if not found:
        return None
    return max(found, key=lambda item: item[0].count(".") + bool(item[0]))


def _token_types(module: torch.nn.Module) -> dict[int, str]:
    config = getattr(module, "config", None)
    types = {}
    for attribute, name in TOKEN_TYPES.items():
        token_id = getattr(config, attribute, None)
        if isinstance(token_id, int):
            types[token_id] = name
    return types


def _bind(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by parameter name; positional "args[i]" names when they do not bind
    (the call then raises TypeError itself)."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return {**{f"args[{i}]": v for i, v in enumerate(args)}, **kwargs}
    bound.apply_defaults()
    arguments = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update({f"{name}.{key}": item for key, item in value.items()})
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            arguments.update({f"{name}[{i}]": item for i, item in enumerate(value)})
        else:
            arguments[name] = value
    return arguments


def _not_qwen_vl(model: torch.nn.Module) -> NotQwenVLError:
    return NotQwenVLError(
        f"{type(model).__name__} has no {ROPE_FUNCTION} method, so it computes no 3-D rope positions "
        "(only Qwen2-VL, Qwen2.5-VL and Qwen3-VL models do). Pass a Qwen-VL model (qd.tiny_model, "
        "qd.twin, qd.load_model), or use qd.trace_devices(model, inputs) for the frames every model gets."
    )


def _rope_owners(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if callable(getattr(module, ROPE_FUNCTION, None))
    ]


@contextmanager
def capture_rope(model: torch.nn.Module) -> Iterator[RopeCapture]:
    """Record every call of the model's rope-index function while the block runs.

    Yields a `RopeCapture` whose `calls` fill in as the model runs; a call that raises is recorded
    with its arguments and `error` (and the error propagates as usual). Every module that exposes the
    function is watched: the model itself calls it while generating in some families (Qwen2.5-Omni's
    `_prepare_position_ids_for_generation`), its inner model in a forward; when one delegates to
    another, the innermost call is the one recorded. On exit, also when the block raises, each
    owner module's `__dict__` is exactly as before (same keys, order and objects).

    >>> with qd.capture_rope(model) as rope:
    ...     model(**inputs)
    >>> rope.calls[0].arguments["second_per_grid_ts"]
    """
    located = find_rope_index(model)
    if located is None:
        raise _not_qwen_vl(model)
    path, owner = located
    original = getattr(owner, ROPE_FUNCTION)
    capture = RopeCapture(
        module=path,
        function=getattr(original, "__qualname__", ROPE_FUNCTION),
        signature=inspect.signature(original),
        token_types=_token_types(owner),
    )

    def recording(method, signature, token_types):
        def record(*args, **kwargs):
            arguments, recorded = _bind(signature, args, kwargs), len(capture.calls)
            result, error = None, None
            try:
                result = method(*args, **kwargs)
            except BaseException as caught:
                error = caught
                raise
            finally:
                if len(capture.calls) == recorded:  # no inner owner recorded this call itself
                    capture.calls.append(RopeCall(recorded, arguments, token_types, result, error))
            return result

        return record

    # Wrapping the method on these instances (not patching the transformers class) is the accepted
    # mechanism: nothing outside the user's model changes, transformers' own code runs unchanged, and
    # the `finally` below puts each instance's __dict__ back exactly as it was.
    missing = object()
    saved = []
    for _, module in _rope_owners(model):
        attributes = vars(module)
        saved.append((attributes, attributes.get(ROPE_FUNCTION, missing)))
        method = getattr(module, ROPE_FUNCTION)
        attributes[ROPE_FUNCTION] = recording(method, inspect.signature(method), _token_types(module))
    try:
        yield capture
    finally:
        for attributes, before in saved:
            if before is missing:
                attributes.pop(ROPE_FUNCTION, None)
            else:
                attributes[ROPE_FUNCTION] = before


def _capture_run(
    model: torch.nn.Module, inputs: Mapping, action: str, max_new_tokens: int
) -> tuple[RopeCapture, Exception | None]:
    """Run the model once under `capture_rope`; the run's exception is returned, not raised."""
    check_run_arguments(model, inputs, action)
    error = None
    with capture_rope(model) as capture, module_state_kept(model):
        try:
            run_action(model, inputs, action, {"max_new_tokens": max_new_tokens})
        except Exception as caught:  # the model's own failure is the finding, not a crash of the kit
            error = caught
    return capture, error


def required_arguments(signature: inspect.Signature) -> list[str]:
    """The parameters of a rope-index signature that have no default (5.x: input_ids, mm_token_type_ids)."""
    return [
        name
        for name, p in signature.parameters.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _no_call_note(capture: RopeCapture, inputs: Mapping) -> str:
    missing = [name for name in required_arguments(capture.signature) if name not in inputs]
    if missing:
        return (
            f"{capture.function} was not called: it requires {', '.join(missing)}, which the inputs lack, "
            "so the model fell back to 1-D text positions. Build the inputs with the processor "
            "(it adds them)."
        )
    return f"{capture.function} was not called (text-only inputs, or positions were passed in)."


def rope_inputs_frame(
    model: torch.nn.Module, inputs: Mapping, action: str = "forward", *, max_new_tokens: int = 2
) -> pd.DataFrame:
    """Every call of the model's rope-index function during one run: each argument's type, device,
    dtype, shape and a value summary (columns `ROPE_INPUT_COLUMNS`).

    The model runs once: `forward` under `torch.no_grad()`, or `generate` greedily for
    `max_new_tokens` tokens. The model's own exception does **not** propagate: the frame holds the
    calls made until it raised (the raising call included, with its arguments) and
    `frame.attrs["error"]` holds the exception (None when the run passed). Also in `attrs`:
    `function` (qualified name), `module` (its owner's path), `errors` (per call: the error text or
    None), and `note` when no call was made (e.g. 5.x inputs without `mm_token_type_ids`).
    Wrong arguments raise the kit's errors (`InvalidArgumentError`, `NotQwenVLError`). The inputs
    are only read; the model's cached `rope_deltas` are put back after the run.
    """
    capture, error = _capture_run(model, inputs, action, max_new_tokens)
    frame = capture.frame()
    frame.attrs.update(
        error=error,
        function=capture.function,
        module=capture.module,
        errors=[None if c.error is None else f"{type(c.error).__name__}: {c.error}" for c in capture],
    )
    if not capture.calls:
        frame.attrs["note"] = _no_call_note(capture, inputs)
    return frame


def _chosen_call(capture: RopeCapture, call: int | None, error: Exception | None) -> RopeCall:
    if call is not None:
        if not isinstance(call, int) or not 0 <= call < len(capture.calls):
            raise InvalidArgumentError(f"call must be an index below {len(capture.calls)}; got {call!r}.")
        return capture.calls[call]
    for recorded in capture.calls:
        if recorded.returned:
            return recorded
    raised = next((c.error for c in capture.calls if c.error is not None), error)
    why = f" The run raised {type(raised).__name__}: {raised}" if raised is not None else ""
    raise NoRopePositionsError(
        f"No {capture.function} call returned position ids ({len(capture.calls)} calls recorded).{why} "
        "Positions exist only for calls that returned: run the same inputs where the call passes "
        "(e.g. on one device, or on a fixed transformers release)."
    )


def _positions_rows(call: RopeCall) -> list[dict]:
    positions = call.position_ids
    if positions is None:
        raise NoRopePositionsError(
            f"Call {call.index} raised {type(call.error).__name__}: {call.error}; "
            "it returned no position ids."
        )
    input_ids = call.arguments.get("input_ids")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise NoRopePositionsError(f"Call {call.index} has no 2-D input_ids to label its tokens with.")
    streams = positions.tolist()[-3:]
    ids = input_ids.tolist()
    mask = call.arguments.get("attention_mask")
    mask = mask.tolist() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    rows = []
    for b, row in enumerate(ids):
        for i, token_id in enumerate(row):
            padded = mask is not None and not mask[b][i]
            kind = "pad" if padded else call.token_types.get(token_id, "text")
            t, h, w = (stream[b][i] for stream in streams)
            rows.append({"batch": b, "token": i, "token_type": kind, "t": t, "h": h, "w": w})
    return rows


def rope_positions_frame(
    source: RopeCapture | RopeCall | torch.nn.Module,
    inputs: Mapping | None = None,
    *,
    action: str = "forward",
    call: int | None = None,
    max_new_tokens: int = 2,
) -> pd.DataFrame:
    """The 3-D rope positions a call returned, one row per (batch, token) (columns
    `ROPE_POSITION_COLUMNS`), labelled by token type from the model config's token ids.

    `source` is a `RopeCapture` (the call numbered `call`, default the first that returned), one
    `RopeCall`, or a model, which is then run once on `inputs` as in `rope_inputs_frame`. Raises
    `NoRopePositionsError` when the call raised or no call returned (e.g. the video failure of
    transformers 4.49-4.51.3: run the same inputs on one device to see the positions).
    """
    error = None
    if isinstance(source, torch.nn.Module):
        if inputs is None:
            raise InvalidArgumentError(
                "rope_positions_frame(model, inputs): pass the inputs to run the model on."
            )
        source, error = _capture_run(source, inputs, action, max_new_tokens)
    if isinstance(source, RopeCapture):
        source = _chosen_call(source, call, error)
    if not isinstance(source, RopeCall):
        raise InvalidArgumentError(
            f"Expected a RopeCapture, a RopeCall or a model; got {type(source).__name__}."
        )
    return pd.DataFrame(_positions_rows(source), columns=ROPE_POSITION_COLUMNS)


SPAN_COLOURS = {"image": "tab:orange", "video": "tab:purple"}


def _spans(kinds: list[str], tokens: list[int]) -> Iterator[tuple[str, int, int]]:
    """(kind, first token, last token) of each run of image or video tokens."""
    start = None
    for i, kind in enumerate(kinds):
        if start is not None and kind != kinds[start]:
            yield kinds[start], tokens[start], tokens[i - 1]
            start = None
        if start is None and kind in SPAN_COLOURS:
            start = i
    if start is not None:
        yield kinds[start], tokens[start], tokens[-1]


def plot_rope_positions(positions: pd.DataFrame, batch: int = 0, ax=None):
    """Plot the t, h and w position streams over the tokens of one batch row; image and video token
    spans shaded, and inside a video the steps of `t` marked, so the temporal spacing of frames shows.
    Padding tokens are left out. Returns the matplotlib figure (matplotlib is imported only here).

    >>> fig = qd.plot_rope_positions(qd.rope_positions_frame(model, inputs))
    """
    from .plots import _pyplot

    if not isinstance(positions, pd.DataFrame) or not set(ROPE_POSITION_COLUMNS) <= set(positions.columns):
        raise InvalidArgumentError(
            "plot_rope_positions takes the frame of qd.rope_positions_frame (columns "
            f"{', '.join(ROPE_POSITION_COLUMNS)})."
        )
    rows = positions[(positions["batch"] == batch) & (positions["token_type"] != "pad")]
    if rows.empty:
        raise InvalidArgumentError(
            f"No tokens for batch {batch!r} (batches: {sorted(set(positions['batch']))})."
        )
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.5))
    tokens, kinds = rows["token"].tolist(), rows["token_type"].tolist()
    for stream, style in (("t", "-"), ("h", "--"), ("w", ":")):
        ax.plot(tokens, rows[stream].tolist(), style, marker=".", markersize=3, linewidth=1.2, label=stream)
    labelled = set()
    for kind, first, last in _spans(kinds, tokens):
        label = None if kind in labelled else f"{kind} tokens"
        labelled.add(kind)
        ax.axvspan(first - 0.5, last + 0.5, color=SPAN_COLOURS[kind], alpha=0.15, label=label)
        if kind == "video":
            span = rows[(rows["token"] >= first) & (rows["token"] <= last)]
            steps = span["token"][span["t"].diff().fillna(0) != 0].tolist()
            for token in steps:
                ax.axvline(token - 0.5, color=SPAN_COLOURS[kind], linewidth=0.8, linestyle="-.")
    ax.set_xlabel("token")
    ax.set_ylabel("rope position")
    ax.set_title(f"rope positions of batch row {batch}: t (time), h, w; dash-dot lines: video time steps")
    ax.legend(loc="upper left", fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
