"""Device names and sizes as accelerate writes them, normalised, with the kit's own errors."""

from __future__ import annotations

import torch
from accelerate.utils import convert_file_size_to_int

from ..errors import PlacementError

OFFLOAD_DEVICES = ("cpu", "disk")


def parse_memory(value: int | str, what: str = "memory") -> int:
    """Bytes in `value` (an int, or a string such as "24GiB", "80GB", "512MiB")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PlacementError(f"{what} must be an int of bytes or a string like '24GiB'; got {value!r}.")
    try:
        size = value if isinstance(value, int) else convert_file_size_to_int(value)
    except (ValueError, AttributeError) as error:
        raise PlacementError(
            f"Cannot read {what} {value!r}: use bytes or a string like '24GiB' or '80GB'."
        ) from error
    if size <= 0:
        raise PlacementError(f"{what} must be positive; got {value!r}.")
    return size


def normalise_device(device: object, gpus: int | None = None) -> int | str:
    """The accelerate form of a device: an int for GPU N, else "cpu" / "disk".

    Accepts 1, "1", "cuda:1", torch.device("cuda", 1), "cpu", "disk". With `gpus`, a GPU index beyond
    the machine's count is an error.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    if isinstance(device, str) and device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        device = int(index) if index.isdigit() else device
    if isinstance(device, str) and device in OFFLOAD_DEVICES:
        return device
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise PlacementError(f"Unknown device {device!r}: use a GPU index (0, 'cuda:1'), 'cpu' or 'disk'.")
    if gpus is not None and device >= gpus:
        raise PlacementError(
            f"Device {device} is beyond this layout's {gpus} GPU(s) (valid: 0..{gpus - 1}, 'cpu', 'disk')."
        )
    return device


def device_label(device: int | str | torch.device) -> str:
    """ "cuda:N" for a GPU index, else the device's own name ("cpu", "disk", "cuda:1")."""
    return f"cuda:{device}" if isinstance(device, int) else str(device)


def device_order(label: str) -> tuple:
    """Sort key for device labels: GPUs by index ("cuda:2" before "cuda:10"), then "cpu", "disk"."""
    kind, _, index = label.partition(":")
    return (kind != "cuda", int(index) if index.isdigit() else 0, kind)
