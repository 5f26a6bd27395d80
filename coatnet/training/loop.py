"""Training: the paper's recipe (its Table 10) scaled to the data, on one process or many (DDP).

AdamW with linear warm-up then cosine decay, weight decay (not on norms, biases and bias tables), label
smoothing, kornia's RandAugment / MixUp / CutMix on whole batches, stochastic depth, gradient clipping,
optional EMA, bf16 autocast on CUDA. Every epoch writes, atomically, ``last.safetensors`` (the model, or
its EMA), ``resume.safetensors`` (everything needed to continue exactly: model, EMA, optimizer, step,
RNG states) and ``metrics.json`` / ``metrics.csv``; the end of a run writes ``MODEL_CARD.md``.

Data order is a function of (seed, epoch) (a ``DistributedSampler``, also for one process), and the
random state used by augmentation and stochastic depth is saved with each epoch, so a resumed run
repeats an unbroken one step for step.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from coatnet.data.batches import iterate_batches as _batches
from coatnet.data.batches import normalize, prepare_batch
from coatnet.data.datasets import ImageFolder, TensorImages, open_dataset
from coatnet.data.preprocessing import Preprocessing
from coatnet.files import ensure_folder, write_text
from coatnet.model.config import as_hw
from coatnet.model.network import CoAtNet
from coatnet.model.variants import create_model
from coatnet.training import distributed
from coatnet.training.evaluation import EvalResult, evaluate
from coatnet.training.state import epoch_line, load_resume, model_card, save_resume, write_metrics
from coatnet.weights.checkpoint import save_checkpoint


@dataclass(frozen=True)
class TrainSettings:
    """One training run. Defaults are the paper's recipe where it scales (its Table 10, docs/training.md).

    Attributes:
        model: a variant name (:func:`list_models`).
        data: ``fashion-mnist``, ``cifar10`` (``NAME:DIR`` for another folder), or an image folder with
            one sub-folder per class (docs/training.md).
        attention: ``pre`` or ``post`` normalization.
        layout: S1..S4 block kinds such as ``C-C-T-T`` (None: the variant's).
        strides: the stride of S0..S4 (None: the variant's).
        img_size: the input side N or (H, W) (None: the data's own size, 28 for Fashion-MNIST, 32 for
            CIFAR-10).
        epochs: epochs to train.
        batch_size: images per optimizer step (over all processes).
        lr: the peak learning rate (AdamW), after warm-up.
        min_lr: where the cosine schedule ends.
        warmup_epochs: linear warm-up, in epochs (fractions allowed).
        weight_decay: AdamW's decoupled weight decay.
        label_smoothing: in [0, 1).
        randaugment: (ops per image, magnitude 0..30), or None for none; the paper: (2, 15).
        mixup: probability that a batch is mixed (MixUp); the paper mixes every batch.
        cutmix: probability that a batch is cut-mixed (CutMix).
        crop_padding: random crop after zero padding by this many pixels (0: none).
        hflip: random horizontal flips.
        drop_path: stochastic depth, rising linearly to this over the blocks.
        grad_clip: the gradients' global norm is clipped to this.
        ema: EMA decay per step (0: off); the paper fine-tunes with 0.9999.
        amp: bf16 autocast on CUDA (ignored on the CPU).
        seed: seeds the model, the data order and every random layer.
        train_subset: train on this many images only (None: all).
        test_subset: evaluate on this many images only (None: all).
        subset_seed: draw the training subset at random with this seed (None: the first N).
        eval_every: evaluate on the test set every this many epochs, and after the last.

    Raises:
        ValueError: a setting out of its range, naming the command-line flag.

    Examples:
        >>> import coatnet
        >>> settings = coatnet.TrainSettings(model="coatnet_toy", epochs=2, batch_size=8)
        >>> settings.lr, settings.to_dict()["epochs"]
        (0.001, 2)
    """

    model: str = "coatnet_pico"
    data: str = "fashion-mnist"
    attention: str = "pre"
    layout: str | None = None
    strides: tuple[int, ...] | None = None
    # N or (H, W); default: the data's own size (28 for Fashion-MNIST, 32 for CIFAR-10)
    img_size: int | tuple[int, int] | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    randaugment: tuple[int, int] | None = None  # (ops per image, magnitude 0..30); the paper: (2, 15)
    mixup: float = 0.0  # probability that a batch is mixed (MixUp); the paper mixes every batch
    cutmix: float = 0.0  # probability that a batch is cut-mixed (CutMix)
    crop_padding: int = 0  # random crop after zero padding by this many pixels
    hflip: bool = False
    drop_path: float = 0.1
    grad_clip: float = 1.0
    ema: float = 0.0  # EMA decay per step (0: off); the paper fine-tunes with 0.9999
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    subset_seed: int | None = None  # draw the training subset at random with this seed (else: the first N)
    eval_every: int = 1  # evaluate on the test set every this many epochs, and after the last

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.mixup <= 1 or not 0 <= self.cutmix <= 1:
            raise ValueError("--label-smoothing must be in [0, 1); --mixup and --cutmix are probabilities")
        if not 0 <= self.ema < 1:
            raise ValueError("--ema is a decay in [0, 1), e.g. 0.999 (0 turns it off)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (the EMA weights where ``ema`` was on), in eval mode.
        metrics: one row per epoch, as written to ``metrics.json`` and ``metrics.csv`` (``epoch``,
            ``step``, ``train_loss``, ``train_top1``, and ``test_top1`` / ``test_top5`` where the epoch
            was evaluated).
        final: the last evaluation on the test set, or None.
        out_dir: where the checkpoints, resume state, metrics and model card were written.

    Examples:
        >>> import coatnet
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> for label, colour in [("red", (255, 0, 0)), ("blue", (0, 0, 255))]:
        ...     Path("pictures", label).mkdir(parents=True, exist_ok=True)
        ...     for i in range(4):
        ...         Image.new("RGB", (32, 32), colour).save(f"pictures/{label}/{i}.png")
        >>> settings = coatnet.TrainSettings(model="coatnet_toy", data="pictures", epochs=1, batch_size=4)
        >>> result = coatnet.train(settings, "runs/result", progress=False, workers=0)
        >>> result.metrics[-1]["epoch"], result.out_dir.name
        (1, 'result')
    """

    model: CoAtNet
    metrics: list[dict[str, Any]]
    final: EvalResult | None
    out_dir: Path


def _abandon_on_error(function: Callable) -> Callable:
    """If training fails in a process of several, the process group is let go of at once (nothing held by
    the backend, no meeting): an error ends the process instead of hanging it at exit."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BaseException:
            if kwargs.get("distributed_run", True):
                distributed.abandon(int(os.environ.get("WORLD_SIZE", "1")))
            raise

    return run


@_abandon_on_error
def train(
    settings: TrainSettings,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    epochs: int | None = None,
    stop_after: int | None = None,
    device: str | None = None,
    workers: int = 2,
    command: str | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    distributed_run: bool = True,
) -> TrainResult:
    """Train, writing checkpoints, resume state and metrics to ``out_dir`` every epoch.

    Args:
        settings: the run (with ``resume``, the settings saved in ``out_dir`` are used instead).
        out_dir: where everything is written.
        resume: continue from ``out_dir/resume.safetensors``.
        epochs: with ``resume``, train up to this many epochs instead of the saved number (the cosine
            schedule stretches to the new length).
        stop_after: stop (as if interrupted) after this many epochs in total.
        device: ``cuda`` / ``cpu`` (default: CUDA when present).
        workers: decoding processes for image folders.
        command: the command line, recorded in checkpoints and the model card.
        progress: show tqdm bars (rank 0 only).
        on_step: called with (step, loss) after every optimizer step.
        distributed_run: under torchrun, train one model together (DDP); False trains this process's
            own model alone (the layout study shares its runs out among the processes).

    Returns:
        The trained model, the metrics of every epoch, the last evaluation and ``out_dir``.

    Examples:
        Two classes of four solid-colour pictures, one epoch of a toy model:

        >>> import coatnet
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> for label, colour in [("red", (255, 0, 0)), ("blue", (0, 0, 255))]:
        ...     Path("colours", label).mkdir(parents=True, exist_ok=True)
        ...     for i in range(4):
        ...         Image.new("RGB", (32, 32), colour).save(f"colours/{label}/{i}.png")
        >>> settings = coatnet.TrainSettings(model="coatnet_toy", data="colours", epochs=1, batch_size=4)
        >>> result = coatnet.train(settings, "runs/colours", progress=False, workers=0)
        >>> sorted(p.name for p in Path("runs/colours").glob("*.safetensors"))
        ['last.safetensors', 'resume.safetensors']
    """
    out_dir = ensure_folder(out_dir)  # before any work: a path that cannot be made is said at once
    rank, world = distributed.init(device) if distributed_run else (0, 1)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    state = load_resume(out_dir / "resume.safetensors") if resume else None
    if state is not None:  # the saved run's settings; only the number of epochs may change
        settings = TrainSettings.from_dict({**state["settings"], **({"epochs": epochs} if epochs else {})})
        command = state.get("command") or command
    train_set, test_set, preprocessing = _open_data(settings)

    torch.manual_seed(settings.seed)
    # channels_last: faster convolutions on CUDA and on CPU alike (1.25x for coatnet_pico on 28x28)
    model = _build_model(settings, train_set, preprocessing).to(device, memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=_ema_with_warmup(settings.ema), use_buffers=True)
    optimizer = torch.optim.AdamW(_param_groups(model, settings.weight_decay), lr=settings.lr)
    sampler = torch.utils.data.DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=settings.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(sampler)} training images per process is less than one batch of {settings.batch_size}"
        )
    schedule = _lr_schedule(settings, steps_per_epoch)
    augment = _augmentation(settings, preprocessing)

    epoch, step, rows, elapsed = 0, 0, [], 0.0
    torch.manual_seed(settings.seed + rank)  # each process its own augmentation stream
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, step, rows, elapsed = state["epoch"], state["step"], state["metrics"], state["elapsed"]
        if rank == 0:
            kept = f"kept {epoch} of {settings.epochs} epochs (weights, optimizer, EMA, metrics)"
            print(f"resuming in {out_dir}: {kept}", file=sys.stderr, flush=True)
        torch.set_rng_state(state["rng"][rank])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state(state["cuda_rng"][rank], device)
    # each process opened its data and built its model first: meet by heartbeat, then let DDP sync
    distributed.at("start of training")
    distributed.wait_for_peers("data opened", world)
    net = DistributedDataParallel(model) if world > 1 else model
    final = None
    last_epoch = settings.epochs if stop_after is None else min(stop_after, settings.epochs)
    if epoch >= last_epoch and rank == 0:
        print(f"{out_dir}: already trained for {epoch} of {settings.epochs} epochs; nothing to do")
    while epoch < last_epoch:
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        batches = _batches(train_set, torch.tensor(list(sampler)), settings.batch_size, workers=workers,
                           drop_last=True)  # fmt: skip
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch",
                   disable=not progress or rank != 0, dynamic_ncols=True)  # fmt: skip
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        model.train()
        for images, labels in batches:
            distributed.at(f"epoch {epoch + 1}, step {step + 1}")
            if not distributed.all_have_data(len(labels), world):
                continue
            x, targets = augment(prepare_batch(images, preprocessing, device=device), labels.to(device))
            x = normalize(x, preprocessing).contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            try:
                loss, correct = _step(net, model, ema, optimizer, x, targets, settings, device)
            except RuntimeError as error:  # DDP's own collectives, in the forward and backward passes
                if world > 1 and distributed.from_backend(error):
                    raise distributed.lost(error, world) from None
                raise
            step += 1
            sums += torch.tensor([loss * len(labels), correct, len(labels)], dtype=torch.float64)
            if on_step is not None:
                on_step(step, loss)
            rate = sums[2].item() * world / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}", acc=f"{100 * sums[1] / sums[2]:.2f}%",
                            img_s=f"{rate:.0f}", lr=f"{schedule(step - 1):.2e}", refresh=False)  # fmt: skip
            bar.update()
        bar.close()
        train_time = time.perf_counter() - started
        distributed.at(f"end of epoch {epoch + 1}, step {step}")
        distributed.all_reduce(sums, world)
        with torch.no_grad():
            for module in (model, ema.module):
                distributed.average_buffers(module, world)
        epoch += 1
        evaluated = ema.module if settings.ema > 0 else model
        tested = None
        if epoch % settings.eval_every == 0 or epoch in (settings.epochs, last_epoch):
            final = tested = _evaluate(
                evaluated, test_set, preprocessing, settings, device, workers, rank, world, progress
            )
        elapsed += time.perf_counter() - started
        rows.append({
            "epoch": epoch, "step": step, "lr": schedule(step - 1),
            "train_loss": sums[0].item() / max(sums[2].item(), 1),
            "train_top1": sums[1].item() / max(sums[2].item(), 1),
            "test_loss": tested and tested.loss, "test_top1": tested and tested.top1,
            "test_top5": tested and tested.top5,
            "images_per_s": sums[2].item() / max(train_time, 1e-9), "epoch_s": time.perf_counter() - started,
            "skipped_images": train_set.skipped.count + test_set.skipped.count,
        })  # fmt: skip
        rng = distributed.gather_rng(world)
        if rank == 0:
            provenance = {
                "dataset": train_set.name, "command": command, "epochs": epoch, "step": step,
                "weights": "ema" if settings.ema > 0 else "last", "settings": settings.to_dict(),
                "test_top1": final and final.top1, "test_top5": final and final.top5,
                "wall_time_s": round(elapsed, 1),
            }  # fmt: skip
            save_checkpoint(evaluated, out_dir / "last.safetensors", class_names=train_set.class_names,
                            preprocessing=preprocessing, provenance=provenance)  # fmt: skip
            write_metrics(out_dir, rows)
            save_resume(out_dir / "resume.safetensors", {
                "settings": settings.to_dict(), "command": command, "epoch": epoch, "step": step,
                "elapsed": elapsed, "metrics": rows, "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": rng["cpu"], "cuda_rng": rng["cuda"],
            })  # fmt: skip
            if progress:
                tqdm.write(epoch_line(rows[-1], settings.epochs, train_set, test_set))
        distributed.wait_for_peers(f"epoch {epoch} saved", world)  # the first process writes the files
    if rank == 0 and final is not None and epoch == settings.epochs:
        card = model_card(settings, rows, final, command, elapsed, world, device)
        write_text(out_dir / "MODEL_CARD.md", card)
    distributed.at(f"end of training, step {step}")
    checksums = distributed.rank_checksums(model, world)
    del net  # the DDP wrapper holds the process group: let it go before the group is destroyed
    distributed.finish(world)
    if len(set(checksums)) > 1:
        raise RuntimeError(f"the {world} processes ended with different weights: {checksums}")
    result_model = ema.module if settings.ema > 0 else model
    return TrainResult(model=result_model.eval(), metrics=rows, final=final, out_dir=out_dir)


def _step(net, model, ema, optimizer, x, targets, settings: TrainSettings, device) -> tuple[float, int]:
    """One optimizer step (bf16 autocast on CUDA, gradient clipping, EMA); returns (loss, correct)."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.amp and device.type == "cuda"):
        logits = net(x)
    loss, correct = _loss(logits.float(), targets, settings.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if settings.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    if settings.ema > 0:
        ema.update_parameters(model)
    return loss.item(), correct


def _open_data(
    settings: TrainSettings,
) -> tuple[TensorImages | ImageFolder, TensorImages | ImageFolder, Preprocessing]:
    size = None if settings.img_size is None else as_hw(settings.img_size)
    train_set = open_dataset(settings.data, "train", size=size)
    test_set = open_dataset(settings.data, "test", size=size)
    if settings.train_subset:
        train_set = train_set.subset(settings.train_subset, seed=settings.subset_seed)
    if settings.test_subset:
        test_set = test_set.subset(settings.test_subset)
    if train_set.class_names != test_set.class_names:
        raise ValueError(
            f"the training classes {list(train_set.class_names)[:5]}... and the test classes "
            f"{list(test_set.class_names)[:5]}... differ: give both splits the same class folders"
        )
    preprocessing = Preprocessing(
        size=size or train_set.size, channels=train_set.channels, mean=train_set.mean, std=train_set.std
    )
    return train_set, test_set, preprocessing


def _build_model(
    settings: TrainSettings, data: TensorImages | ImageFolder, preprocessing: Preprocessing
) -> CoAtNet:
    overrides: dict[str, Any] = {"drop_path_rate": settings.drop_path}
    if settings.strides:
        overrides["strides"] = tuple(settings.strides)
    return create_model(
        settings.model,
        attention=settings.attention,
        layout=settings.layout,
        img_size=preprocessing.size,
        in_chans=preprocessing.channels,
        num_classes=len(data.class_names),
        **overrides,
    )


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and kernels; not norms, biases, layer scales or relative-position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "rel_pos" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_schedule(settings: TrainSettings, steps_per_epoch: int) -> Callable[[int], float]:
    total = settings.epochs * steps_per_epoch
    warmup = min(round(settings.warmup_epochs * steps_per_epoch), total - 1)

    def lr(step: int) -> float:
        if step < warmup:
            return settings.lr * (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup - 1, 1)
        return settings.min_lr + 0.5 * (settings.lr - settings.min_lr) * (
            1 + math.cos(math.pi * min(progress, 1))
        )

    return lr


def _augmentation(settings: TrainSettings, preprocessing: Preprocessing):
    """Batch augmentation on [0, 1] images; returns ``(images, targets)`` with targets ``(B,)`` labels or
    ``(B, 3)`` rows ``(label_a, label_b, weight_of_b)`` for a mixed batch."""
    import kornia.augmentation as K  # kornia when training (not for every ``import coatnet``)
    from kornia.augmentation.auto import RandAugment

    size = preprocessing.size
    crop = K.RandomCrop(size, padding=settings.crop_padding) if settings.crop_padding else None
    flip = K.RandomHorizontalFlip() if settings.hflip else None
    rand_augment = RandAugment(*settings.randaugment) if settings.randaugment else None
    grey = preprocessing.channels == 1
    mixup = K.RandomMixUpV2(data_keys=["input", "class"])
    cutmix = K.RandomCutMixV2(data_keys=["input", "class"], use_correct_lambda=True)

    def apply(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in (crop, flip):
            if transform is not None:
                x = transform(x)
        if rand_augment is not None:  # its colour operations want RGB: grey images go through as grey RGB
            x = rand_augment(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True) if grey else rand_augment(x)
        draw = torch.rand(()).item()
        if draw < settings.mixup:
            return mixup(x, labels)  # (B, 3): label_a, label_b, weight of image b
        if draw < settings.mixup + settings.cutmix:
            x, targets = cutmix(x, labels)  # (1, B, 3): label_a, label_b, share of image a
            targets = targets[0].clone()
            targets[:, 2] = 1 - targets[:, 2]
            return x, targets
        return x, labels

    return apply


def _ema_with_warmup(decay: float) -> Callable:
    """EMA update with the decay warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.

    Without the warm-up a 0.999 average of a short run keeps a large share of the initial weights (after
    1,000 steps still 37%); with it the early average follows the model closely.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # e.g. BatchNorm's num_batches_tracked
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
            return
        step = float(n)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + step) / (10.0 + step)))

    return update


def _loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, float]:
    ce = torch.nn.functional.cross_entropy
    if targets.ndim == 1:
        return ce(logits, targets, label_smoothing=smoothing), (logits.argmax(1) == targets).sum().item()
    a, b, weight_b = targets[:, 0].long(), targets[:, 1].long(), targets[:, 2]
    loss = (1 - weight_b) * ce(logits, a, label_smoothing=smoothing, reduction="none") + weight_b * ce(
        logits, b, label_smoothing=smoothing, reduction="none"
    )
    dominant = torch.where(weight_b > 0.5, b, a)
    return loss.mean(), (logits.argmax(1) == dominant).sum().item()


def _evaluate(model, test_set, preprocessing, settings, device, workers, rank, world, progress) -> EvalResult:
    """Each process scores its own stride of the test set; the confusion matrices are summed."""
    indices = torch.arange(rank, len(test_set), world)
    result = evaluate(
        model,
        test_set,
        preprocessing,
        batch_size=2 * settings.batch_size,
        device=device,
        workers=workers,
        indices=indices,
        progress=progress and rank == 0,
    )
    return distributed.merge_eval(result, world)
