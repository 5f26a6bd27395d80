"""The cost of the sanity checks of one image: the cascading and independent randomisation tests of every
explanation (occlusion and Integrated Gradients included), against the issue's lines: at most 10 s for a
28 px image of demo-pre and at most 10 minutes for a 224 px image of coatnet_0_rw_224 on the 2-core CPU.

Prints the whole check's time (the median of ``--repeats`` runs after one warm-up) and, with
``--per-row``, each row's share: the same check for that row alone (Grad-CAM's five stages are one
pass: counted once). The pixel methods share the trained model's passes across the copies, so a row's
cost is not one copy's times the number of copies. A model named by a timm tag is built with random
weights: the time does not depend on them, and nothing is downloaded. Run from the repository root,
with nothing else running:

    python benchmarks/sanity_speed.py --model demo-pre --per-row
    python benchmarks/sanity_speed.py --model coatnet_0_rw_224 --repeats 1

Writes ``benchmarks/results/sanity_speed_MODEL.json`` (``benchmarks/results_file.py``'s format; ``--out``
names another).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coatnet
from analysis.core.inputs import preprocessing_of
from analysis.explain.faithfulness import method_rows, row_name
from analysis.explain.sanity import parts, sanity_checks
from benchmarks import results_file
from benchmarks.study_speed import seconds

LINES = {"demo-pre": 10.0, "coatnet_0_rw_224": 600.0}  # seconds, the issue's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo-pre")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-row", action="store_true", help="also each row's check alone")
    results_file.add_out_argument(parser, "sanity_speed_{model}")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.model in coatnet.weights.NAMES:
        model = coatnet.load_checkpoint(args.model)
    else:
        model = coatnet.create_model(args.model)
    model.eval()
    pre = preprocessing_of(model)
    size = pre.size
    image = torch.randn(1, pre.channels, *size)
    tests = ("cascading", "independent")
    copies = 2 * len(parts(model)) - 1
    total = seconds(lambda: sanity_checks(model, image, tests=tests), args.repeats, warm=args.repeats > 1)
    line = LINES.get(args.model)
    verdict = "" if line is None else f" (the line: {line:.0f} s; {'met' if total <= line else 'NOT met'})"
    print(f"{args.model} at {size[0]}x{size[1]}: cascading + independent, {copies} model copies plus "
          f"the trained one, {len(method_rows(model))} rows: {total:.2f} s{verdict}")  # fmt: skip
    figures = {"model": args.model, "size_px": size[0], "copies": copies, "rows": len(method_rows(model)),
               "total_s": total, "line_s": line, "per_row_s": {}}  # fmt: skip
    if args.per_row:
        figures["per_row_s"] = per_row(model, image, tests)
    results_file.write(results_file.out_path(args, model=args.model), figures, rounds=args.repeats)


def per_row(model, image, tests) -> dict[str, float]:
    """Each row's check alone (Grad-CAM's stages as one row), in seconds."""
    out = {}
    rows = [row for row in method_rows(model) if row[0] != "random" and row[1] in (None, "S4")]
    print(f"{'row':<22} {'its check alone (s)':>20}")
    for row in rows:
        alone = seconds(lambda row=row: sanity_checks(model, image, tests=tests, rows=[row]), 1, warm=False)
        name = "gradcam (all stages)" if row[0] == "gradcam" else row_name(*row)
        print(f"{name:<22} {alone:>20.2f}")
        out[name] = alone
    return out


if __name__ == "__main__":
    main()
