"""One grammar for a model's name: a file, a built-in checkpoint, a missing file, a timm tag, a variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from coatnet import parse_model_name
from coatnet.weights.checkpoint import resolve_checkpoint
from coatnet.weights.demos import demo


@pytest.mark.parametrize(
    ("spec", "kind", "value"),
    [
        ("demo-pre", "builtin", "demo-pre"),
        ("  Layout_C_C_T_T ", "builtin", "layout-c-c-t-t"),
        ("coatnet_0_rw_224.sw_in1k", "timm_tag", "coatnet_0_rw_224.sw_in1k"),
        ("timm/coatnet_0_rw_224.sw_in1k", "timm_tag", "timm/coatnet_0_rw_224.sw_in1k"),
        ("coatnet_0", "variant", "coatnet_0"),
        ("coatnet_nano_rw_224", "variant", "coatnet_nano_rw_224"),
        ("missing.safetensors", "file", "missing.safetensors"),
        ("runs/x/last", "file", "runs/x/last"),
        ("./model", "file", "model"),
    ],
)
def test_each_kind_of_name_is_told_apart(spec: str, kind: str, value: str) -> None:
    name = parse_model_name(spec)
    assert (name.kind, name.spec) == (kind, spec.strip())
    assert name.value == (str(Path(value)) if kind == "file" else value)


def test_an_existing_file_wins_over_a_built_in_name_and_a_tilde_is_expanded(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-pre").write_bytes(b"")
    assert parse_model_name("demo-pre").kind == "file"
    assert resolve_checkpoint("demo-pre") == Path("demo-pre")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_model_name("~/demo-pre").path == tmp_path / "demo-pre"


def test_a_built_in_name_resolves_to_its_shipped_file_wherever_it_is_asked() -> None:
    assert resolve_checkpoint("Demo_Post") == demo("demo-post").checkpoint
    assert parse_model_name("demo-post").path is None
