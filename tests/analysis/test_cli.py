"""`coatnet analyze`: a self-contained report and the numbers behind it, and one line per bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import coatnet
from coatnet.cli.commands import main
from tests.support.data import pictures

# the toys' preprocessing: 16x16 grey images
PRE = {"size": [16, 16], "channels": 1, "mean": [0.5], "std": [0.5], "interpolation": "bilinear", "crop": 1.0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = coatnet.create_model("coatnet_toy", img_size=16, in_chans=1, strides=(1, 1, 2, 2, 2)).eval()
    path = tmp_path_factory.mktemp("model") / "toy.safetensors"
    coatnet.save_checkpoint(model, path, class_names=[f"class {i}" for i in range(10)], preprocessing=PRE)
    return path


def test_analyze_writes_an_offline_report_and_results(tmp_path, checkpoint, capsys):
    images = pictures(tmp_path, 16)  # CKA needs 16
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    out = tmp_path / "report"
    code = main(["analyze", *images, str(tmp_path / "broken.jpg"), "--model", str(checkpoint), "--compare",
                 str(checkpoint), "--attention", "post", "--out", str(out), "--attributions", "gradcam",
                 "--quiet"])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "broken.jpg" in captured.err and "Traceback" not in captured.err
    page = (out / "report.html").read_text()
    assert "<script src=" not in page and "Plotly" in page  # plotly.js inlined: opens offline
    assert page.count('class="plotly-graph-div"') >= 10
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == [f"image{i}.png" for i in range(16)]
    assert "post-normalization (weights trained with pre-normalization)" in results["model"]
    first = results["per_image"]["image0.png"]
    assert len(first["predictions"]) == 5 and first["predictions"][0]["name"].startswith("class ")
    assert {b["name"] for b in first["statistics"]["blocks"]} == {"S3.0", "S4.0"}
    assert len(first["gradcam"]["map"]) == 16 and first["comparison"]["agreement_rate"] in (0.0, 1.0)
    assert len(results["cka"]["matrix"]) == 6 and len(results["receptive_fields"]["stages"]) == 5


def test_analyze_says_what_is_wrong_in_one_line(tmp_path, checkpoint, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    assert (
        main(["analyze", str(tmp_path / "empty.png"), "--model", str(checkpoint), "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert "empty (0 bytes)" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    (tmp_path / "notes.png").write_text("not a picture")
    two = [str(tmp_path / "empty.png"), str(tmp_path / "notes.png")]
    assert main(["analyze", *two, "--model", str(checkpoint), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err  # several images: each skipped one named, then why nothing is left
    assert "skipping" in err and "notes.png" in err and "none of the images could be read" in err
    assert main(["analyze", *pictures(tmp_path, 1), "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "no model 'no-such-model'" in capsys.readouterr().err


# every figure of an opened report has drawn its SVG
SETTLED_REPORT = (
    "() => [...document.querySelectorAll('.js-plotly-plot')].every(g => g.querySelector('.main-svg'))"
)


@pytest.mark.xdist_group("browser")  # where the session's one Chromium runs
def test_the_report_holds_each_picture_once_and_results_json_points_big_arrays_to_the_npz(
    tmp_path, checkpoint, request
):
    import re
    from pathlib import Path

    from analysis.report import html as report
    from tests.support.server import CHROMIUM

    out = tmp_path / "report"
    assert (
        main(["analyze", *pictures(tmp_path, 1), "--model", str(checkpoint), "--out", str(out), "--quiet"])
        == 0
    )
    page = (out / "report.html").read_text()
    sources = re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", page)
    assert len(sources) == len(set(sources)) and page.count("PICTURES[0]") > 1  # one picture, many figures
    results = json.loads((out / "results.json").read_text())
    arrays = np.load(out / "results.npz")  # every array, keyed by its path (no pickle)
    assert "per_image.image0.png.gradcam.map" in arrays
    big = []

    def walk(value):
        if isinstance(value, dict):
            if value.get("in") == "results.npz":
                big.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(results)
    for entry in big:
        assert (
            list(arrays[entry["key"]].shape) == entry["shape"]
            and np.prod(entry["shape"]) > report.INLINE_ELEMENTS
        )
    assert "integrated_gradients" not in results["per_image"]["image0.png"]  # asked for with --attributions
    if not Path(CHROMIUM).exists():
        return
    viewer = request.getfixturevalue("chromium").new_page()
    try:
        errors: list[str] = []
        viewer.on("pageerror", lambda error: errors.append(str(error)))
        viewer.goto((out / "report.html").as_uri())
        viewer.wait_for_function(SETTLED_REPORT)
        drawn = viewer.evaluate("() => document.querySelectorAll('.js-plotly-plot image').length")
        assert errors == [] and drawn > 0
    finally:
        viewer.close()


def test_analyze_explains_a_class_by_name_and_measures_faithfulness(tmp_path, checkpoint, capsys):
    out = tmp_path / "explained"
    code = main(["analyze", *pictures(tmp_path, 1), "--model", str(checkpoint), "--out", str(out),
                 "--explain", "Class 3", "--faithfulness", "--quiet"])  # fmt: skip
    assert code == 0
    first = json.loads((out / "results.json").read_text())["per_image"]["image0.png"]
    assert first["relevance"]["targets"] == [3] and first["grad_rollout"]["targets"] == [3]
    rows = first["faithfulness"]["results"]
    assert [r["method"] for r in rows][:4] == ["random", "rollout", "relevance", "grad_rollout"]
    page = (out / "report.html").read_text()
    assert "Class-specific relevance" in page and "Faithfulness of each explanation" in page
    capsys.readouterr()
    assert main(["analyze", *pictures(tmp_path, 1), "--model", str(checkpoint), "--out", str(out),
                 "--explain", "sandal"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--explain 'sandal' is not a class of this model" in err and err.count("\n") == 1


def test_analyze_draws_the_relevance_ledger_of_each_rule_asked_for(tmp_path, checkpoint):
    out = tmp_path / "ledger"
    code = main(["analyze", *pictures(tmp_path, 1), "--model", str(checkpoint), "--out", str(out),
                 "--explain", "3", "--ledger", "attnlrp", "cp", "--quiet"])  # fmt: skip
    assert code == 0
    first = json.loads((out / "results.json").read_text())["per_image"]["image0.png"]
    for rule in ("attnlrp", "cp"):
        found = first[f"lrp_{rule}"]
        assert found["rule"] == rule and found["target"] == [3]
        assert found["ledger"][0]["part"] == "S0" and found["ledger"][-1]["part"] == "head"
        total = np.sum(found["pixels"]) + sum(v[0] for v in found["absorbed"].values())
        assert total == pytest.approx(found["logit"][0], rel=1e-4, abs=1e-5)
    page = (out / "report.html").read_text()
    assert "relevance flows (LRP)" in page and "CP-LRP" in page
    plain = tmp_path / "plain"
    assert main(["analyze", *pictures(tmp_path, 1), "--model", str(checkpoint), "--out", str(plain),
                 "--ledger", "--quiet"]) == 0  # fmt: skip
    assert "lrp_attnlrp" not in json.loads((plain / "results.json").read_text())["per_image"]["image0.png"]


def test_analyze_adds_the_sanity_checks_to_the_report_and_the_results(tmp_path, checkpoint):
    out = tmp_path / "sane"
    code = main(["analyze", *pictures(tmp_path, 1), "--model", str(checkpoint), "--out", str(out),
                 "--sanity", "--quiet"])  # fmt: skip
    assert code == 0
    first = json.loads((out / "results.json").read_text())["per_image"]["image0.png"]
    results = first["sanity"]["results"]
    assert {r["test"] for r in results} == {"cascading", "independent", "random_logit"}
    assert all(r["spearman"] == r["spearman"] for r in results)  # never NaN
    page = (out / "report.html").read_text()
    assert "Sanity checks of each explanation" in page and "Cascading randomisation" in page


def test_analyze_maps_a_maxvit_query_onto_its_window(tmp_path):
    torch.manual_seed(0)
    model = coatnet.create_model(
        "maxvit_pico", img_size=16, in_chans=1, window_size=2, grid_size=2, dims=(16, 16, 32, 32),
        depths=(1, 1, 1, 1), head_dim=8,
    ).eval()  # fmt: skip
    path = coatnet.save_checkpoint(model, tmp_path / "maxvit.safetensors", preprocessing=PRE)
    out = tmp_path / "report"
    assert main(["analyze", *pictures(tmp_path, 1), "--model", str(path), "--out", str(out), "--quiet"]) == 0
    found = json.loads((out / "results.json").read_text())["per_image"]["image0.png"]["attention_at_query"]
    grid = np.array(found["S1.0.grid"]["effective"], dtype=float)  # (heads, 8, 8): the query's grid group
    assert grid.shape == (2, 8, 8) and np.isnan(grid).sum() == 2 * 60  # 4 of 64 cells seen, the rest NaN
    np.testing.assert_allclose(np.nansum(grid, axis=(1, 2)), 1.0, rtol=1e-5)
