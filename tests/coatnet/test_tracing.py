"""The named activation cache and patching at its names (coatnet.model.tracing): every name is made, with
the values the model computes; the inference build and timm's imported models trace the same; only what
is selected is kept; patches replace; per thread; nothing left on the model."""

from __future__ import annotations

import threading

import pytest
import torch

import coatnet
from coatnet.model.tracing import MBCONV_NAMES, TRANSFORMER_NAMES, active_capture, check_names
from tests.support.threads import in_threads
from tests.support.toys import breaks_mid_way, images, state, toy, trained_looking


@pytest.fixture(scope="module")
def model() -> coatnet.CoAtNet:
    return trained_looking(toy())


def se_early() -> coatnet.CoAtNet:
    """timm's coatnet_0_rw_224 layout (squeeze-excitation before the BatchNorm, a pre-activation),
    narrowed: 64 px, S3 on 4x4."""
    torch.manual_seed(0)
    built = coatnet.create_model("coatnet_0_rw_224", img_size=64, dims=(32, 32, 64, 64), depths=(1, 1, 2, 1))
    return trained_looking(built.eval())


def test_every_name_is_traced_in_forward_order_with_its_shape(model) -> None:
    x = images()
    cache = coatnet.trace(model, x, ["*"])
    names = coatnet.trace_names(model)
    assert list(cache) == names
    assert names[0] == "S0.output" and names[-2:] == ["pooled", "logits"]
    assert [n[len("S1.0.") :] for n in names if n.startswith("S1.0.")] == list(MBCONV_NAMES)
    assert [n[len("S3.0.") :] for n in names if n.startswith("S3.0.")] == list(TRANSFORMER_NAMES)
    attn = model.stages[2].blocks[0].attn
    n = 16  # S3.0's 4x4 grid
    assert cache["S3.0.attn.q"].shape == (2, attn.heads, n, attn.head_dim)
    assert cache["S3.0.attn.weights"].shape == (2, attn.heads, n, n)
    assert cache["S3.0.attn.bias"].shape == (attn.heads, n, n)
    assert cache["S3.0.attn.heads"].shape == (2, attn.heads, n, attn.head_dim)
    gate = cache["S1.0.se.gate"]
    assert gate.shape[2:] == (1, 1) and ((gate > 0) & (gate < 1)).all()
    # the parts add up: output = input's shortcut + branch, the stage's output is its last block's
    block = model.stages[0].blocks[0]
    with torch.no_grad():
        shortcut = block.shortcut(cache["S1.0.input"])
    torch.testing.assert_close(cache["S1.0.output"], shortcut + cache["S1.0.branch"])
    last = f"S4.{len(model.stages[3].blocks) - 1}.output"
    assert torch.equal(cache["S4.output"], cache[last])
    torch.testing.assert_close(cache["pooled"], cache["S4.output"].mean((2, 3)))
    with torch.no_grad():
        torch.testing.assert_close(cache["logits"], model(x))


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_attention_parts_are_the_recorders_and_make_the_output(mode: str) -> None:
    model = trained_looking(toy(attention=mode))
    x = images()
    cache = coatnet.trace(model, x, ["*.attn.*"])
    with torch.no_grad(), coatnet.record_attention() as records:
        model(x)
    for record in records:
        name = f"{record.name}.attn"
        assert torch.equal(cache[f"{name}.weights"], record.weights)
        assert torch.equal(cache[f"{name}.logits"], record.content_logits)
        assert torch.equal(cache[f"{name}.bias"], record.bias)
        torch.testing.assert_close(cache[f"{name}.heads"], cache[f"{name}.weights"] @ cache[f"{name}.v"])
        q, k = cache[f"{name}.q"], cache[f"{name}.k"]
        torch.testing.assert_close(cache[f"{name}.logits"], q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5)


@pytest.mark.parametrize("build", [toy, se_early])
def test_the_inference_build_traces_the_same_values(build) -> None:
    model = trained_looking(build())
    x = images(size=model.config.img_size[0])
    plain = coatnet.trace(model, x, ["*"])
    fast = coatnet.trace(coatnet.for_inference(model), x, ["*"])
    assert list(fast) == list(plain)
    for name, value in plain.items():
        torch.testing.assert_close(fast[name], value, rtol=1e-4, atol=1e-4 * value.abs().max().item())


def test_untraced_values_are_the_traced_ones(model) -> None:
    """Tracing changes what runs in place, never a value: the untraced pass gives the same logits."""
    x = images()
    with torch.no_grad(), coatnet.record_attention():  # both on the explicit path
        expected = model(x)
    assert torch.equal(coatnet.trace(model, x, ["*"])["logits"], expected)


def test_only_the_selected_names_are_kept(model) -> None:
    x = images()
    assert set(coatnet.trace(model, x, ["S3.*.attn.weights"])) == {"S3.0.attn.weights"}
    across = coatnet.trace(model, x, ["*attn.weights"])  # `*` matches across dots
    assert set(across) == {n for n in coatnet.trace_names(model) if n.endswith("attn.weights")}
    default = coatnet.trace(model, x)
    assert all(n.endswith("output") for n in default if n not in ("pooled", "logits"))
    assert "S3.0.attn.weights" not in default


def test_a_pattern_that_selects_nothing_names_the_way_out(model) -> None:
    with pytest.raises(ValueError, match=r"'S9\.\*' matches no activation.*S3\.0\.attn\.weights"):
        coatnet.trace(model, images(), ["S9.*"])
    with pytest.raises(ValueError, match="exact names"):
        check_names(model, [], {"S3.*": abs})  # what tracing(patch=..., model=model) checks first


def test_patches_replace_and_a_patch_with_itself_changes_nothing(model) -> None:
    clean, other = images(), torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected, before = model(clean), model(other)
    with torch.no_grad(), coatnet.tracing(patch={"S3.0.attn.weights": lambda w: w}):
        torch.testing.assert_close(model(clean), expected, rtol=0, atol=1e-6)
    # the last block's output from the clean run makes the clean logits, whatever came before it
    last = f"S4.{len(model.stages[3].blocks) - 1}.output"
    kept = coatnet.trace(model, clean, [last])[last]
    with torch.no_grad(), coatnet.tracing(patch={last: lambda t: kept}):
        torch.testing.assert_close(model(other), expected)
    assert not torch.allclose(before, expected)
    with (
        pytest.raises(ValueError, match="gave shape"),
        torch.no_grad(),
        coatnet.tracing(patch={"S3.0.output": lambda t: t[:1]}),
    ):
        model(clean)


def test_undetached_activations_carry_gradients(model) -> None:
    x = images()
    cache = coatnet.trace(model, x, ["S3.0.output", "logits"], detach=False)
    (gradient,) = torch.autograd.grad(cache["logits"][:, 0].sum(), cache["S3.0.output"])
    assert gradient.abs().sum() > 0


def test_per_thread_and_nothing_left_on_the_model(model) -> None:
    before = state(model)
    inside, done = threading.Event(), threading.Event()
    found: dict = {}

    def traced() -> None:
        with coatnet.tracing(["*.output"]) as cache:
            inside.set()
            done.wait(30)  # the other thread's whole pass runs while this tracer is open
            found["cache"] = dict(cache)

    def untraced() -> None:
        inside.wait(30)
        with torch.no_grad():
            model(images(batch=3))
        found["tracer"] = active_capture()
        done.set()

    in_threads(traced, untraced)
    assert found["cache"] == {} and found["tracer"] is None
    with breaks_mid_way(model.stages[2].blocks[0].attn), coatnet.tracing(["*"]):
        model(images())
    assert active_capture() is None
    assert state(model) == before


@pytest.mark.timm
def test_a_model_imported_from_timm_traces_timms_stage_outputs(tmp_path) -> None:
    from tests.support.timm import IMG, import_timm, randomised_timm_model, save_timm

    reference = randomised_timm_model(import_timm(), "coatnet_0_rw_224")
    ours = coatnet.from_timm(save_timm(reference, tmp_path / "model.safetensors"), arch="coatnet_0_rw_224")
    x = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    cache = coatnet.trace(ours, x, ["S?.output", "logits"])
    with torch.no_grad():
        _, stages = reference.forward_intermediates(x)
        logits = reference(x)
    for s, expected in enumerate(stages):
        scale = expected.abs().max().item()
        torch.testing.assert_close(cache[f"S{s}.output"], expected, rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(cache["logits"], logits, rtol=0, atol=1e-4 * logits.abs().max().item())
