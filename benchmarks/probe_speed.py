"""The cost of ``coatnet probe`` over all of Fashion-MNIST (60,000 training and 10,000 test images) for one
demo model, against issue 26's line: at most 10 minutes on the 2-core CPU. Runs the command into a fresh
temporary folder (nothing resumed) and prints its wall time, split into measuring the features and fitting
the probes. Run from the repository root, with nothing else running:

    python benchmarks/probe_speed.py --model demo-pre

Writes ``benchmarks/results/probe_speed_MODEL.json`` (``benchmarks/results_file.py``'s format; ``--out``
names another).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import results_file

LINE_S = 600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo-pre")
    parser.add_argument("--limit", type=int, help="only the first N images of each split (a quick look)")
    results_file.add_out_argument(parser, "probe_speed_{model}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            "-m",
            "coatnet",
            "probe",
            "--model",
            args.model,
            "--out",
            folder,
            "--quiet",
        ]
        if args.limit:
            command += ["--limit", str(args.limit)]
        start = time.perf_counter()
        subprocess.run(command, check=True, start_new_session=True)
        wall = time.perf_counter() - start
        probes = json.loads((Path(folder) / "probes.json").read_text())
    images = probes["n_train"] + probes["n_test"]
    verdict = "met" if wall <= LINE_S else "NOT met"
    print(
        f"coatnet probe --model {args.model}: {images} images, {len(probes['rows'])} probes, {wall:.1f} s "
        f"(line {LINE_S:.0f} s for 70,000 images: {verdict if images == 70000 else 'not this many images'})"
    )
    figures = {"model": args.model, "images": images, "probes": len(probes["rows"]), "wall_s": wall,
               "line_s": LINE_S}  # fmt: skip
    results_file.write(results_file.out_path(args, model=args.model), figures, rounds=None)


if __name__ == "__main__":
    main()
