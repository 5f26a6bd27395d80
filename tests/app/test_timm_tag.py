"""A timm tag in the app: downloaded once with the app's own progress bar, then analysed like any model
(marker ``timm``: the weights are a randomised timm model, served by a stand-in for the hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.apptest import caption, clean, figure_named, title
from tests.support.timm import import_timm, randomised_timm_model, save_timm

pytestmark = [pytest.mark.timm, pytest.mark.slow]


def test_a_tag_downloads_with_a_bar_and_every_page_draws(monkeypatch, tmp_path: Path, explorer):
    timm = import_timm()
    weights = save_timm(
        randomised_timm_model(timm, "coatnet_nano_rw_224", img_size=224), tmp_path / "m.safetensors"
    )
    drawn: list[tuple[str, float]] = []

    def fake_download(repo_id, filename, *, tqdm_class=None, **kwargs):
        if tqdm_class is not None:  # the app's bar: report the transfer through it
            size = weights.stat().st_size
            with tqdm_class(total=size, desc=filename, unit="B") as bar:
                for _ in range(4):
                    bar.update(size // 4)
                    drawn.append((type(bar).__name__, bar.n / size))
        return str(weights)

    monkeypatch.setattr("coatnet.weights.hub.hf_hub_download", fake_download)
    monkeypatch.setattr("coatnet.weights.check_hub", lambda tag, **kwargs: None)  # the face the app reads
    at = explorer
    at.radio(key="model_source").set_value("timm (ImageNet)").run()
    clean(at)
    assert [name for name, _ in drawn] == ["StreamlitBar"] * 4 and drawn[-1][1] == 1.0
    assert caption(at).startswith("coatnet_nano_rw_224, pre-normalization")
    assert at.selectbox(key="gallery_photos").value == "astronaut"
    assert "query (7, 7)" in title(figure_named(at, "fused-attention"))  # S3 of a 224 input: a 14x14 grid
    for view in ("views/stages.py", "views/compare.py", "views/kernels.py", "views/model.py"):
        at.switch_page(view).run()
        clean(at)
