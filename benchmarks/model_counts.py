"""Parameters and multiply-accumulates of the paper's models, as built, beside the papers' tables.

CoAtNet-0..7 against CoAtNet's Table 3 (Table 12 for -6 and -7; MACs at the paper's fine-tuning size for -4
and up), MaxViT-T..XL against MaxViT's Tables 1 and 2 (Tu et al., ECCV 2022). Counted on the meta device
(``coatnet.stage_costs``): nothing is timed, and the counts do not depend on the machine. 1000 classes.
Run from the repository root (about a minute):

    python benchmarks/model_counts.py

Writes ``benchmarks/results/model_counts.json`` (``benchmarks/results_file.py``'s format; ``--out`` names
another); docs/model-family.md's tables are generated from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coatnet
from benchmarks import results_file
from coatnet.model.variants import build_config
from coatnet.model.variants_timm import TIMM_VARIANTS

# name: (input size, paper's params, paper's MACs at that size); the papers call MACs "FLOPs"
COATNET = {
    "coatnet_0": (224, 25e6, 4.2e9),
    "coatnet_1": (224, 42e6, 8.4e9),
    "coatnet_2": (224, 75e6, 15.7e9),
    "coatnet_3": (224, 168e6, 34.7e9),
    "coatnet_4": (384, 275e6, 189.5e9),
    "coatnet_5": (512, 688e6, 812e9),
    "coatnet_6": (512, 1.47e9, 1521e9),
    "coatnet_7": (512, 2.44e9, 2586e9),
}
MAXVIT = {  # (size, input): (paper's params, paper's MACs)
    ("tiny", 224): (31e6, 5.6e9),
    ("small", 224): (69e6, 11.7e9),
    ("base", 224): (119e6, 24.2e9),
    ("large", 224): (212e6, 43.9e9),
    ("tiny", 384): (31e6, 17.7e9),
    ("tiny", 512): (31e6, 33.7e9),
    ("small", 384): (69e6, 36.1e9),
    ("small", 512): (69e6, 67.6e9),
    ("base", 384): (119e6, 74.2e9),
    ("base", 512): (119e6, 138.5e9),
    ("large", 384): (212e6, 133.1e9),
    ("large", 512): (212e6, 245.4e9),
    ("xlarge", 384): (475e6, 293.7e9),
    ("xlarge", 512): (475e6, 535.2e9),
}


def row(name: str, size: int, config, paper_params: float, paper_macs: float) -> dict:
    costs = coatnet.stage_costs(config, size)
    params, macs = sum(c.params for c in costs), sum(c.macs for c in costs)
    return {
        "model": name,
        "family": name.split("_")[0],
        "input": size,
        "params": params,
        "macs": macs,
        "paper_params": paper_params,
        "paper_macs": paper_macs,
        "params_vs_paper": params / paper_params - 1,
        "macs_vs_paper": macs / paper_macs - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    results_file.add_out_argument(parser, "model_counts")
    args = parser.parse_args()
    rows = []
    for name, (size, params, macs) in COATNET.items():
        rows.append(row(name, size, build_config(name), params, macs))
    for (size, at), (params, macs) in MAXVIT.items():
        name = f"maxvit_{size}_tf_{at}"
        rows.append(row(name, at, TIMM_VARIANTS[name].replace(num_classes=1000), params, macs))
    for r in rows:
        print(f"{r['model']:<22} {r['input']:>4} {r['params'] / 1e6:>9.2f}M ({r['params_vs_paper']:+.1%}) "
              f"{r['macs'] / 1e9:>9.2f}G ({r['macs_vs_paper']:+.1%})")  # fmt: skip
    results_file.write(results_file.out_path(args), {"rows": rows}, rounds=None)


if __name__ == "__main__":
    main()
