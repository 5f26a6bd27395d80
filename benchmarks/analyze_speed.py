"""The cost of ``coatnet analyze`` on one 224 px photo with timm's coatnet_0_rw_224 architecture, from the
shell: the command's wall time (a fresh process: imports, loading, every analysis, the report) and the sizes
of what it writes (report.html, results.json, results.npz).

The architecture is built with random weights and saved as a local checkpoint first (the time does not
depend on the weights; nothing is downloaded). Each of ``--rounds`` runs writes into a fresh folder; the
figures are the median time and the last run's sizes. Run from the repository root, with nothing else
running:

    python benchmarks/analyze_speed.py --rounds 3

Writes ``benchmarks/results/analyze_speed.json`` (``benchmarks/results_file.py``'s format; ``--out`` names
another).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import results_file  # noqa: E402

PHOTO = ROOT / "app" / "gallery" / "photos" / "chelsea.jpg"
MB = 1e6


def checkpoint(folder: Path, arch: str) -> Path:
    import torch

    import coatnet

    torch.manual_seed(0)
    return coatnet.save_checkpoint(coatnet.create_model(arch).eval(), folder / f"{arch}.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="coatnet_0_rw_224")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    results_file.add_out_argument(parser, "analyze_speed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = checkpoint(folder, args.arch)
        times, sizes = [], {}
        for r in range(args.rounds):
            out = folder / f"report-{r}"
            command = [sys.executable, "-m", "coatnet", "analyze", str(PHOTO), "--model", str(model),
                       "--out", str(out), "--threads", str(args.threads), "--quiet"]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(command, check=True, start_new_session=True)
            times.append(time.perf_counter() - start)
            sizes = {p.name: p.stat().st_size / MB for p in sorted(out.iterdir()) if p.is_file()}
            print(
                f"run {r + 1}: {times[-1]:.1f} s; " + ", ".join(f"{k} {v:.1f} MB" for k, v in sizes.items())
            )
    figures = {"arch": args.arch, "photo": str(PHOTO.relative_to(ROOT)), "wall_s": statistics.median(times),
               "wall_s_runs": times, "sizes_mb": sizes}  # fmt: skip
    results_file.write(results_file.out_path(args), figures, rounds=args.rounds)


if __name__ == "__main__":
    main()
