"""LRP's rules (:mod:`analysis.explain.lrp`): autograd functions, each an identity or a plain operation
forward whose backward carries ``G`` (the relevance of a tensor ``x`` is ``x * G``), and each kind of layer
through them. What a rule keeps (a bias's share, the stabiliser's, the softmax rule's, the position
bias's) is accounted per image in the call's :class:`_Pass`, which belongs to that call alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from coatnet.model.layers import LayerNorm2d, LayerScale, SamePad, SqueezeExcite, batchnorm_affine

SOURCES = ("bias", "epsilon", "softmax", "position")
"""Where relevance is kept on its way to the pixels (:attr:`LRP.absorbed`): additive biases (of
convolutions, linear layers, BatchNorm and LayerNorm), the epsilon stabiliser, AttnLRP's softmax rule,
and the relative-position bias ``w_{i-j}``."""
ACTIVATIONS = (nn.GELU, nn.SiLU, nn.ReLU, nn.Tanh)


@dataclass
class _Row:
    """A ledger row as the backward pass fills it: (B,) tensors."""

    part: str
    kind: str
    values: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, name: str, value: torch.Tensor) -> None:
        self.values[name] = self.values[name] + value if name in self.values else value


class _Pass:
    """One call's rule, epsilon, absorbed relevance, ledger rows and stage relevance: held by this call's
    graph alone."""

    def __init__(self, rule: str, epsilon: float, batch: int, dtype: torch.dtype, device) -> None:
        self.rule, self.epsilon, self.batch = rule, epsilon, batch
        self.absorbed = {s: torch.zeros(batch, dtype=dtype, device=device) for s in SOURCES}
        self.rows: list[_Row] = []
        self.stages: dict[str, torch.Tensor] = {}

    @property
    def attnlrp(self) -> bool:
        return self.rule == "attnlrp"

    def row(self, part: str, kind: str) -> _Row:
        made = _Row(str(part), kind)
        self.rows.append(made)
        return made

    def per_sample(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) sums of ``t``, whose first axis counts images (or image-major windows of them)."""
        return t.reshape(self.batch, -1).sum(1)

    def keep(self, source: str, amount: torch.Tensor) -> None:
        self.absorbed[source] = self.absorbed[source] + amount

    def stabilised(
        self, z: torch.Tensor, g: torch.Tensor, *, total: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The epsilon rule at ``z`` on its incoming gradient ``g``: ``g z / (z + epsilon sign z)``, what the
        stabiliser withholds kept as ``epsilon``; with ``total``, also (B,) the relevance that passes,
        ``sum(z g')`` (else None)."""
        if self.epsilon == 0:
            return g, self.per_sample(z * g) if total else None
        shift = torch.copysign(z.new_tensor(self.epsilon), z)  # sign(+0) = +1: +epsilon
        held = z * g
        passed = held / (z + shift)
        kept = self.per_sample(passed * shift)  # z g - z g z / (z + s) = g z s / (z + s)
        self.keep("epsilon", kept)
        return passed, self.per_sample(held) - kept if total else None

    def bias_share(self, bias: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(B,) ``sum(bias * g)`` for a ``bias`` that broadcasts against ``g`` (right-aligned): ``g`` summed
        over the axes the bias repeats along first, then the small product."""
        lead = g.ndim - bias.ndim
        axes = [d for d in range(1, g.ndim) if d < lead or bias.shape[d - lead] == 1]
        return self.per_sample((g.sum(axes, keepdim=True) if axes else g) * bias)


# -- the rules, as autograd functions ------------------------------------------------------------------


class _Epsilon(torch.autograd.Function):
    """Identity forward on ``z`` (a layer's output holding ``bias``, broadcast, or None); backward: the
    epsilon rule's factor on the gradient, the bias's share and the stabiliser's kept."""

    @staticmethod
    def forward(ctx, z, bias, state):
        ctx.state, ctx.has_bias = state, bias is not None
        ctx.save_for_backward(z, bias if bias is not None else z.new_zeros(()))
        return z.view_as(z)

    @staticmethod
    def backward(ctx, g):
        z, bias = ctx.saved_tensors
        state = ctx.state
        passed, _ = state.stabilised(z, g)
        if ctx.has_bias:
            state.keep("bias", state.bias_share(bias, passed))
        return passed, None, None


class _Sum(torch.autograd.Function):
    """``a + b`` under the epsilon rule, each term receiving in proportion; ``record(ra, rb)`` is told the
    (B,) relevance each received."""

    @staticmethod
    def forward(ctx, a, b, state, record):
        out = a + b
        ctx.state, ctx.record = state, record
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        state = ctx.state
        passed, total = state.stabilised(out, g, total=True)
        if b.shape != out.shape:  # a bias, broadcast: its share, and the rest to a
            to_b = state.bias_share(b, passed)
            to_a = total - to_b
        else:
            to_a = state.per_sample(a * passed)
            to_b = total - to_a
        ctx.record(to_a, to_b)
        grad_a = passed if ctx.needs_input_grad[0] else None
        grad_b = _reduced(passed, b.shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None, None


_AT_ZERO: dict[tuple, float] = {}  # f'(0) of each kind of activation, the identity rule's ratio at 0


class _Identity(torch.autograd.Function):
    """An activation under the identity rule: ``act(x)`` forward; backward ``g * act(x) / x`` (``f'(0)``
    at 0)."""

    @staticmethod
    def forward(ctx, x, act):
        y = act(x)
        ctx.save_for_backward(x, y)
        kind = (type(act), getattr(act, "approximate", None))
        if kind not in _AT_ZERO:
            _AT_ZERO[kind] = float(act(torch.tensor(1e-6, dtype=torch.float64)) / 1e-6)
        ctx.at_zero, ctx.kind = _AT_ZERO[kind], kind
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g * _ratio(ctx.kind, x, y, ctx.at_zero), None


def _ratio(kind: tuple, x: torch.Tensor, y: torch.Tensor, at_zero: float) -> torch.Tensor:
    """``f(x) / x``, ``f'(0)`` at 0: in closed form where it is cheaper than the quotient (SiLU: the
    sigmoid, ReLU: the step), else the quotient (0 / 0 only where x is 0)."""
    act, _ = kind
    if issubclass(act, nn.SiLU):
        return torch.sigmoid(x)
    if issubclass(act, nn.ReLU):
        return (x >= 0).to(x.dtype)
    return (y / x).nan_to_num_(nan=at_zero)


class _Product(torch.autograd.Function):
    """``a @ b``; backward under the epsilon rule at its output (when ``stabilise``), then, with ``half``,
    each factor's gradient halved (AttnLRP's uniform rule for a product of two inputs)."""

    @staticmethod
    def forward(ctx, a, b, state, half, stabilise):
        ctx.state, ctx.half, ctx.stabilise = state, half, stabilise
        out = a @ b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        state = ctx.state
        if ctx.stabilise:
            g, _ = state.stabilised(out, g)
        share = 0.5 if ctx.half else 1.0
        grad_a = share * (g @ b.transpose(-2, -1)) if ctx.needs_input_grad[0] else None
        grad_b = share * (a.transpose(-2, -1) @ g) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None, None, None


class _Softmax(torch.autograd.Function):
    """Softmax over the last axis under AttnLRP's rule (its gradient times input at the logits); what it
    keeps is told to ``record`` per image and accounted as ``softmax``."""

    @staticmethod
    def forward(ctx, x, state, record):
        s = torch.softmax(x, dim=-1)
        ctx.state, ctx.record = state, record
        ctx.save_for_backward(x, s)
        return s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        state = ctx.state
        grad = s * (g - (s * g).sum(-1, keepdim=True))
        kept = state.per_sample(s * g) - state.per_sample(x * grad)
        state.keep("softmax", kept)
        ctx.record(kept)
        return grad, None, None


class _Observe(torch.autograd.Function):
    """Identity; backward tells ``record`` the relevance ``x * g`` it passes."""

    @staticmethod
    def forward(ctx, x, record):
        ctx.record = record
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        ctx.record(x * g)
        return g, None


def _reduced(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``g`` summed down to a broadcast operand's ``shape``."""
    while g.ndim > len(shape):
        g = g.sum(0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis, keepdim=True)
    return g


# -- layers --------------------------------------------------------------------------------------------


def _layer(module: nn.Module, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    """A convolution or linear layer (its bias kept as ``bias``), under the epsilon rule."""
    if type(module) not in (nn.Conv2d, nn.Linear):
        raise ValueError(
            f"LRP has no rule for a {type(module).__name__} layer (the inference build fuses layers: explain "
            "the model itself, not coatnet.for_inference's build)"
        )
    z = module(x)
    bias = getattr(module, "bias", None)
    if bias is not None:
        bias = bias.detach()
        bias = bias.reshape(-1, *([1] * (z.ndim - 2))) if isinstance(module, nn.Conv2d) else bias
    return _Epsilon.apply(z, bias, state)


def _conv_bn(conv: nn.Module, norm: nn.Module, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    """``norm(conv(x))``: a BatchNorm folded into the convolution before it (one epsilon step, its shift
    and the convolution's bias kept as ``bias``); another norm after its convolution, each its own."""
    if not isinstance(norm, nn.BatchNorm2d):
        return _norm(norm, _layer(conv, x, state), state)
    scale, shift = (t.detach() for t in batchnorm_affine(norm))
    z = conv(x)
    bias = shift if conv.bias is None else conv.bias.detach() * scale + shift
    return _Epsilon.apply(z * scale[:, None, None] + shift[:, None, None], bias[:, None, None], state)


def _norm(norm: nn.Module, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    """A BatchNorm (per-channel affine from its running statistics), a LayerNorm (its standard deviation
    constant) or nothing, under the epsilon rule."""
    if isinstance(norm, nn.Identity):
        return x
    if isinstance(norm, nn.BatchNorm2d):
        scale, shift = (t.detach() for t in batchnorm_affine(norm))
        return _Epsilon.apply(x * scale[:, None, None] + shift[:, None, None], shift[:, None, None], state)
    if isinstance(norm, LayerNorm2d):
        return _layer_norm(norm, x.permute(0, 2, 3, 1), state).permute(0, 3, 1, 2)
    if isinstance(norm, nn.LayerNorm):
        return _layer_norm(norm, x, state)
    raise ValueError(f"LRP has no rule for a {type(norm).__name__} norm")


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    centred = x - x.mean(-1, keepdim=True)
    deviation = (centred.detach().pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
    y = centred / deviation
    if norm.weight is not None:
        y = y * norm.weight.detach()
    bias = norm.bias.detach() if norm.bias is not None else None
    return _Epsilon.apply(y if bias is None else y + bias, bias, state)


def _act(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(act, nn.Identity):
        return x
    if not isinstance(act, ACTIVATIONS):
        raise ValueError(f"LRP has no rule for a {type(act).__name__} activation")
    return _Identity.apply(x, act)


def _pool(pool: nn.Module, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    """Average pooling in proportion (epsilon rule), max pooling to the winner, padding as it is."""
    if isinstance(pool, nn.AvgPool2d):
        return _Epsilon.apply(pool(x), None, state)
    if isinstance(pool, (nn.MaxPool2d, nn.Identity, SamePad)):
        return pool(x)
    raise ValueError(f"LRP has no rule for a {type(pool).__name__} pool")


def _shortcut(shortcut: nn.Module, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    x = _pool(shortcut.pool, x, state)
    return x if isinstance(shortcut.expand, nn.Identity) else _layer(shortcut.expand, x, state)


def _gate(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Squeeze-excitation with its gate a constant: relevance goes to the gated features only."""
    if isinstance(se, nn.Identity):
        return x
    if not isinstance(se, SqueezeExcite):
        raise ValueError(f"LRP has no rule for a {type(se).__name__} in squeeze-excitation's place")
    with torch.no_grad():
        gate = se.gate(se.fc2(se.act(se.fc1(x.mean((2, 3), keepdim=True)))))
    return x * gate


def _scaled(ls: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LayerScale: a constant per channel."""
    if isinstance(ls, nn.Identity):
        return x
    if not isinstance(ls, LayerScale):
        raise ValueError(f"LRP has no rule for a {type(ls).__name__} in LayerScale's place")
    return x * ls.gamma.detach()[:, None, None]


def _mlp(mlp: nn.Module, x: torch.Tensor, state: _Pass) -> torch.Tensor:
    if isinstance(mlp.fc1, nn.Conv2d):  # the inference build's 1x1 convolutions
        return _layer(mlp.fc2, _act(mlp.act, _layer(mlp.fc1, x, state)), state)
    x = x.permute(0, 2, 3, 1)
    return _layer(mlp.fc2, _act(mlp.act, _layer(mlp.fc1, x, state)), state).permute(0, 3, 1, 2)


def _residual(skip: torch.Tensor, branch: torch.Tensor, row: _Row, state: _Pass) -> torch.Tensor:
    def record(to_skip: torch.Tensor, to_branch: torch.Tensor) -> None:
        row.add("skip", to_skip)
        row.add("branch", to_branch)

    return _Sum.apply(skip, branch, state, record)


def _entering(x: torch.Tensor, row: _Row, state: _Pass) -> torch.Tensor:
    """``x``, the relevance it passes told to ``row`` as its branch (a part without a skip)."""
    return _Observe.apply(x, lambda r: row.add("branch", state.per_sample(r)))
