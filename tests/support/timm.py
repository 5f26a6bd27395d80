"""Test-only access to timm, the reference for the weight-import tests (marker `timm`).

timm imports torchvision, whose compiled ops (`torchvision/_C`) do not load on every torch build (the CPU
torch here, for one). torchvision then fails at import time, because its Python side registers fake
kernels for `torchvision::nms` and `torchvision::qnms`, which only exist once `_C` is loaded. We first
try to load the real `_C`; where it does not load, we define the two op schemas ourselves (the same
schemas torchvision's C++ declares), which is enough for torchvision and timm to import. Those ops then
have no CPU kernel: a test that calls `torchvision.ops.nms` would fail, but no CoAtNet code path does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file

IMG = 64  # the reference models' input: S3 runs on a 4x4 grid, S4 on 2x2

# (name, schema) as declared by torchvision's C++ (csrc/ops/nms.cpp, ops/quantized/cpu/qnms_kernel.cpp)
_TORCHVISION_SCHEMAS = (
    ("nms", "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"),
    ("qnms", "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"),
)

# The definitions live as long as this Library object does: keep it for the whole session.
_torchvision_lib: torch.library.Library | None = None


def _has_torchvision_op(name: str) -> bool:
    """Whether `torch.ops.torchvision.<name>` is registered (by torchvision's `_C` or by us)."""
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _try_load_torchvision_ops() -> None:
    """Load torchvision's compiled ops without importing torchvision, if it is installed and loads."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    for folder in spec.submodule_search_locations:
        for library in sorted(Path(folder).glob("_C.*")):
            if library.suffix not in {".so", ".pyd", ".dylib"}:
                continue
            try:
                torch.ops.load_library(str(library))
            except (OSError, RuntimeError):
                continue  # a build that does not match this torch: define the schemas below
            return


def ensure_torchvision_ops() -> None:
    """Make sure `torchvision::nms` and `torchvision::qnms` exist, so that torchvision can be imported.

    Idempotent: the real ops are used where torchvision's `_C` loads; schemas are defined only for ops
    that are still missing, and only once.
    """
    global _torchvision_lib
    if all(_has_torchvision_op(name) for name, _ in _TORCHVISION_SCHEMAS):
        return
    _try_load_torchvision_ops()
    missing = [schema for name, schema in _TORCHVISION_SCHEMAS if not _has_torchvision_op(name)]
    if not missing:
        return
    if _torchvision_lib is None:
        _torchvision_lib = torch.library.Library("torchvision", "DEF")
    for schema in missing:
        _torchvision_lib.define(schema)


def import_timm() -> ModuleType:
    """Import timm for a reference test, or skip the test where timm (or torchvision) is not installed.

    Returns:
        The `timm` module.
    """
    ensure_torchvision_ops()
    return pytest.importorskip("timm", reason="timm is not installed")


def randomised_timm_model(timm, arch: str, *, num_classes: int = 1000, img_size: int = IMG):
    """A timm model whose every tensor matters: random norm statistics and affine parameters,
    LayerScale far from its 1e-6 init, bias tables far from their 0.02 init."""
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, img_size=img_size, num_classes=num_classes).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean") or (name.endswith("bias") and tensor.ndim == 1):
                tensor.normal_(0, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("gamma"):
                tensor.uniform_(0.5, 1.0)
            elif name.endswith("relative_position_bias_table"):
                tensor.normal_(0, 1.0)
            elif tensor.ndim == 1 and tensor.is_floating_point() and "norm" in name:
                tensor.uniform_(0.8, 1.2)  # norm weights
    return model


def save_timm(model, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
