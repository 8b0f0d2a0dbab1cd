"""CUDA streams and events of the simulated GPUs (what FSDP2's overlap of compute and copies uses).

A simulated GPU runs every kernel on the CPU at once, in program order: any stream's work is done
when it is queued, so waits return at once and queries say True. What the objects must keep is
their bookkeeping, as torch/cuda/streams.py and c10/cuda/CUDAStream.h define it: a stream belongs
to one device (`torch.cuda.Stream(device=None)` is the current device's), each device has a default
stream that is current until `torch.cuda.stream(s)` / `set_stream(s)` make another one current (per
thread), and an event records on a stream of its own device ("The stream's device must match the
event's device").
"""

from __future__ import annotations

import itertools
import threading

import torch

from . import state

_ids = itertools.count(1)
_local = threading.local()


def _device(device=None) -> torch.device:
    simulation = state.active()
    index = simulation.current if device is None else state.cuda_device(device)
    if isinstance(index, torch.device):
        return index
    if index is None:
        raise ValueError(f"Expected a cuda device, but got: {device}")
    return torch.device("cuda", index)


class Stream:
    """`torch.cuda.Stream` on a simulated GPU."""

    def __init__(self, device=None, priority: int = 0, **kwargs):
        self.device = _device(device)
        self.priority = priority
        self.cuda_stream = next(_ids) << 4
        self.device_type = "cuda"
        self.device_index = self.device.index

    def wait_event(self, event: Event) -> None:
        return None

    def wait_stream(self, stream: Stream) -> None:
        return None

    def record_event(self, event: Event | None = None) -> Event:
        event = Event() if event is None else event
        event.record(self)
        return event

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        return None

    def __eq__(self, other) -> bool:
        return isinstance(other, Stream) and other.cuda_stream == self.cuda_stream

    def __hash__(self) -> int:
        return hash((self.cuda_stream, self.device))

    def __repr__(self) -> str:
        return f"<torch.cuda.Stream device={self.device} cuda_stream={self.cuda_stream:#x}>"


class Event:
    """`torch.cuda.Event` on a simulated GPU: recorded on a stream, always complete."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        self.enable_timing = enable_timing
        self.device: torch.device | None = None
        self.cuda_event = 0

    def record(self, stream: Stream | None = None) -> None:
        stream = current_stream() if stream is None else stream
        if self.device is not None and stream.device != self.device:
            # c10/cuda/impl/CUDAGuardImpl.h record(): the event's device is fixed by its first record
            raise RuntimeError(
                f"Event device {self.device} does not match recording stream's device {stream.device}."
            )
        self.device = stream.device
        self.cuda_event = self.cuda_event or next(_ids) << 4

    def wait(self, stream: Stream | None = None) -> None:
        return None

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        return None

    def elapsed_time(self, end_event: Event) -> float:
        return 0.0

    def __repr__(self) -> str:
        if self.cuda_event:
            return f"<torch.cuda.Event {self.cuda_event:#x}>"
        return "<torch.cuda.Event uninitialized>"


def _streams() -> dict:
    """This thread's {device index: (default stream, current stream)} of the running simulation."""
    simulation = state.active()
    if getattr(_local, "simulation", None) is not simulation:
        _local.simulation, _local.streams = simulation, {}
    return _local.streams


def default_stream(device=None) -> Stream:
    device = _device(device)
    streams = _streams()
    if device.index not in streams:
        default = Stream(device)
        streams[device.index] = (default, default)
    return streams[device.index][0]


def current_stream(device=None) -> Stream:
    device = _device(device)
    default_stream(device)
    return _streams()[device.index][1]


def set_stream(stream: Stream | None) -> None:
    if stream is None:
        return
    default_stream(stream.device)
    streams = _streams()
    streams[stream.device.index] = (streams[stream.device.index][0], stream)


class StreamContext:
    """`torch.cuda.stream(s)`: makes `s` current on its device (and that device current) until exit."""

    def __init__(self, stream: Stream | None):
        self.stream = stream
        self._previous: tuple | None = None

    def __enter__(self):
        if self.stream is None:
            return None
        simulation = state.active()
        self._previous = (simulation.current, current_stream(self.stream.device))
        simulation.current = self.stream.device.index
        set_stream(self.stream)
        return self.stream

    def __exit__(self, *exc) -> bool:
        if self._previous is not None:
            index, stream = self._previous
            set_stream(stream)
            state.active().current = index
        return False


def shims() -> dict:
    """{torch.cuda attribute: simulated replacement} for streams and events."""
    return {
        "Stream": Stream,
        "Event": Event,
        "current_stream": current_stream,
        "default_stream": default_stream,
        "set_stream": set_stream,
        "stream": StreamContext,
        "StreamContext": StreamContext,
    }


def accelerator_shims() -> dict:
    """{torch.accelerator attribute: replacement}: the stream calls PyTorch's device-generic code
    (FSDP2 among it) makes on the current accelerator."""
    return {
        "current_stream": lambda device=None: current_stream(device),
        "set_stream": set_stream,
        "synchronize": lambda device=None: None,
    }
