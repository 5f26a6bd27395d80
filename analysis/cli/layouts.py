"""``coatnet study-layouts``: the paper's layout study at small scale (:mod:`coatnet.training.layouts`
trains, this draws). Writes OUT/layouts.json, OUT/layouts.html (offline) and every run's folder in
OUT/runs."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from analysis.report.html import html_page
from analysis.report.sections import layout_sections
from analysis.studies.layouts import table
from analysis.studies.summaries import LayoutStudy
from coatnet.cli.options import (
    add_attention_arg,
    add_command,
    add_compute_args,
    add_limit_arg,
    add_renamed,
    add_resume_arg,
    check_output,
    say_kept,
)
from coatnet.devices import resolve_device
from coatnet.files import write_text
from coatnet.training.layouts import LAYOUT_MODELS, LayoutStudySettings, run_layout_study, run_name

LAYOUT_FILES = ("settings.json", "runs", "layouts.json")  # what a layout study's folder holds once started


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = LayoutStudySettings()
    p = add_command(
        sub, "study-layouts", help="the paper's layout study at small scale",
        description="Train every layout (C-C-C-C .. ViT_REL) with the same recipe and the same number of "
        "optimizer steps at several training-set sizes (subsets drawn with --seed), score each (training "
        "loss on the clean subset, test top-1) and draw the paper's view: OUT/layouts.json, layouts.html "
        "and every run's folder in OUT/runs. Stopped studies continue with --resume.",
        examples=["coatnet study-layouts --out runs/small --sizes 1000 2000 --steps 200 --layouts C-C-T-T "
                  "ViT_REL --test-limit 1000"],
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (the same one to resume)")
    add_resume_arg(p, what="layout study")
    p.add_argument("--layouts", nargs="+", default=list(d.layouts), choices=list(LAYOUT_MODELS),
                   help="the layouts to train (default: all five)")  # fmt: skip
    p.add_argument("--sizes", nargs="+", type=int, default=list(d.sizes), help="training-set sizes")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps of every run")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per optimizer step")
    p.add_argument("--data", default=d.data, help="fashion-mnist, cifar10:DIR or an image folder")
    add_attention_arg(p, default=d.attention, help="every run's normalization (default: pre)")
    p.add_argument("--seed", type=int, default=d.seed, help="draws the subsets and seeds the training")
    test_limit = add_limit_arg(
        p, flag="--test-limit", help="score on the first N test images only (quick runs)"
    )
    add_renamed(p, "--test-subset", test_limit)
    add_compute_args(p)
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes for folders")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study_layouts)


def cmd_study_layouts(args: argparse.Namespace) -> int:
    holds = check_output(args.out, resume=args.resume, what="a layout study", markers=LAYOUT_FILES)
    settings = LayoutStudySettings(
        layouts=tuple(args.layouts), sizes=tuple(args.sizes), steps=args.steps, batch_size=args.batch_size,
        data=args.data, seed=args.seed, test_subset=args.test_limit, attention=args.attention,
    )  # fmt: skip
    if holds:
        runs = [run_name(layout, size) for size in settings.sizes for layout in settings.layouts]
        done = sum((Path(args.out) / "runs" / name / "result.json").exists() for name in runs)
        say_kept(
            "coatnet study-layouts", args.out, f"{done} of {len(runs)} runs finished (the others resume)"
        )
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
        print(f"interrupted: finished runs and epochs are kept; continue with --out {args.out} --resume",
              file=sys.stderr)  # fmt: skip
        return 130
    if study is None:  # a torchrun process other than the first
        return 0
    study = LayoutStudy.from_json(study, where=f"{args.out}/layouts.json")
    write_text(f"{args.out}/layouts.html", html_page("coatnet study-layouts", layout_sections(study)))
    print(table(study))
    print(f"wrote {args.out}/layouts.json and layouts.html ({len(study.runs)} runs)")
    return 0
