"""A torch.compile'd model asked to record attention runs that call eagerly and records, rather than
silently ignoring the request (the recorder lives in a per-call context the compiled graph cannot see)."""

from __future__ import annotations

import pytest
import torch

import coatnet
from tests.support.toys import toy_model


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_a_compiled_model_records_when_asked_and_compiles_otherwise(backend):
    model = toy_model()
    x = torch.randn(2, 3, *model.config.img_size)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        expected = model(x)
        with coatnet.record_attention() as eager_records:
            model(x)
        torch.testing.assert_close(compiled(x), expected)  # compiled, nothing asked
        with coatnet.record_attention() as records:  # asked after compiling without a recorder
            recorded = compiled(x)
        torch.testing.assert_close(recorded, expected)
        assert len(records) == len(eager_records) > 0
        for got, want in zip(records, eager_records, strict=True):
            torch.testing.assert_close(got.weights, want.weights)
        with coatnet.record_attention() as outer, coatnet.record_attention() as inner:
            compiled(x)
        assert len(inner) == len(eager_records) and len(outer) == 0  # the innermost recorder, as eagerly
        torch.testing.assert_close(compiled(x), expected)  # and compiled again afterwards
