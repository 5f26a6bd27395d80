"""``coatnet study-layouts``: the paper's layout study at small scale (:mod:`coatnet.training.layouts`
trains, this draws). Writes OUT/layouts.json, OUT/layouts.html (offline) and every run's folder in
OUT/runs."""

from __future__ import annotations

import argparse
import shlex
import sys

from analysis.report.html import html_page
from analysis.report.sections import layout_sections
from analysis.studies.layouts import table
from coatnet.devices import DEVICES, resolve_device
from coatnet.files import write_text
from coatnet.training.layouts import LAYOUT_MODELS, LayoutStudySettings, run_layout_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = LayoutStudySettings()
    p = sub.add_parser(
        "study-layouts",
        help="the layout study (C-C-C-C .. ViT_REL) at several training-set sizes: OUT/layouts.json",
        description="Train every layout with the same recipe and the same number of optimizer steps at "
        "several training-set sizes (subsets drawn with --seed), score each (training loss on the clean "
        "subset, test top-1) and draw the paper's view. Stopped runs resume: run the same command again.",
    )
    p.add_argument("--out", required=True, help="output folder (the same one to resume)")
    p.add_argument("--layouts", nargs="+", default=list(d.layouts), choices=list(LAYOUT_MODELS))
    p.add_argument("--sizes", nargs="+", type=int, default=list(d.sizes), help="training-set sizes")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps of every run")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--data", default=d.data, help="fashion-mnist, cifar10:DIR or an image folder")
    p.add_argument("--seed", type=int, default=d.seed, help="draws the subsets and seeds the training")
    p.add_argument("--test-subset", type=int, help="score on the first N test images only (quick runs)")
    p.add_argument("--device", choices=DEVICES, help="default: CUDA when present")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study_layouts)


def cmd_study_layouts(args: argparse.Namespace) -> int:
    settings = LayoutStudySettings(
        layouts=tuple(args.layouts), sizes=tuple(args.sizes), steps=args.steps, batch_size=args.batch_size,
        data=args.data, seed=args.seed, test_subset=args.test_subset,
    )  # fmt: skip
    command = "coatnet " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["study-layouts"] else None

    def done(record: dict) -> None:
        if not args.quiet:
            line = (
                f"{record['layout']} on {record['size']} images: training loss {record['train_loss']:.4f}, "
                f"test top-1 {100 * record['test_top1']:.2f}% ({record['wall_s']:.0f} s)"
            )
            print(line, flush=True)

    try:
        study = run_layout_study(
            settings, args.out, device=str(resolve_device(args.device)), command=command,
            progress=not args.quiet, workers=args.workers, on_run=done,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted: finished runs and epochs are kept; run the same command to continue",
              file=sys.stderr)  # fmt: skip
        return 130
    if study is None:  # a torchrun process other than the first
        return 0
    write_text(f"{args.out}/layouts.html", html_page("coatnet study-layouts", layout_sections(study)))
    print(table(study))
    print(f"wrote {args.out}/layouts.json and layouts.html ({len(study['runs'])} runs)")
    return 0
