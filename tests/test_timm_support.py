"""The test-only timm helper imports timm on this CPU torch and is safe to call twice."""

from __future__ import annotations

import pytest
import torch

from tests.support.timm import ensure_torchvision_ops, import_timm

pytestmark = pytest.mark.timm


def test_import_timm_builds_a_coatnet() -> None:
    timm = import_timm()
    model = timm.create_model("coatnet_nano_rw_224", pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == 15_141_244  # timm's coatnet_nano_rw_224 has 15.1M


def test_helper_is_idempotent() -> None:
    import_timm()
    ensure_torchvision_ops()
    assert import_timm() is import_timm()
    assert torch.ops.torchvision.nms is not None
    assert torch.ops.torchvision.qnms is not None
