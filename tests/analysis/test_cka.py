"""Linear CKA: the unbiased HSIC is Song et al.'s U-statistic; CKA is 1 for a representation with itself,
invariant to orthogonal maps and isotropic scaling but not to general linear maps, near 0 for independent
features; the model-level matrix is symmetric with a unit diagonal, equals linear_cka on the stage
outputs, and barely depends on the minibatch size."""

from __future__ import annotations

import copy
import itertools
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.core.summaries import to_jsonable
from analysis.maps.cka import LAYERS, CKAResult, _grams, _hsic, cka, linear_cka
from tests.support.toys import toy_model


@pytest.fixture(scope="module")
def model(_shared_toys) -> torch.nn.Module:
    return _shared_toys()  # read only; ``single`` keeps one result of it for the module


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """96 images from a 3-dimensional family plus noise, so that the stages share structure."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(3, 3, 32, 32, generator=g)
    coef = torch.randn(96, 3, generator=g)
    return torch.einsum("nk,kchw->nchw", coef, patterns) + 0.3 * torch.randn(96, 3, 32, 32, generator=g)


@pytest.fixture(scope="module")
def single(model, images) -> CKAResult:
    return cka(model, images[:48], batch_size=48)


def _features(seed: int, n: int = 200, d: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.linspace(0.2, 3.0, d)  # anisotropic, so linear maps matter


def test_unbiased_hsic_is_the_u_statistic() -> None:
    """HSIC_1 equals (n)_4^-1 sum over distinct (i, j, q, r) of K_ij (L_ij + L_qr - 2 L_iq) (Song et al.)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5))
    y = rng.normal(size=(7, 3)) + x[:, :3]
    k, l = x @ x.T, y @ y.T  # noqa: E741
    quads = list(itertools.permutations(range(7), 4))
    expected = np.mean([k[i, j] * (l[i, j] + l[q, r] - 2 * l[i, q]) for i, j, q, r in quads])
    got = _hsic(_grams([torch.tensor(x)]), _grams([torch.tensor(y)]))[0, 0]
    assert got == pytest.approx(expected, rel=1e-10)


def test_cka_of_a_representation_with_itself_is_one() -> None:
    x = _features(0)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(torch.tensor(x, dtype=torch.float32), x) == pytest.approx(1.0, abs=1e-6)


def test_invariant_to_orthogonal_maps_and_isotropic_scaling() -> None:
    x, y = _features(0), _features(1)
    y = y + x  # related, so CKA is well inside (0, 1)
    reference = linear_cka(x, y)
    assert 0.2 < reference < 0.95
    q, _ = torch.linalg.qr(
        torch.randn(30, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    )
    assert linear_cka(x @ q.numpy(), y) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x, y @ q.numpy()) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(7.5 * x, 0.01 * y) == pytest.approx(reference, abs=1e-10)


def test_not_invariant_to_general_linear_maps() -> None:
    x, y = _features(0), _features(1)
    y = y + x
    a = np.random.default_rng(3).normal(size=(30, 30)) * np.linspace(
        0.1, 5.0, 30
    )  # invertible, not orthogonal
    assert abs(np.linalg.det(a)) > 1e-6
    assert abs(linear_cka(x @ a, y) - linear_cka(x, y)) > 0.05


def test_independent_features_give_cka_near_zero() -> None:
    """The unbiased estimator is near 0 even with more features than examples."""
    rng = np.random.default_rng(4)
    assert abs(linear_cka(rng.normal(size=(500, 100)), rng.normal(size=(500, 50)))) < 0.02
    assert abs(linear_cka(rng.normal(size=(500, 800)), rng.normal(size=(500, 800)))) < 0.02


def test_feature_axes_are_flattened_and_bad_inputs_refused() -> None:
    x = _features(0, n=20).reshape(20, 5, 6)
    assert linear_cka(x, x.reshape(20, 30)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, x[:10])
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(x[:3], x[:3])
    assert np.isnan(linear_cka(np.ones((20, 4)), x))  # no variance across examples: undefined


def test_one_model_symmetric_unit_diagonal(single) -> None:
    m = single.matrix
    assert single.names_a == single.names_b == LAYERS and m.shape == (6, 6) and m.dtype == np.float64
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-12)
    assert single.n_images == 48


def test_one_batch_equals_linear_cka_of_the_stage_outputs(model, images, single) -> None:
    x = images[:48]
    with torch.no_grad():
        features, stages = model.forward_intermediates(x)
        reps = [s.flatten(1) for s in stages] + [model.forward_head(features, pre_logits=True)]
    expected = np.array([[linear_cka(a, b) for b in reps] for a in reps])
    np.testing.assert_allclose(single.matrix, expected, atol=1e-6)


def test_same_model_twice_equals_one_model(model, images, single) -> None:
    twice = cka(model, images[:48], other=model, batch_size=48)
    np.testing.assert_allclose(twice.matrix, single.matrix, atol=1e-12)
    clone = cka(model, images[:48], other=copy.deepcopy(model), batch_size=48)
    np.testing.assert_allclose(clone.matrix, single.matrix, atol=1e-9)


def test_two_models_scaled_stem(model, images, single) -> None:
    """A twin whose stem output is 3x the model's: CKA(model S_j, twin S0) = CKA(model S_j, model S0)."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.stem.conv2.weight *= 3
        if twin.stem.conv2.bias is not None:
            twin.stem.conv2.bias *= 3
    result = cka(model, images[:48], other=twin, batch_size=48, layers=LAYERS)
    np.testing.assert_allclose(result.matrix[:, 0], single.matrix[:, 0], atol=1e-9)
    subset = cka(model, images[:48], other=twin, batch_size=48, layers=("S0", "S4"))
    assert subset.names_a == ("S0", "S4") and subset.matrix.shape == (2, 2)
    assert subset.matrix[0, 0] == pytest.approx(1.0)


def test_minibatch_size_barely_matters(model, images) -> None:
    full = cka(model, images, batch_size=96).matrix
    for batch_size in (32, 48):
        np.testing.assert_allclose(cka(model, images, batch_size=batch_size).matrix, full, atol=0.05)


def test_minibatches_never_fall_below_four(model, images) -> None:
    """9 images at batch_size 4 run as two minibatches (5 + 4), not 4 + 4 + 1."""
    result = cka(model, images[:9], batch_size=4)
    np.testing.assert_allclose(np.diag(result.matrix), 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"batch_size": 3}, "batch_size"), ({"layers": ("S5",)}, "unknown layers"), ({"layers": ()}, "unknown")],
)
def test_bad_arguments_are_refused(model, images, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        cka(model, images[:8], **kwargs)


def test_too_few_images(model, images) -> None:
    with pytest.raises(ValueError, match="at least 4 images"):
        cka(model, images[:3])


def test_pil_images_and_plain_results(model) -> None:
    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)) for _ in range(6)]
    result = cka(model, pil)
    assert result.n_images == 6 and result.matrix.shape == (6, 6)
    assert pickle.loads(pickle.dumps(result)).names_a == LAYERS
    assert len(to_jsonable(result)["matrix"]) == 6


def test_model_left_as_found_and_threads_agree(images) -> None:
    model = toy_model()
    model.stages[0].train()  # analysed in the mode it is in, and left so
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    sequential = [cka(model, images[:16]).matrix for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = [f.result().matrix for f in [pool.submit(cka, model, images[:16]) for _ in range(2)]]
    for seq, par in zip(sequential, parallel, strict=True):
        np.testing.assert_allclose(seq, par, atol=1e-12)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_pre_vs_post_and_relative_mlp_models(shared_toy) -> None:
    pre, post = shared_toy(), shared_toy(attention="post")
    result = cka(pre, torch.randn(8, 3, 32, 32), other=post, layers=("S3", "S4", "pre_logits"))
    assert result.matrix.shape == (3, 3) and np.isfinite(result.matrix).all()
    rmlp = shared_toy("coatnet_rmlp_nano_rw_224", img_size=32, attention="post")
    result = cka(rmlp, torch.randn(8, 3, 32, 32))
    assert np.isfinite(result.matrix).all() and np.allclose(np.diag(result.matrix), 1.0)


def test_a_model_in_training_mode_keeps_its_batchnorm_statistics():
    model = toy_model(img_size=16, strides=(1, 1, 2, 2, 2)).train()
    before = [b.clone() for b in model.buffers()]
    cka(model, torch.randn(8, 3, 16, 16), batch_size=8)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))
