"""Running a model for one analysis call: the shared model's inference build, or a twin of the call's own.

Analyses never flip train/eval on a model (a served model may be shared by many threads): a model in
training mode is analysed in training mode. Every call runs through :func:`call_model`, which hands a call
that would change anything on the model (hooks, gradients, BatchNorm statistics, random draws) a twin of
its own: no lock, no restoring afterwards, and no call ever observes another. A forward-only call on a
CoAtNet in eval mode runs its inference build (:func:`coatnet.for_inference`: BatchNorm folded, biases
gathered, channels-last, packed convolutions), which records and intervenes as the model does and
computes the same values; so does a call that takes gradients with respect to its input alone
(:func:`input_gradient_model`: autograd runs through the build, whose parameters need none).
:func:`plain_model` turns the build off for a block of code. A call that runs the model's own modules runs
them under :func:`coatnet.model.inference.plain_modules`, so that a pass under ``torch.inference_mode()``
does not take the build by itself: an analysis sees the modules it was given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
from torch import nn

from coatnet.model.blocks import watched
from coatnet.model.inference import for_inference, plain_modules
from coatnet.model.network import CoAtNet
from coatnet.model.randomness import private_random

M = TypeVar("M", bound=nn.Module)
_INFERENCE_BUILD: ContextVar[bool] = ContextVar("analysis_inference_build", default=True)


@contextmanager
def plain_model() -> Iterator[None]:
    """Analyses inside this block run the model's own module tree instead of its inference build (the
    same values within float rounding; for comparing the two, or to step through the model's own code).
    Per thread and task, like every context of the project.

    Yields:
        Nothing; the context is the setting.

    Examples:
        >>> import torch, numpy as np, analysis
        >>> model, x = analysis.load_model("demo-pre"), torch.randn(1, 1, 28, 28)
        >>> with analysis.plain_model():
        ...     plain = analysis.attention_maps(model, x).logits
        >>> np.allclose(plain, analysis.attention_maps(model, x).logits, atol=1e-4)
        True
    """
    token = _INFERENCE_BUILD.set(False)
    try:
        with plain_modules():
            yield
    finally:
        _INFERENCE_BUILD.reset(token)


def fast_runner(model: M) -> M:
    """What a forward-only call on ``model`` (in eval mode) runs: the inference build of a CoAtNet with fp32
    weights and no hooks of its owner's or global ones (a hook registered on the model must see the
    model's own modules), else ``model`` itself. A weight changed in place through ``.data`` bumps no
    version torch keeps: analyse such a model under :func:`plain_model`."""
    if (
        not _INFERENCE_BUILD.get()
        or not isinstance(model, CoAtNet)
        or getattr(model, "inference_build", False)
        or next(model.parameters()).dtype != torch.float32
        or watched(model)  # a hook of the owner's, or a global one, may match the model's own modules
    ):
        return model
    return for_inference(model)


@contextmanager
def call_model(model: M, *, private: bool = False, seed: int = 0) -> Iterator[M]:
    """The model one analysis call runs, so that no call sees or disturbs another's forward pass.

    One model object serves every thread of the app. A forward pass of a model in eval mode, without
    hooks or gradients, changes nothing on it: such a call gets ``model``'s inference build, made once per
    model, device and dtype and made again when its weights change (:func:`fast_runner`; ``model`` itself
    where the build does not apply). A call that registers
    hooks or takes gradients (``private=True``), and any call on a model with a module in training mode
    (its forward passes update BatchNorm statistics), gets :func:`twin` instead: a model of its own that
    shares the parameters' storage, so the hooks it registers fire for this call only, and nothing it does
    (gradients, ``requires_grad``, buffers) reaches the shared model. In training mode stochastic depth
    and dropout draw from a generator seeded with ``seed`` (:func:`coatnet.private_random`): the call
    repeats exactly and the global random state is not touched.

    Args:
        model: the shared model; never changed.
        private: the call registers hooks or takes gradients.
        seed: the stochastic layers' seed, in training mode.

    Examples:
        >>> with call_model(model, private=True) as own:
        ...     handle = own.stem.register_forward_hook(hook)  # fires for this call's passes only
    """
    training = any(m.training for m in model.modules())
    own = twin(model) if private or training else fast_runner(model)
    with ExitStack() as stack:
        if not getattr(own, "inference_build", False):  # the modules it was given, never a build of them
            stack.enter_context(plain_modules())
        if training:
            device = next(model.parameters()).device
            stack.enter_context(private_random(torch.Generator(device=device).manual_seed(seed)))
        yield own


@contextmanager
def input_gradient_model(model: M, *, seed: int = 0) -> Iterator[M]:
    """The model a call runs that takes gradients with respect to its input alone (Integrated
    Gradients): in eval mode the inference build where it applies (its parameters need no gradient,
    and autograd runs through it as through the model, to float rounding), else a :func:`twin` of the
    call's own whose parameters need none (no weight's gradient is computed). Hooks are not for this
    model: register them through ``call_model(model, private=True)``."""
    training = any(m.training for m in model.modules())
    fast = model if training else fast_runner(model)
    if fast is not model:
        yield fast
        return
    with call_model(model, private=True, seed=seed) as own:
        own.requires_grad_(False)  # the twin's own Parameter objects: the model's are untouched
        yield own


def twin(model: M) -> M:
    """A structural copy of ``model`` for one call: new module objects with hook registries of their own
    (holding the hooks the model's owner registered; a hook registered on the twin stays on it), new
    ``Parameter`` objects viewing the same storage (their own ``requires_grad`` and ``.grad``), the
    buffers of modules in training mode cloned (the others shared: nothing writes them). Other attributes
    are shared. No tensor data is copied but those buffers; a weight updated in place (training in
    another thread) is seen by both."""
    memo: dict[int, Any] = {}

    def copy_parameter(p: nn.Parameter | None) -> nn.Parameter | None:
        if p is None:
            return None
        if id(p) not in memo:  # tied weights stay tied
            memo[id(p)] = nn.Parameter(p.detach(), requires_grad=p.requires_grad)
        return memo[id(p)]

    def copy_module(module: nn.Module) -> nn.Module:
        if id(module) in memo:  # a module used twice stays one module
            return memo[id(module)]
        copy = memo[id(module)] = object.__new__(type(module))
        state = dict(module.__dict__)
        for name, value in module.__dict__.items():
            if "hooks" in name and isinstance(value, dict):  # the owner's hooks, in registries of its own
                state[name] = type(value)(value)
        state["_parameters"] = {name: copy_parameter(p) for name, p in module._parameters.items()}
        state["_buffers"] = {
            name: b.clone() if module.training and b is not None else b for name, b in module._buffers.items()
        }
        state["_modules"] = {
            name: None if m is None else copy_module(m) for name, m in module._modules.items()
        }
        copy.__dict__ = state
        return copy

    with torch.inference_mode(False):  # normal tensors, even when called under inference mode
        return copy_module(model)
