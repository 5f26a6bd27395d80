"""Ship the layout study: its five models trained on every training image become built-in checkpoints
(``coatnet/weights/demos/layout-c-c-c-c`` ..: model.safetensors, metrics.json / .csv, MODEL_CARD.md with the
accuracy on the full test set and on its first 500 images), its layouts.json goes to
``analysis/studies/results/layouts/`` and its two figures to ``docs/screenshots/layouts-*.png``.

    python scripts/ship_layouts.py runs/layouts            # after coatnet study-layouts --out runs/layouts
    python scripts/ship_layouts.py runs/layouts --size 2000   # another size's models, in their place
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.figures.layouts import gap_figure, size_figure  # noqa: E402
from analysis.report.export import figure_png  # noqa: E402
from coatnet.data.datasets import open_for_model  # noqa: E402
from coatnet.training.evaluation import evaluate  # noqa: E402
from coatnet.training.layouts import run_name  # noqa: E402
from coatnet.weights.checkpoint import load_checkpoint  # noqa: E402

DEMOS = ROOT / "coatnet" / "weights" / "demos"
STUDIES = ROOT / "analysis" / "studies" / "results" / "layouts"
FIGURES = ROOT / "docs" / "screenshots"
FIRST = 500


def ship(study_dir: Path, size: int) -> None:
    study = json.loads((study_dir / "layouts.json").read_text())
    for record in (r for r in study["runs"] if r["size"] == size):
        run = study_dir / "runs" / run_name(record["layout"], size)
        name = "layout-" + record["layout"].lower().replace("_", "-")
        target = DEMOS / name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "last.safetensors", target / "model.safetensors")
        for file in ("metrics.json", "metrics.csv"):
            shutil.copyfile(run / file, target / file)
        model = load_checkpoint(target / "model.safetensors")
        pre = model.checkpoint_info.preprocessing
        test = open_for_model("fashion-mnist", "test", model, pre)
        full = evaluate(model, test, pre, progress=False)
        first = evaluate(model, test.subset(FIRST), pre, progress=False)
        card = (run / "MODEL_CARD.md").read_text()
        card += (
            f"\n## In the layout study\n\n| | |\n|---|---|\n| layout | {record['layout']} |\n"
            f"| training images | {size} (drawn with seed {study['settings']['seed']}) |\n"
            f"| optimizer steps | {record['steps']} |\n"
            f"| parameters | {record['parameters']} |\n| MACs at 28x28 | {record['macs']} |\n"
            f"| training loss, clean training subset | {record['train_loss']:.4f} |\n"
            f"| test top-1, all 10,000 test images | {100 * full.top1:.2f}% |\n"
            f"| test top-1, first {FIRST} test images | {100 * first.top1:.2f}% |\n"
            f"\nThis run alone (the study's recipe, the same subset):\n\n```\n{record['command']}\n```\n"
        )
        (target / "MODEL_CARD.md").write_text(card)
        print(f"{name}: {100 * full.top1:.2f}% on 10,000, {100 * first.top1:.2f}% on the first {FIRST}")
    STUDIES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study_dir / "layouts.json", STUDIES / "layouts.json")
    for name, draw in (("layouts-size", size_figure), ("layouts-gap", gap_figure)):
        (FIGURES / f"{name}.png").write_bytes(figure_png(draw(study), scale=1.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="the folder coatnet study-layouts wrote")
    parser.add_argument("--size", type=int, default=60000, help="which training-set size ships")
    args = parser.parse_args()
    ship(args.study, args.size)


if __name__ == "__main__":
    main()
