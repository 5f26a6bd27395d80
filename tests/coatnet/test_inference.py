"""The inference build: the same outputs as the plain model, the plain model untouched, never stale."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import coatnet
from coatnet.model.inference import FrozenBias, automatic_build, for_inference, inference_build, plain_modules
from tests.support import toys
from tests.support.model_state import assert_as_found, snapshot
from tests.support.threads import in_threads

# timm's three speed-benchmark models: BatchNorm before (nano) and after convolutions, SE early (0),
# a relative bias from an MLP (rmlp); and our paper-like and toy models
VARIANTS = ("coatnet_nano_rw_224", "coatnet_0_rw_224", "coatnet_rmlp_nano_rw_224", "coatnet_0", "coatnet_toy")


def trained_looking(name: str, attention: str = "pre") -> nn.Module:
    torch.manual_seed(0)
    return toys.trained_looking(coatnet.create_model(name, attention=attention))


def batch(model: nn.Module, size: int = 2) -> torch.Tensor:
    return torch.randn(
        size, model.config.in_chans, *model.config.img_size, generator=torch.Generator().manual_seed(1)
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_the_folded_build_computes_what_the_plain_model_does(name):
    model = trained_looking(name)
    x = batch(model)
    with torch.no_grad():
        expected = model(x)
        fast = inference_build(model)
        got = fast(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=2e-5)
    folded = [m for m in fast.modules() if isinstance(m, nn.BatchNorm2d)]
    plain = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(folded) < len(plain)  # something was folded
    assert all(isinstance(m.rel_pos, FrozenBias) for m in fast.modules() if hasattr(m, "rel_pos"))
    assert not any(m.training for m in fast.modules())  # the modules the build made too


def test_post_normalization_and_another_input_size_too():
    model = trained_looking("coatnet_toy", attention="post")
    x = torch.randn(1, model.config.in_chans, 64, 64)  # not the built grid: the bias is computed again
    with torch.no_grad():
        torch.testing.assert_close(for_inference(model)(x), model(x), rtol=1e-4, atol=2e-5)


def test_building_leaves_the_plain_model_as_it_was():
    model = trained_looking("coatnet_nano_rw_224")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = snapshot(model)
    inference_build(model)
    assert_as_found(before, model)
    after = model.state_dict()
    assert list(after) == list(state) and all(torch.equal(after[k], v) for k, v in state.items())


def test_one_build_per_model_and_a_new_one_after_a_weight_update():
    model = trained_looking("coatnet_toy")
    x = batch(model)
    first = for_inference(model)
    assert for_inference(model) is first  # unchanged weights: the same build
    with torch.no_grad():
        model.head.fc.weight.add_(0.5)  # an optimizer step changes weights in place
        next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).running_mean.add_(0.3)
    second = for_inference(model)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(x), model(x), rtol=1e-4, atol=2e-5)  # cached == uncached
        torch.testing.assert_close(second(x), inference_build(model)(x), rtol=0, atol=0)
    model.load_state_dict(trained_looking("coatnet_toy").state_dict())  # new tensors entirely
    assert for_inference(model) is not second


def test_a_build_made_under_inference_mode_can_sit_beside_gradients():
    model = trained_looking("coatnet_toy")
    with torch.inference_mode():
        fast = for_inference(model)
    assert not any(t.is_inference() for t in [*fast.parameters(), *fast.buffers()])
    x = batch(model).requires_grad_(True)
    model(x).sum().backward()  # the plain model still takes gradients, as analyses do
    assert x.grad is not None and not any(p.requires_grad for p in fast.parameters())


@pytest.mark.parametrize("attention", ["pre", "post"])
def test_recording_on_the_build_gives_the_plain_models_records(attention):
    """The fused path of the build equals the explicit path of the plain model, weight for weight."""
    model = trained_looking("coatnet_toy", attention=attention)
    x = batch(model)
    fast = for_inference(model)
    with torch.no_grad(), coatnet.record_attention() as plain_records:
        plain = model(x)
    with torch.no_grad(), coatnet.record_attention() as fast_records:
        recorded = fast(x)
    with torch.no_grad():
        fused = fast(x)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(recorded, plain, rtol=1e-4, atol=2e-5)
    assert len(fast_records) == len(plain_records) > 0
    for a, b in zip(fast_records, plain_records, strict=True):
        torch.testing.assert_close(a.weights, b.weights, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a.bias, b.bias, rtol=0, atol=0)


def test_the_build_runs_channels_last_whatever_the_input():
    model = trained_looking("coatnet_toy")
    fast = for_inference(model)
    assert fast.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = batch(model)
    assert x.is_contiguous()  # an NCHW input is taken as it comes
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize(
    "act", [None, nn.SiLU(), nn.ReLU(), nn.GELU(), nn.GELU(approximate="tanh")], ids=lambda a: repr(a)
)
@pytest.mark.parametrize("kernel, groups", [(1, 1), (3, 8), (3, 1)])
def test_a_packed_convolution_equals_the_plain_one_at_every_shape(act, kernel, groups):
    """Weights packed per input shape: new grids, batch sizes, and shapes evicted and packed again."""
    from coatnet.model.inference import PackedConv2d

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, kernel, padding=kernel // 2, groups=groups).to(memory_format=torch.channels_last)
    plain = nn.Sequential(conv, act or nn.Identity())
    packed = PackedConv2d(conv, act)
    grids = [(1, 7, 7), (4, 7, 7), (2, 9, 5), (1, 14, 14), (3, 3, 3), (2, 16, 8), (1, 7, 7), (4, 7, 7)]
    grids.append((5, 32, 32))
    with torch.inference_mode():
        for size, *grid in grids:
            x = torch.randn(size, 8, *grid).contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(packed(x), plain(x), rtol=1e-5, atol=1e-5)
    assert len(packed.packed) == PackedConv2d.SHAPES  # at most SHAPES shapes kept
    # kept per shape, batch size included: a weight packed for batch 1 is not reused at batch 4
    assert {(1, 7, 7), (4, 7, 7)} <= set(packed.packed)
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    packed(x).sum().backward()  # an input that needs gradients takes the plain path
    assert x.grad is not None


def test_the_builds_state_dict_holds_no_packed_weights():
    model = trained_looking("coatnet_0_rw_224")
    fast = for_inference(model)
    packed = [m for m in fast.modules() if type(m).__name__ == "PackedConv2d"]
    assert packed and all(m.post_op[0] != "none" for m in (fast.stages[2].blocks[0].mlp.fc1,))
    with torch.inference_mode():
        fast(batch(model, 1))
    assert all(m.packed for m in packed if m.groups > 1)  # packed on first use (depthwise: always)
    assert not fast.stem.conv1.packed  # 112 x 112 positions: oneDNN's per-call path
    assert all(t.layout == torch.strided for t in [*fast.parameters(), *fast.buffers()])
    assert all(not k.endswith("packed") for k in fast.state_dict())


def test_a_call_under_inference_mode_takes_the_build_and_follows_weight_changes():
    model = trained_looking("coatnet_toy")
    x = batch(model)
    with torch.no_grad():
        plain = model(x)  # gradients merely off: the model's own modules
    with torch.inference_mode():
        assert automatic_build(model) is for_inference(model)
        torch.testing.assert_close(model(x), plain, rtol=1e-4, atol=2e-5)
    with torch.no_grad():
        model.head.fc.bias.add_(1.0)  # changed in place: a new version
    with torch.inference_mode():
        torch.testing.assert_close(model(x), plain + 1.0, rtol=1e-4, atol=2e-5)
    model.head.fc = nn.Linear(model.head.fc.in_features, model.head.fc.out_features).eval()  # a new tensor
    with torch.inference_mode():
        assert torch.equal(automatic_build(model).head.fc.weight, model.head.fc.weight)
        assert automatic_build(automatic_build(model)) is None  # a build runs its own modules


def test_the_build_is_not_taken_where_the_modules_themselves_must_run():
    model = trained_looking("coatnet_toy")
    x = batch(model)
    with torch.inference_mode():
        assert automatic_build(model) is not None
    with torch.no_grad():
        assert automatic_build(model) is None  # gradients off but not inference mode: a no_grad pass
    handle = model.stages[2].register_forward_hook(lambda *args: None)
    with torch.inference_mode():
        assert automatic_build(model) is None  # the hook must see the model's own modules
    handle.remove()
    global_handle = nn.modules.module.register_module_forward_pre_hook(lambda *args: None)
    with torch.inference_mode():
        assert automatic_build(model) is None
    global_handle.remove()
    model.stages[1].train()  # one module in training mode: its BatchNorm statistics are the batch's
    with torch.inference_mode():
        assert automatic_build(model) is None
    model.eval()
    knockout = coatnet.Intervention("S3.0", "knockout")
    contexts = [
        coatnet.record_attention, lambda: coatnet.tracing(["logits"]), lambda: coatnet.intervene(knockout),
        plain_modules, lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    ]  # fmt: skip
    for context in contexts:
        with torch.inference_mode(), context():
            assert automatic_build(model) is None
    with torch.inference_mode(), coatnet.record_attention() as records:
        model(x)
    assert len(records) == len(toys.attentions(model))  # recorded on the model's own modules


def test_whether_a_call_takes_the_build_is_per_thread():
    model = trained_looking("coatnet_toy")
    inside, done = threading.Event(), threading.Event()
    found = {}

    def recording() -> None:
        with coatnet.record_attention(), plain_modules():
            inside.set()
            done.wait(30)  # the other thread's call runs while these are open
            with torch.inference_mode():
                found["here"] = automatic_build(model)

    def calling() -> None:
        inside.wait(30)
        with torch.inference_mode():
            found["there"] = automatic_build(model)
        done.set()

    in_threads(recording, calling)
    assert found["here"] is None and found["there"] is for_inference(model)
