"""Everything an analysis must leave as it found it, for the "as found" tests (issue 11).

:func:`snapshot` takes the state of a model and of the process that a call could disturb: parameters and
buffers (values and identity), ``requires_grad``, ``.grad`` (identity and values), every module's training
flag, every hook registry of every module and torch's global ones, the global random states (torch, CUDA,
numpy, Python) and the grad / inference mode. Two snapshots compare equal when nothing changed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as module_globals

_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_forward_hooks_always_called",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks",
)


def _tensor_state(t: torch.Tensor | None) -> tuple | None:
    if t is None:
        return None
    return id(t), t.detach().clone()


def _hook_registries(module: nn.Module) -> dict[str, tuple]:
    """Every hook registry of a module, by attribute name: the keys and the hooks' identities."""
    return {
        name: tuple((key, id(hook)) for key, hook in value.items())
        for name, value in vars(module).items()
        if "hooks" in name and isinstance(value, dict)
    }


@dataclass(eq=False)
class Snapshot:
    parameters: list[tuple]
    buffers: list[tuple]
    flags: list[tuple[str, bool]]
    grads: list[tuple]
    training: list[tuple[str, bool]]
    hooks: list[tuple[str, dict]]
    global_hooks: dict[str, tuple]
    rng: list[Any]
    modes: tuple[bool, bool]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and not self.differences(other)

    __hash__ = None

    def differences(self, other: Snapshot) -> list[str]:
        """What differs, in words (empty when nothing does)."""
        out = []
        for field in ("parameters", "buffers", "grads"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if [n for n, *_ in mine] != [n for n, *_ in theirs]:
                out.append(f"{field}: names differ")
                continue
            for (name, a), (_, b) in zip(mine, theirs, strict=True):
                if (a is None) != (b is None):
                    out.append(f"{field} {name}: set / unset")
                elif a is not None and (a[0] != b[0] or not _same_tensor(a[1], b[1])):
                    out.append(f"{field} {name}: {'identity' if a[0] != b[0] else 'values'} changed")
        for field in ("flags", "training", "hooks", "global_hooks", "modes"):
            if getattr(self, field) != getattr(other, field):
                out.append(f"{field} changed")
        if not all(_same_rng(a, b) for a, b in zip(self.rng, other.rng, strict=True)):
            out.append("global random state changed")
        return out


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def _same_rng(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return bool(torch.equal(a, b))
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same_rng(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_rng(a[k], b[k]) for k in a)
    return a == b


def snapshot(*models: nn.Module) -> Snapshot:
    """The state of ``models`` and of the process that no analysis may change."""
    named = [(f"{i}.{name}", m) for i, model in enumerate(models) for name, m in model.named_modules()]
    params = [(f"{i}.{n}", p) for i, model in enumerate(models) for n, p in model.named_parameters()]
    buffers = [(f"{i}.{n}", b) for i, model in enumerate(models) for n, b in model.named_buffers()]
    rng: list[Any] = [torch.get_rng_state(), np.random.get_state(), random.getstate()]
    if torch.cuda.is_available():
        rng.append(torch.cuda.get_rng_state_all())
    return Snapshot(
        parameters=[(n, _tensor_state(p)) for n, p in params],
        buffers=[(n, _tensor_state(b)) for n, b in buffers],
        flags=[(n, p.requires_grad) for n, p in params],
        grads=[(n, _tensor_state(p.grad)) for n, p in params],
        training=[(n, m.training) for n, m in named],
        hooks=[(n, _hook_registries(m)) for n, m in named],
        global_hooks={name: tuple(getattr(module_globals, name, {}).items()) for name in _GLOBAL_HOOKS},
        rng=rng,
        modes=(torch.is_grad_enabled(), torch.is_inference_mode_enabled()),
    )


def assert_as_found(before: Snapshot, *models: nn.Module) -> None:
    """Fail, saying what changed, unless ``models`` and the process are as in ``before``."""
    changed = before.differences(snapshot(*models))
    assert not changed, "; ".join(changed[:10])
