"""Which device a command, an analysis or the app runs on: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda")


def default_device() -> str:
    """``cuda`` where a CUDA device is present, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def available_devices() -> tuple[str, ...]:
    """The devices this machine can run models on, the default first.

    Returns:
        Device names: ``cuda`` (then ``cuda:1`` ...) where CUDA works, ``mps`` on Apple silicon, and
        ``cpu`` always, last.

    Examples:
        >>> import coatnet
        >>> coatnet.available_devices()[-1]
        'cpu'
    """
    return ("cuda", "cpu") if torch.cuda.is_available() else ("cpu",)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``name`` as a device (None: :func:`default_device`).

    Args:
        name: a device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``), a :class:`torch.device`, or None
            for the machine's default (the first of :func:`available_devices`).

    Returns:
        The device, checked against what this machine has.

    Raises:
        ValueError: a device this machine lacks, in one line that says what to use instead.

    Examples:
        >>> import coatnet
        >>> coatnet.resolve_device("cpu")
        device(type='cpu')
    """
    device = torch.device(default_device() if name is None else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine: use --device cpu (or run where a GPU is)")
    if device.type not in DEVICES:
        raise ValueError(f"device {str(device)!r} is not supported: use one of {', '.join(DEVICES)}")
    return device
