"""``coatnet probe``: a linear probe per block (:mod:`analysis.studies.probes`), resumable and shardable.

The pooled features of every block are measured in fixed batches of both splits, each batch written to
``OUT/features/<split>-NNNNN.npz`` as soon as it is done, atomically; the same command with ``--resume``
(after Ctrl-C, SIGKILL or a crash) measures only the batches missing. Under ``torchrun`` each process takes
every ``world``-th batch; the first process then fits every probe from all batches, so any number of
processes gives one process's result.

Writes ``OUT/probes.json`` (``model``, ``data``, ``rows`` with one row per block in forward order,
``head_lens``, ``model_top1``, the protocol, the command, versions, device and wall time) and
``OUT/probes.html`` (the figure, offline).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import coatnet
from analysis.cli.study import DATA_HELP, StudyError, add_run_arguments
from analysis.core.inputs import preprocessing_of
from analysis.core.models import describe, load_model
from analysis.figures.causal import probes_figure
from analysis.report.html import Section, html_page
from analysis.studies.probes import fit_probes, probe_features, probe_protocol
from analysis.studies.summaries import Probes
from coatnet.cli.options import (
    add_attention_arg,
    add_command,
    add_limit_arg,
    add_model_arg,
    add_resume_arg,
    check_output,
    hub_answers,
    say_kept,
)
from coatnet.data.batches import iterate_batches, normalize, prepare_batch
from coatnet.data.datasets import open_for_model
from coatnet.devices import resolve_device
from coatnet.files import atomic_write, write_text
from coatnet.model.inference import for_inference
from coatnet.training import distributed

SPLITS = ("train", "test")


PROBE_FILES = ("features", "probes.json")  # what a probe folder holds once it started


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "probe", help="a linear probe per block over a dataset",
        description="Train a linear classifier on each block's pooled output (the training split, one "
        "regularisation choice on a held-out part) and score it on the test split: where the class "
        "becomes linearly readable. Writes OUT/probes.json and probes.html. Resumable (--resume) and runs "
        "under torchrun.",
        examples=["coatnet probe --model demo-pre --limit 2000 --out runs/probes"],
    )  # fmt: skip
    add_model_arg(p, default="demo-pre")
    add_attention_arg(p)
    p.add_argument("--data", default="fashion-mnist", help=DATA_HELP)
    add_limit_arg(p, help="only the first N images of each split")
    p.add_argument("--out", required=True, help="output folder")
    add_resume_arg(p, what="probe run")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (and per file in OUT)")
    add_run_arguments(p)
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = Path(args.out)
    holds = check_output(out, resume=args.resume, what="a probe run", markers=PROBE_FILES)
    device = resolve_device(args.device)
    hub_answers(args.model)
    rank, world = distributed.init(str(device))
    model = load_model(args.model, attention=args.attention, device=device)
    pre = preprocessing_of(model)
    datasets = {}
    for split in SPLITS:
        dataset = open_for_model(args.data, split, model, pre)
        datasets[split] = dataset.subset(args.limit) if args.limit else dataset
    classes = model.config.num_classes
    if len(datasets["train"]) < 2 * classes or not len(datasets["test"]):
        found = f"got {len(datasets['train'])} and {len(datasets['test'])}"
        raise StudyError(f"the probes need at least {2 * classes} training images (two per class) and one "
                         f"test image; {found}: raise --limit")  # fmt: skip
    settings = {"model": args.model, "model_description": describe(model), "data": args.data,
                "limit": args.limit, "batch_size": args.batch_size,
                "n_train": len(datasets["train"]), "n_test": len(datasets["test"]),
                "protocol": probe_protocol()}  # fmt: skip
    if rank == 0:
        _claim(out, settings)
    distributed.wait_for_peers("probe folder claimed", world)
    work = [(split, i) for split in SPLITS for i in range(math.ceil(len(datasets[split]) / args.batch_size))]
    mine = [item for k, item in enumerate(work) if k % world == rank]
    todo = [item for item in mine if not _path(out, *item).exists()]
    if holds:
        done = sum(_path(out, *item).exists() for item in work)
        if done == len(work) and (out / "probes.json").exists():  # the same run, finished: nothing to do
            say_kept("coatnet probe", out, f"the finished probes ({done} batches); nothing to compute")
            distributed.finish(world)
            return 0
        say_kept("coatnet probe", out, f"{done} of {len(work)} batches of features")
    runner = for_inference(model)
    images = sum(_size(datasets[s], i, args.batch_size) for s, i in mine)
    done = sum(_size(datasets[s], i, args.batch_size) for s, i in mine if (s, i) not in todo)
    bar = tqdm(total=images, initial=done, desc=f"probe {args.model}", unit="img",
               disable=args.quiet or rank != 0)  # fmt: skip
    try:
        for split, i in todo:
            dataset = datasets[split]
            indices = torch.arange(i * args.batch_size, min(len(dataset), (i + 1) * args.batch_size))
            parts = []
            for batch, labels in iterate_batches(dataset, indices, args.batch_size, workers=args.workers):
                if len(labels):
                    x = normalize(prepare_batch(batch, pre, device=device), pre)
                    parts.append({"labels": labels.numpy(), **probe_features(model, runner, x)})
            arrays = _concatenate(parts)
            atomic_write(_path(out, split, i), lambda tmp, a=arrays: _save_npz(tmp, a))
            bar.update(len(indices))
    except KeyboardInterrupt:
        print(f"interrupted: finished batches are kept; continue with --out {out} --resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    distributed.at("every probe batch measured")
    distributed.wait_for_peers("probe batches measured", world)
    if rank == 0:
        path = merge_probes(out, model, settings, work, device, started, quiet=args.quiet, world=world)
        print(f"wrote {path} and probes.html in {out} ({settings['n_train']} + {settings['n_test']} images)")
    distributed.wait_for_peers("probes fitted", world)
    distributed.finish(world)
    return 0


def merge_probes(
    out: Path, model, settings: dict, work, device, started: float, *, quiet: bool, world: int = 1
) -> Path:
    """Fit every probe from OUT/features/*.npz and write probes.json and probes.html."""
    splits = {}
    for split in SPLITS:
        parts = []
        for s, i in work:
            if s != split:
                continue
            path = _path(out, s, i)
            if not path.exists():
                raise StudyError(f"{out}: the {s} batch {i} is missing; run the same command with --resume")
            with np.load(path) as found:
                parts.append({key: found[key] for key in found.files})
        splits[split] = _concatenate(parts)
    if not len(splits["train"].get("labels", ())) or not len(splits["test"].get("labels", ())):
        raise StudyError(f"{out}: no image of a split could be read; check --data")
    bar = tqdm(total=len(model.block_names()) + 1, desc="fitting probes", unit="probe", disable=quiet)
    fitted = fit_probes(model, splits["train"], splits["test"], progress=lambda _: bar.update(1))
    bar.close()
    probes = {
        **settings, **fitted, "command": _command(), "device": str(device), "processes": world,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "coatnet": coatnet.__version__},
        "wall_s_this_run": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    path = out / "probes.json"
    summary = Probes.from_json(probes, where=str(path))  # written as read back: every key a known one
    write_text(path, json.dumps(summary.to_json(), indent=1) + "\n")
    section = Section(
        f"Linear probes of {summary.model_description}",
        "Top-1 of a linear classifier on each block's pooled output (trained on the training split, "
        "scored on the test split), against the model's own top-1.",
        [probes_figure(summary)],
    )
    write_text(out / "probes.html", html_page(f"coatnet probe: {summary.model_description}", [section]))
    return path


def _claim(out: Path, settings: dict) -> None:
    recorded = out / "features" / "settings.json"
    if recorded.exists():
        found = json.loads(recorded.read_text())
        if found != settings:
            changed = sorted(k for k in settings if found.get(k) != settings[k])
            raise StudyError(f"{out} holds the probes of a different run ({', '.join(changed)} differ): use "
                             "another --out")  # fmt: skip
        return
    write_text(recorded, json.dumps(settings, indent=1) + "\n")


def _size(dataset, index: int, batch_size: int) -> int:
    return max(0, min(len(dataset), (index + 1) * batch_size) - index * batch_size)


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return {}
    return {key: np.concatenate([p[key] for p in parts], axis=0) for key in parts[0]}


def _path(out: Path, split: str, index: int) -> Path:
    return out / "features" / f"{split}-{index:05d}.npz"


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _command() -> str | None:
    """The command line as typed, where this process was started as ``coatnet probe``."""
    return "coatnet " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["probe"] else None
