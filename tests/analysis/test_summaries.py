"""Results by name (analysis.studies.summaries): every shipped summary loads into its dataclasses and is
written back as the same JSON; a key no record knows is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import LayoutStudy, Probes, Study, load_layouts, load_probes, load_study
from analysis.studies.study import STUDIES

KINDS = {"study.json": Study, "probes.json": Probes, "layouts.json": LayoutStudy}
SHIPPED = sorted(p for name in KINDS for p in STUDIES.glob(f"*/{name}"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_summary_is_written_back_as_the_json_it_was_read_from(path: Path) -> None:
    stored = json.loads(path.read_text())
    summary = KINDS[path.name].from_json(stored)
    # NaN is not equal to itself: compare the JSON text, keys sorted
    assert json.dumps(summary.to_json(), sort_keys=True) == json.dumps(stored, sort_keys=True)


def test_the_loaders_give_the_records_readers_read_by_name() -> None:
    study = load_study("study-demo-pre")
    assert isinstance(study, Study) and 0 < study.baseline.top1 <= 1 and study.baseline.n_images == 10000
    head = study.heads[0]
    assert head.block == "S3.0" and head.mean_distance_px.effective.mean > 0
    assert study.faithfulness[0].name == "random" and set(study.faithfulness[0].spread) >= {"road"}
    sanity = load_study("sanity-layout-c-c-t-t")
    assert sanity.baseline is None and sanity.interventions is None and sanity.sanity
    assert "baseline" not in sanity.to_json()  # a key the file lacks is not written
    probes = load_probes("probes-demo-pre")
    assert [r.block for r in probes.rows][:2] == ["S0", "S1.0"] and probes.head_lens[0].block == "S4.0"
    layouts = load_layouts()
    assert list(layouts.by_layout())[:2] == ["C-C-C-C", "C-C-C-T"] and layouts.sizes == [2000, 10000, 60000]


def test_a_key_no_record_knows_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="Study: unknown key\\(s\\) 'nonsense'"):
        Study.from_json({"model": "m", "nonsense": 1})
    with pytest.raises(ValueError, match=r"Study.baseline: no 'loss'"):
        Study.from_json({"model": "m", "baseline": {"top1": 0.5, "n_images": 1}})
