"""The layout study of the paper (its section 2.2) at small scale: five layouts trained with the
same recipe and the same number of optimizer steps, on the same data, at several training-set sizes.

Every (layout, size) run is a ``coatnet train`` run of its own in ``OUT/runs/<layout>-<size>``: resumable
from its last epoch, on CUDA when present. Equal steps means a small subset is seen for many epochs (2,000
images for 30 epochs where 60,000 get 1): the test accuracy each layout reaches for its training loss shows
how it generalizes; at the full set the training loss is meant to stand in for capacity, which a small step
budget cannot show (docs/layouts.md).

After training each run is scored: the final training loss and top-1 on its clean training subset (no
augmentation, the model as evaluated) and the test loss and top-1. ``layouts.json`` holds, per run, the
layout, size, parameters, MACs, steps, epochs, those scores, the wall time and the exact command.

Under ``torchrun`` the processes share the unfinished runs (every ``world``-th each, one device each), and
the first one writes ``layouts.json`` once all runs are done.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from coatnet.data.datasets import open_dataset
from coatnet.data.preprocessing import Preprocessing
from coatnet.files import ensure_folder, write_text
from coatnet.model.complexity import count_macs, count_params
from coatnet.model.layouts import LAYOUTS, find_layout
from coatnet.training import distributed
from coatnet.training.evaluation import evaluate
from coatnet.training.loop import TrainSettings, train
from coatnet.version import __version__

# the five layouts and their models (coatnet/model/variants.py: parameters within 15% of each other)
LAYOUT_MODELS = {layout.label: layout.variant for layout in LAYOUTS}


@dataclass(frozen=True)
class LayoutStudySettings:
    """One layout study: which layouts, which training-set sizes, and the recipe all runs share.

    ``steps`` optimizer steps of ``batch_size`` images for every run: each size must be a multiple of
    the batch, and ``steps`` a multiple of each size's batches per epoch (whole epochs). The warm-up is
    in steps, the same for every run.
    """

    layouts: tuple[str, ...] = tuple(LAYOUT_MODELS)
    sizes: tuple[int, ...] = (2000, 10000, 60000)
    steps: int = 600  # 30 epochs of 2,000 images, 6 of 10,000, 1 of 60,000: ~75 min for 15 runs on 2 cores
    batch_size: int = 100
    data: str = "fashion-mnist"
    seed: int = 0
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_steps: int = 50
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    crop_padding: int = 2
    hflip: bool = True
    drop_path: float = 0.05
    test_subset: int | None = None  # the first N test images (coatnet study-layouts --test-limit)
    attention: str = "pre"  # every run's normalization

    def __post_init__(self) -> None:
        unknown = [layout for layout in self.layouts if layout not in LAYOUT_MODELS]
        if unknown:
            raise ValueError(f"unknown layout(s) {unknown}; choose from {', '.join(LAYOUT_MODELS)}")
        if len(set(self.layouts)) < len(self.layouts) or len(set(self.sizes)) < len(self.sizes):
            raise ValueError("a layout or a size is given twice: give each once")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.attention not in ("pre", "post"):
            raise ValueError(f"attention must be pre or post, got {self.attention!r}")
        for size in self.sizes:
            if size < self.batch_size or size % self.batch_size:
                raise ValueError(f"size {size} is not a multiple of the batch size {self.batch_size}")
            if self.steps % (size // self.batch_size):
                raise ValueError(
                    f"{self.steps} steps are not whole epochs of {size} images ({size // self.batch_size} "
                    "batches each): choose steps a multiple of every size's batches"
                )

    def run_settings(self, layout: str, size: int) -> TrainSettings:
        """The ``coatnet train`` settings of one run."""
        per_epoch = size // self.batch_size
        return TrainSettings(
            model=LAYOUT_MODELS[layout], data=self.data, attention=self.attention,
            epochs=self.steps // per_epoch,
            batch_size=self.batch_size, lr=self.lr, min_lr=self.min_lr,
            warmup_epochs=self.warmup_steps / per_epoch, weight_decay=self.weight_decay,
            label_smoothing=self.label_smoothing, crop_padding=self.crop_padding, hflip=self.hflip,
            drop_path=self.drop_path, seed=self.seed, train_subset=size, subset_seed=self.seed,
            test_subset=self.test_subset, eval_every=self.steps // per_epoch,
        )  # fmt: skip


def run_name(layout: str, size: int) -> str:
    """A run's folder: ``c-c-t-t-2000`` (the layout's short form, then the size)."""
    return f"{find_layout(layout).short}-{size}"


def run_layout_study(
    settings: LayoutStudySettings,
    out: str | os.PathLike,
    *,
    device: str | None = None,
    command: str | None = None,
    progress: bool = True,
    workers: int = 2,
    on_run: Callable[[dict], None] | None = None,
) -> dict | None:
    """Train and score every run not yet done in ``out`` (finished ones are kept, an interrupted one
    resumes from its last epoch), then write ``out/layouts.json``.

    Returns:
        The study (what layouts.json holds), or None in a torchrun process other than the first.
    """
    out = ensure_folder(out)
    available = len(open_dataset(settings.data, "train"))
    if max(settings.sizes) > available:
        raise ValueError(
            f"size {max(settings.sizes)} is more than the {available} training images of {settings.data}: "
            "give sizes up to that"
        )
    rank, world = distributed.init(device)
    if torch.cuda.is_available() and device != "cpu" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    claimed = out / "settings.json"
    wanted = _jsonable(asdict(settings))
    if rank == 0:
        if claimed.exists() and _with_defaults(json.loads(claimed.read_text())) != wanted:
            raise ValueError(f"{out} holds a layout study with other settings: choose another --out")
        write_text(claimed, json.dumps(wanted, indent=1) + "\n")
    distributed.at("the study's settings claimed")
    runs = [(layout, size) for size in settings.sizes for layout in settings.layouts]
    # every process sees the same finished runs here (none trains before the meeting): share the rest
    todo = [r for r in runs if not (out / "runs" / run_name(*r) / "result.json").exists()]
    distributed.wait_for_peers("settings claimed", world)
    mine = [r for index, r in enumerate(todo) if index % world == rank]
    for layout, size in runs:
        if (layout, size) not in mine and ((layout, size) in todo or rank != 0):
            continue  # another process's run, or a finished one the first process reads back
        record = _run(
            settings, layout, size, out,
            device=device, command=command, progress=progress, workers=workers,
        )  # fmt: skip
        if on_run is not None:
            on_run(record)
    # another process may still be training its runs (hours): wait while its heartbeat goes on
    distributed.at("every run trained")
    distributed.wait_for_peers("runs trained", world)
    distributed.finish(world)
    if rank != 0:
        return None
    records = [json.loads((out / "runs" / run_name(*r) / "result.json").read_text()) for r in runs]
    study = {
        "settings": wanted,
        "command": command,
        "runs": records,
        "device": str(device or ("cuda" if torch.cuda.is_available() else "cpu")),
        "processes": world,
        "wall_s": round(sum(r["wall_s"] for r in records), 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "coatnet": __version__,
        },
    }
    write_text(out / "layouts.json", json.dumps(study, indent=1) + "\n")
    return study


def _run(
    settings: LayoutStudySettings, layout: str, size: int, out: Path, *, device: str | None,
    command: str | None, progress: bool, workers: int,
) -> dict:  # fmt: skip
    """One run: trained (or resumed) and scored, its result.json written; a finished run is read back."""
    folder = out / "runs" / run_name(layout, size)
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    run = settings.run_settings(layout, size)
    resume = (folder / "resume.safetensors").exists()
    result = train(
        run, folder, resume=resume, device=device, workers=workers, command=command, progress=progress,
        distributed_run=False,
    )  # fmt: skip
    model = result.model
    info = model.checkpoint_info
    pre = info.preprocessing if info is not None else _preprocessing(result)
    clean = open_dataset(run.data, "train", size=pre.size).subset(size, seed=run.subset_seed)
    on = str(next(model.parameters()).device)  # where training left it
    fitted = evaluate(model, clean, pre, device=on, workers=workers, progress=False)
    last = result.metrics[-1]  # its last epoch's test scores: also there when stopped after training
    record = {
        "layout": layout,
        "model": run.model,
        "size": size,
        "parameters": count_params(model),
        "macs": count_macs(model, pre.size),
        "steps": last["step"],
        "epochs": last["epoch"],
        "train_loss": fitted.loss,
        "train_top1": fitted.top1,
        "train_loss_augmented": last["train_loss"],
        "test_loss": last["test_loss"],
        "test_top1": last["test_top1"],
        "wall_s": round(sum(r["epoch_s"] for r in result.metrics), 1),
        "command": _run_command(run, folder),
        "study_command": command,
    }
    write_text(done, json.dumps(record, indent=1) + "\n")
    return record


def _preprocessing(result) -> Preprocessing:
    from coatnet.weights.checkpoint import load_checkpoint

    return load_checkpoint(result.out_dir / "last.safetensors").checkpoint_info.preprocessing


def _run_command(run: TrainSettings, folder: Path) -> str:
    """The ``coatnet train`` command that makes this run on its own."""
    parts = [
        "coatnet train", f"--out {shlex.quote(str(folder))}", f"--model {run.model}",
        f"--data {shlex.quote(run.data)}",
        f"--epochs {run.epochs}", f"--batch-size {run.batch_size}", f"--lr {run.lr}",
        f"--min-lr {run.min_lr}",
        f"--warmup-epochs {run.warmup_epochs:g}", f"--weight-decay {run.weight_decay}",
        f"--label-smoothing {run.label_smoothing}", f"--crop-padding {run.crop_padding}",
        *(["--hflip"] if run.hflip else []), f"--drop-path {run.drop_path}", f"--seed {run.seed}",
        f"--limit {run.train_subset}", f"--subset-seed {run.subset_seed}",
        *([f"--test-limit {run.test_subset}"] if run.test_subset else []), f"--eval-every {run.eval_every}",
        *([f"--attention {run.attention}"] if run.attention != "pre" else []),
    ]  # fmt: skip
    return " ".join(parts)


def _with_defaults(recorded: dict) -> dict:
    """A recorded settings.json with the settings added since it was written at their defaults."""
    return {**_jsonable(asdict(LayoutStudySettings())), **recorded}


def _jsonable(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
