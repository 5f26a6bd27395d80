"""Every benchmark writes one results format (benchmarks/results_file.py), and every shipped results file
holds it: the command, commit, date, CPU, threads, torch version, rounds and the figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import results_file  # noqa: E402

RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name != "results_file.py")


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_every_results_file_holds_the_format(path: Path) -> None:
    record = results_file.read(path)
    assert record["command"].startswith("python benchmarks/")
    assert record["commit"] is not None or "note" in record, "a file without its commit says why (note)"
    assert isinstance(record["figures"], dict | list) and record["figures"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_script_writes_through_the_results_file(script: Path) -> None:
    text = script.read_text()
    assert "results_file.write(" in text and "results_file.add_out_argument(" in text


def test_write_records_the_run_and_the_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / "timm_speed.py"), "--rounds", "3"])
    path = results_file.write(tmp_path / "speed", {"ratio": 1.5}, rounds=3)
    record = results_file.read(path)
    assert path.name == "speed.json" and record["figures"] == {"ratio": 1.5} and record["rounds"] == 3
    assert record["command"] == "python benchmarks/timm_speed.py --rounds 3"
    if (ROOT / ".git").exists():
        assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
    assert record["date"].endswith("Z") and record["threads"] >= 1 and record["torch"]
    assert json.loads(path.read_text()) == record and not list(tmp_path.glob("*.tmp"))


def test_a_file_without_a_field_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="lacks command"):
        results_file.read(tmp_path / "old.json")
