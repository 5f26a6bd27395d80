"""Which device a command, an analysis or the app runs on: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda")


def default_device() -> str:
    """``cuda`` where a CUDA device is present, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def available_devices() -> tuple[str, ...]:
    """The devices this machine can run models on, the default first."""
    return ("cuda", "cpu") if torch.cuda.is_available() else ("cpu",)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``name`` as a device (None: :func:`default_device`).

    Raises:
        ValueError: a device this machine lacks, in one line that says what to use instead.
    """
    device = torch.device(default_device() if name is None else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine: use --device cpu (or run where a GPU is)")
    if device.type not in DEVICES:
        raise ValueError(f"device {str(device)!r} is not supported: use one of {', '.join(DEVICES)}")
    return device
