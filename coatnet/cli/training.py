"""``coatnet train`` and ``coatnet eval``: the command-line front of :mod:`coatnet.training.loop`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import torch

from coatnet.data.datasets import open_for_model
from coatnet.devices import DEVICES, resolve_device
from coatnet.files import write_text
from coatnet.training.evaluation import evaluate
from coatnet.training.loop import TrainSettings, train
from coatnet.weights.checkpoint import load_checkpoint

DATA_HELP = (
    "fashion-mnist (Debian's files), fashion-mnist:DIR, cifar10:DIR (the binary version), "
    "imagefolder:DIR, or a DIR (class sub-folders; DIR/train and DIR/val or DIR/test when present)"
)


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    d = TrainSettings()
    p = sub.add_parser(
        "train",
        help="train a CoAtNet (AdamW, warm-up + cosine, augmentation, EMA, DDP under torchrun)",
        description="Train a CoAtNet. Every epoch writes OUT/last.safetensors, OUT/resume.safetensors and "
        "OUT/metrics.{json,csv}; the end writes OUT/MODEL_CARD.md. Several processes: "
        "torchrun --nproc_per_node=N -m coatnet train ...",
    )
    p.add_argument("--out", required=True, help="run folder (created)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--model", default=d.model, help="a variant (see `coatnet list`)")
    p.add_argument("--data", default=d.data, help=DATA_HELP)
    p.add_argument("--attention", choices=("pre", "post"), default=d.attention)
    p.add_argument("--layout", help="S1..S4 layout, e.g. C-C-T-T")
    p.add_argument("--strides", type=int, nargs=5, metavar="S", help="S0..S4 strides, e.g. 2 1 1 2 1")
    p.add_argument("--img-size", type=int, help="input size (default: the data's own, 224 for folders)")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}; with --resume: the saved run's")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=d.min_lr, help="end of the cosine decay")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--randaugment", type=int, nargs=2, metavar=("N", "M"), help="ops per image, magnitude")
    p.add_argument("--mixup", type=float, default=d.mixup, help="probability of MixUp per batch")
    p.add_argument("--cutmix", type=float, default=d.cutmix, help="probability of CutMix per batch")
    p.add_argument("--crop-padding", type=int, default=d.crop_padding, help="random crop after padding")
    p.add_argument("--hflip", action="store_true", help="random horizontal flips")
    p.add_argument("--drop-path", type=float, default=d.drop_path, help="stochastic depth rate")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)")
    p.add_argument("--ema", type=float, default=d.ema, help="EMA decay per step, e.g. 0.999 (0: off)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train-subset", type=int, help="use only the first N training images")
    p.add_argument("--test-subset", type=int, help="use only the first N test images")
    p.add_argument("--subset-seed", type=int, help="draw the --train-subset images at random with this seed")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="test every N epochs (and the last)")
    p.add_argument("--stop-after", type=int, help="stop after this many epochs (resume later)")
    p.add_argument("--device", choices=DEVICES, help="default: CUDA when present")
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes for folders")
    p.add_argument("--threads", type=int, help="CPU threads per process (torch.set_num_threads)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1, top-5, per-class accuracy and confusion matrix of a checkpoint")
    p.add_argument(
        "checkpoint",
        help="a .safetensors checkpoint, or a built-in name (demo-pre, demo-post, layout-c-c-t-t ...)",
    )
    p.add_argument("--data", default="fashion-mnist", help=DATA_HELP)
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    p.add_argument("--attention", choices=("pre", "post"), help="switch normalization (labelled)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", choices=DEVICES, help="default: CUDA when present (bf16 autocast there)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TrainSettings(
        model=args.model, data=args.data, attention=args.attention, layout=args.layout,
        strides=tuple(args.strides) if args.strides else None, img_size=args.img_size,
        epochs=args.epochs or TrainSettings.epochs,
        batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        randaugment=tuple(args.randaugment) if args.randaugment else None, mixup=args.mixup,
        cutmix=args.cutmix, crop_padding=args.crop_padding, hflip=args.hflip, drop_path=args.drop_path,
        grad_clip=args.grad_clip, ema=args.ema, amp=not args.no_amp, seed=args.seed,
        train_subset=args.train_subset, test_subset=args.test_subset, subset_seed=args.subset_seed,
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
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint, attention=args.attention, device=device)
    info = model.checkpoint_info
    pre = info.preprocessing
    dataset = open_for_model(args.data, args.split, model, pre)
    if args.limit:
        dataset = dataset.subset(args.limit)
    result = evaluate(model, dataset, pre, batch_size=args.batch_size, device=device, workers=args.workers,
                      progress=not args.quiet)  # fmt: skip
    print(f"{args.checkpoint} ({info.attention_note}) on {dataset.name} {args.split}:")
    print(result.table())
    if dataset.skipped.count:
        print(dataset.skipped.message(), file=sys.stderr)
    if args.json_out:
        payload = {"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split,
                   "attention": info.attention_note, **result.to_dict()}  # fmt: skip
        write_text(Path(args.json_out), json.dumps(payload, indent=1) + "\n")
    return 0
