"""``coatnet train`` and ``coatnet eval``: the command-line front of :mod:`coatnet.training.loop` and
:mod:`coatnet.training.evaluation`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from coatnet.cli.options import (
    MODEL_HELP,
    add_attention_arg,
    add_command,
    add_compute_args,
    add_img_size_arg,
    add_limit_arg,
    add_model_arg,
    add_renamed,
    add_resume_arg,
    check_output,
    hub_answers,
    model_of,
)
from coatnet.data.datasets import open_for_model
from coatnet.devices import resolve_device
from coatnet.files import write_text
from coatnet.training.evaluation import evaluate
from coatnet.training.loop import TrainSettings, train
from coatnet.weights.checkpoint import preprocessing_of
from coatnet.weights.resolve import load_named_model

DATA_HELP = (
    "fashion-mnist (Debian's files), fashion-mnist:DIR, cifar10:DIR (the binary version), "
    "imagefolder:DIR, or a DIR (class sub-folders; DIR/train and DIR/val or DIR/test when present)"
)
# what a training run's folder holds once its first epoch is done
TRAIN_FILES = ("resume.safetensors", "last.safetensors", "metrics.json")


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    d = TrainSettings()
    p = add_command(
        sub, "train", help="train a model on a dataset (resumable, DDP under torchrun)",
        description="Train a CoAtNet (AdamW, warm-up + cosine, augmentation, EMA). Every epoch writes "
        "OUT/last.safetensors, OUT/resume.safetensors and OUT/metrics.{json,csv}; the end writes "
        "OUT/MODEL_CARD.md. Several processes: torchrun --nproc_per_node=N -m coatnet train ...",
        examples=["coatnet train --out runs/fmnist --model coatnet_pico --epochs 7 --limit 10000 --threads 2",
                  "coatnet train --out runs/fmnist --resume"],
    )  # fmt: skip
    p.add_argument("--out", required=True, help="the run's folder (created)")
    add_resume_arg(p, what="training run")
    add_model_arg(p, default=d.model, help="the variant to train (see `coatnet list`)")
    p.add_argument("--data", default=d.data, help=DATA_HELP)
    add_attention_arg(p, default=d.attention, help="pre- or post-normalization attention")
    p.add_argument("--layout", help="S1..S4 layout, e.g. C-C-T-T")
    p.add_argument("--strides", type=int, nargs=5, metavar="S", help="S0..S4 strides, e.g. 2 1 1 2 1")
    add_img_size_arg(p, help="input size: N, or H W (default: the data's own, 224 for folders)")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}; with --resume: the saved run's")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=d.min_lr, help="end of the cosine decay")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up (epochs)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW's decoupled decay")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="in [0, 1)")
    p.add_argument("--randaugment", type=int, nargs=2, metavar=("N", "M"), help="ops per image, magnitude")
    p.add_argument("--mixup", type=float, default=d.mixup, help="probability of MixUp per batch")
    p.add_argument("--cutmix", type=float, default=d.cutmix, help="probability of CutMix per batch")
    p.add_argument("--crop-padding", type=int, default=d.crop_padding, help="random crop after padding")
    p.add_argument("--hflip", action="store_true", help="random horizontal flips")
    p.add_argument("--drop-path", type=float, default=d.drop_path, help="stochastic depth rate")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)")
    p.add_argument("--ema", type=float, default=d.ema, help="EMA decay per step, e.g. 0.999 (0: off)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the model, the augmentation and the order")
    limit = add_limit_arg(p, help="only the first N training images (see --subset-seed)")
    test_limit = add_limit_arg(p, flag="--test-limit", help="only the first N test images")
    add_renamed(p, "--train-subset", limit)
    add_renamed(p, "--test-subset", test_limit)
    p.add_argument(
        "--subset-seed", type=int, help="draw the --limit training images at random with this seed"
    )
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="test every N epochs (and the last)")
    p.add_argument("--stop-after", type=int, help="stop after this many epochs (resume later)")
    add_compute_args(p)
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes for folders")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "eval", help="a model's accuracy on a dataset",
        description="Top-1, top-5, per-class accuracy and the confusion matrix of a model on a dataset.",
        examples=["coatnet eval --model demo-pre --data fashion-mnist --limit 1000 --json eval.json"],
    )  # fmt: skip
    add_model_arg(p, positional=True, help=MODEL_HELP)
    p.add_argument("--data", default="fashion-mnist", help=DATA_HELP)
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split to score")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results to this JSON file")
    add_attention_arg(p, help="switch normalization (the weights stay; the results say so)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    add_compute_args(p, device_help="default: CUDA when present (bf16 autocast there)")
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes for folders")
    add_limit_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    check_output(args.out, resume=args.resume, what="a training run", markers=TRAIN_FILES)
    size = args.img_size
    settings = TrainSettings(
        model=args.model, data=args.data, attention=args.attention, layout=args.layout,
        strides=tuple(args.strides) if args.strides else None,
        img_size=size[0] if size and size[0] == size[1] else size,
        epochs=args.epochs or TrainSettings.epochs,
        batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        randaugment=tuple(args.randaugment) if args.randaugment else None, mixup=args.mixup,
        cutmix=args.cutmix, crop_padding=args.crop_padding, hflip=args.hflip, drop_path=args.drop_path,
        grad_clip=args.grad_clip, ema=args.ema, amp=not args.no_amp, seed=args.seed,
        train_subset=args.limit, test_subset=args.test_limit, subset_seed=args.subset_seed,
        eval_every=args.eval_every,
    )  # fmt: skip
    command = "coatnet " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    try:
        result = train(
            settings, args.out, resume=args.resume, epochs=args.epochs, stop_after=args.stop_after,
            device=str(resolve_device(args.device)),
            workers=args.workers, command=command, progress=not args.quiet,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"interrupted: the last finished epoch is saved; continue with --out {args.out} --resume",
              file=sys.stderr)  # fmt: skip
        return 130
    if result.final is not None and os.environ.get("RANK", "0") == "0":
        print(
            f"{args.out}: test top-1 {100 * result.final.top1:.2f}% "
            f"after {result.metrics[-1]['epoch']} epochs"
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    spec = model_of(args)
    device = resolve_device(args.device)
    hub_answers(spec)
    model = load_named_model(spec, attention=args.attention).to(device)
    info = model.checkpoint_info
    pre = preprocessing_of(model)
    note = (
        info.attention_note if info is not None else f"{model.config.attention}-normalization, random weights"
    )
    dataset = open_for_model(args.data, args.split, model, pre)
    if args.limit:
        dataset = dataset.subset(args.limit)
    result = evaluate(model, dataset, pre, batch_size=args.batch_size, device=device, workers=args.workers,
                      progress=not args.quiet)  # fmt: skip
    print(f"{spec} ({note}) on {dataset.name} {args.split}:")
    print(result.table())
    if dataset.skipped.count:
        print(dataset.skipped.message(), file=sys.stderr)
    if args.json_out:
        payload = {"checkpoint": str(spec), "data": args.data, "split": args.split,
                   "attention": note, **result.to_dict()}  # fmt: skip
        write_text(Path(args.json_out), json.dumps(payload, indent=1) + "\n")
    return 0
