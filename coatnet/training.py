"""Training: the paper's recipe (PAPER.md section 4) scaled to the data, on one process or many (DDP).

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

import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import kornia.augmentation as K
import torch
import torch.distributed as dist
from kornia.augmentation.auto import RandAugment
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from coatnet.checkpoint import save_checkpoint
from coatnet.datasets import ImageFolder, TensorImages, normalize, open_dataset, prepare_batch
from coatnet.datasets import iterate_batches as _batches
from coatnet.evaluation import EvalResult, evaluate
from coatnet.model import CoAtNet
from coatnet.train_state import load_resume, save_resume, write_metrics, write_text
from coatnet.variants import create_model


@dataclass(frozen=True)
class TrainSettings:
    """One training run. Defaults are the paper's recipe where it scales (PAPER.md section 4)."""

    model: str = "coatnet_pico"
    data: str = "fashion-mnist"
    attention: str = "pre"
    layout: str | None = None
    strides: tuple[int, ...] | None = None
    img_size: int | None = None  # default: the data's own size (28 for Fashion-MNIST, 32 for CIFAR-10)
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

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
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
    model: CoAtNet
    metrics: list[dict[str, Any]]
    final: EvalResult | None
    out_dir: Path


def train(
    settings: TrainSettings,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    device: str | None = None,
    workers: int = 2,
    command: str | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train, writing checkpoints, resume state and metrics to ``out_dir`` every epoch.

    Args:
        settings: the run (with ``resume``, the settings saved in ``out_dir`` are used instead, but for
            ``epochs``, which may grow).
        out_dir: where everything is written.
        resume: continue from ``out_dir/resume.safetensors``.
        stop_after: stop (as if interrupted) after this many epochs in total.
        device: ``cuda`` / ``cpu`` (default: CUDA when present).
        workers: decoding processes for image folders.
        command: the command line, recorded in checkpoints and the model card.
        progress: show tqdm bars (rank 0 only).
        on_step: called with (step, loss) after every optimizer step.
    """
    out_dir = Path(out_dir)
    rank, world = _init_distributed(device)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    state = load_resume(out_dir / "resume.safetensors") if resume else None
    if state is not None:
        settings = TrainSettings.from_dict({**state["settings"], "epochs": settings.epochs})
        command = state.get("command") or command
    train_set, test_set, preprocessing = _open_data(settings)

    torch.manual_seed(settings.seed)
    # channels_last: faster convolutions on CUDA and on CPU alike (1.25x for coatnet_pico on 28x28)
    model = _build_model(settings, train_set, preprocessing).to(device, memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema), use_buffers=True)
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
        torch.set_rng_state(state["rng"][rank])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state(state["cuda_rng"][rank], device)
    net = DistributedDataParallel(model) if world > 1 else model
    final = None
    last_epoch = settings.epochs if stop_after is None else min(stop_after, settings.epochs)
    while epoch < last_epoch:
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        indices = torch.tensor(list(sampler))
        model.train()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{settings.epochs}",
            unit="batch",
            disable=not progress or rank != 0,
            dynamic_ncols=True,
        )
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        for images, labels in _batches(
            train_set, indices, settings.batch_size, workers=workers, drop_last=True
        ):
            if not _all_have_data(len(labels), world):
                continue
            labels = labels.to(device)
            x = prepare_batch(images, preprocessing, device=device)
            x, targets = augment(x, labels)
            x = normalize(x, preprocessing).contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=settings.amp and device.type == "cuda"
            ):
                logits = net(x)
            loss, correct = _loss(logits.float(), targets, settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            if settings.ema > 0:
                ema.update_parameters(model)
            step += 1
            sums += torch.tensor([loss.item() * len(labels), correct, len(labels)], dtype=torch.float64)
            if on_step is not None:
                on_step(step, loss.item())
            rate = sums[2].item() * world / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(
                loss=f"{sums[0].item() / sums[2].item():.4f}",
                acc=f"{100 * sums[1].item() / sums[2].item():.2f}%",
                img_s=f"{rate:.0f}",
                lr=f"{schedule(step - 1):.2e}",
                refresh=False,
            )
            bar.update()
        bar.close()
        if world > 1:
            dist.all_reduce(sums)
        epoch += 1
        train_time = time.perf_counter() - started
        evaluated = ema.module if settings.ema > 0 else model
        final = _evaluate(
            evaluated, test_set, preprocessing, settings, device, workers, rank, world, progress
        )
        elapsed += time.perf_counter() - started
        row = {
            "epoch": epoch,
            "step": step,
            "lr": schedule(step - 1),
            "train_loss": sums[0].item() / max(sums[2].item(), 1),
            "train_top1": sums[1].item() / max(sums[2].item(), 1),
            "test_loss": final.loss,
            "test_top1": final.top1,
            "test_top5": final.top5,
            "images_per_s": sums[2].item() / max(train_time, 1e-9),
            "epoch_s": time.perf_counter() - started,
            "skipped_images": train_set.skipped.count + test_set.skipped.count,
        }
        rows.append(row)
        rng = _gather_rng(world)
        if rank == 0:
            _write_epoch(
                out_dir,
                settings,
                evaluated,
                model,
                ema,
                optimizer,
                rows,
                rng,
                step,
                epoch,
                elapsed,
                command,
                preprocessing,
                train_set,
                final,
            )
            if progress:
                tqdm.write(_epoch_line(row, settings.epochs, train_set, test_set))
        if world > 1:
            dist.barrier()
    if rank == 0 and final is not None and epoch == settings.epochs:
        write_text(
            out_dir / "MODEL_CARD.md", model_card(settings, rows, final, command, elapsed, world, device)
        )
    checksums = _rank_checksums(model, world)
    if rank == 0 and checksums and len(set(checksums)) > 1:
        raise RuntimeError(f"the {world} processes ended with different weights: {checksums}")
    _finish_distributed(world)
    result_model = ema.module if settings.ema > 0 else model
    return TrainResult(model=result_model.eval(), metrics=rows, final=final, out_dir=out_dir)


def _open_data(
    settings: TrainSettings,
) -> tuple[TensorImages | ImageFolder, TensorImages | ImageFolder, dict]:
    size = (settings.img_size, settings.img_size) if settings.img_size else None
    train_set = open_dataset(settings.data, "train", size=size)
    test_set = open_dataset(settings.data, "test", size=size)
    if settings.train_subset:
        train_set = train_set.subset(settings.train_subset)
    if settings.test_subset:
        test_set = test_set.subset(settings.test_subset)
    if train_set.class_names != test_set.class_names:
        raise ValueError(
            f"the training classes {list(train_set.class_names)[:5]}... and the test classes "
            f"{list(test_set.class_names)[:5]}... differ: give both splits the same class folders"
        )
    preprocessing = {
        "size": list(size or train_set.size),
        "channels": train_set.channels,
        "mean": list(train_set.mean),
        "std": list(train_set.std),
        "interpolation": "bilinear",
        "crop": 1.0,
    }
    return train_set, test_set, preprocessing


def _build_model(settings: TrainSettings, data: TensorImages | ImageFolder, preprocessing: dict) -> CoAtNet:
    overrides: dict[str, Any] = {"drop_path_rate": settings.drop_path}
    if settings.strides:
        overrides["strides"] = tuple(settings.strides)
    return create_model(
        settings.model,
        attention=settings.attention,
        layout=settings.layout,
        img_size=tuple(preprocessing["size"]),
        in_chans=preprocessing["channels"],
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


def _augmentation(settings: TrainSettings, preprocessing: dict):
    """Batch augmentation on [0, 1] images; returns ``(images, targets)`` with targets ``(B,)`` labels or
    ``(B, 3)`` rows ``(label_a, label_b, weight_of_b)`` for a mixed batch."""
    size = tuple(preprocessing["size"])
    crop = K.RandomCrop(size, padding=settings.crop_padding) if settings.crop_padding else None
    flip = K.RandomHorizontalFlip() if settings.hflip else None
    rand_augment = RandAugment(*settings.randaugment) if settings.randaugment else None
    grey = preprocessing["channels"] == 1
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
            return mixup(x, labels)
        if draw < settings.mixup + settings.cutmix:
            x, targets = cutmix(x, labels)
            return x, targets[0]
        return x, labels

    return apply


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
    if world == 1:
        return result
    sums = torch.tensor(
        [result.loss * result.count, result.top5 * result.count, result.count], dtype=torch.float64
    )
    confusion = torch.tensor(result.confusion, dtype=torch.long)
    dist.all_reduce(sums)
    dist.all_reduce(confusion)
    totals = confusion.sum(1)
    count = max(sums[2].item(), 1)
    return EvalResult(
        top1=confusion.diagonal().sum().item() / count,
        top5=sums[1].item() / count,
        loss=sums[0].item() / count,
        per_class=[None if t == 0 else confusion[i, i].item() / t.item() for i, t in enumerate(totals)],
        confusion=confusion.tolist(),
        class_names=result.class_names,
        count=int(sums[2].item()),
        skipped=result.skipped,
    )


def _write_epoch(
    out_dir,
    settings,
    evaluated,
    model,
    ema,
    optimizer,
    rows,
    rng,
    step,
    epoch,
    elapsed,
    command,
    preprocessing,
    train_set,
    final,
) -> None:
    provenance = {
        "dataset": train_set.name,
        "command": command,
        "epochs": epoch,
        "step": step,
        "weights": "ema" if settings.ema > 0 else "last",
        "settings": settings.to_dict(),
        "test_top1": final.top1,
        "test_top5": final.top5,
        "wall_time_s": round(elapsed, 1),
    }
    save_checkpoint(
        evaluated,
        out_dir / "last.safetensors",
        class_names=train_set.class_names,
        preprocessing=preprocessing,
        provenance=provenance,
    )
    write_metrics(out_dir, rows)
    save_resume(
        out_dir / "resume.safetensors",
        {
            "settings": settings.to_dict(),
            "command": command,
            "epoch": epoch,
            "step": step,
            "elapsed": elapsed,
            "metrics": rows,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng["cpu"],
            "cuda_rng": rng["cuda"],
        },
    )


def _epoch_line(row: dict[str, Any], epochs: int, train_set, test_set) -> str:
    line = (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
        f"top-1 {100 * row['train_top1']:.2f}%"
        f" | test loss {row['test_loss']:.4f} top-1 {100 * row['test_top1']:.2f}% top-5 "
        f"{100 * row['test_top5']:.2f}% | {row['images_per_s']:.0f} img/s, {row['epoch_s']:.0f} s"
    )
    for dataset in (train_set, test_set):
        if dataset.skipped.count:
            line += f"\n  {dataset.name}: {dataset.skipped.message()}"
    return line


def model_card(settings, rows, final: EvalResult, command, elapsed, world, device) -> str:
    """A markdown model card: what was trained, how, on what machine, and how well it does."""
    machine = (
        f"{world} x {torch.cuda.get_device_name(device)}"
        if device.type == "cuda"
        else (
            f"{world} x CPU process ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads)"
        )
    )
    per_class = "\n".join(
        f"| {name} | {'-' if acc is None else f'{100 * acc:.2f}%'} |"
        for name, acc in zip(final.class_names, final.per_class, strict=True)
    )
    settings_lines = "\n".join(f"| {k} | {v} |" for k, v in settings.to_dict().items())
    return f"""# {settings.model} ({settings.attention}-normalization) on {settings.data}

| | |
|---|---|
| test top-1 | {100 * final.top1:.2f}% ({final.count} images) |
| test top-5 | {100 * final.top5:.2f}% |
| test loss | {final.loss:.4f} |
| epochs | {rows[-1]["epoch"]} ({rows[-1]["step"]} steps) |
| wall time | {elapsed / 60:.1f} min |
| machine | {machine}, torch {torch.__version__}, Python {platform.python_version()} |

Command:

```
{command or "(python API)"}
```

## Per-class test accuracy

| class | top-1 |
|---|---|
{per_class}

## Settings

| setting | value |
|---|---|
{settings_lines}

Per-epoch metrics: `metrics.json` / `metrics.csv` beside this card.
"""


def _init_distributed(device: str | None) -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, or (0, 1) for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _finish_distributed(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _all_have_data(n: int, world: int) -> bool:
    """Under DDP every process must step together: skip a batch everywhere if one process has none."""
    if world == 1:
        return n > 0
    flag = torch.tensor([1 if n > 0 else 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _gather_rng(world: int) -> dict[str, list[torch.Tensor]]:
    cpu = torch.get_rng_state()
    cuda = [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    if world == 1:
        return {"cpu": [cpu], "cuda": cuda}
    cpus = [torch.empty_like(cpu) for _ in range(world)]
    dist.all_gather(cpus, cpu) if dist.get_backend() == "gloo" else _gather_via_cuda(cpus, cpu)
    return {"cpu": cpus, "cuda": []}


def _gather_via_cuda(out: list[torch.Tensor], tensor: torch.Tensor) -> None:
    gathered = [torch.empty_like(tensor, device="cuda") for _ in out]
    dist.all_gather(gathered, tensor.cuda())
    for target, source in zip(out, gathered, strict=True):
        target.copy_(source.cpu())


def _rank_checksums(model: torch.nn.Module, world: int) -> list[float]:
    """Under DDP, a checksum of each process's weights (they must agree); empty for one process."""
    if world == 1:
        return []
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    total = total.to(next(model.parameters()).device)
    gathered = [torch.empty_like(total) for _ in range(world)]
    dist.all_gather(gathered, total)
    return [g.item() for g in gathered]
