"""Evaluation: top-1, top-5, per-class accuracy and the confusion matrix of a model on a dataset."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from coatnet.data.batches import iterate_batches, normalize, prepare_batch
from coatnet.data.datasets import ImageFolder, TensorImages
from coatnet.data.preprocessing import Preprocessing
from coatnet.model.inference import for_inference
from coatnet.model.network import CoAtNet


@dataclass(frozen=True)
class EvalResult:
    """Accuracy of a model on a dataset.

    Attributes:
        top1, top5: fractions in [0, 1] (top-5 is top-K for K < 5 classes).
        loss: mean cross-entropy.
        per_class: accuracy of each class (``None`` for a class without images).
        confusion: ``confusion[true][predicted]`` counts.
        class_names: one per class.
        count: images evaluated; skipped: images that could not be decoded.
    """

    top1: float
    top5: float
    loss: float
    per_class: list[float | None]
    confusion: list[list[int]]
    class_names: list[str]
    count: int
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        width = max(len(n) for n in self.class_names)
        lines = [
            f"top-1 {100 * self.top1:.2f}%  top-5 {100 * self.top5:.2f}%  loss {self.loss:.4f}  "
            f"({self.count} images{f', {self.skipped} skipped' if self.skipped else ''})",
            "",
        ]
        lines.append(f"{'class':<{width}}  accuracy  images")
        for name, acc, row in zip(self.class_names, self.per_class, self.confusion, strict=True):
            shown = "-" if acc is None else f"{100 * acc:.2f}%"
            lines.append(f"{name:<{width}}  {shown:>8}  {sum(row):>6}")
        return "\n".join(lines)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: TensorImages | ImageFolder,
    preprocessing: Preprocessing,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    workers: int = 0,
    indices: torch.Tensor | None = None,
    progress: bool = True,
) -> EvalResult:
    """Run ``model`` over ``dataset`` and score it: a CoAtNet through its inference build
    (:func:`coatnet.for_inference`; the model itself is not touched), another module in eval mode (its
    mode restored); in bf16 autocast on CUDA."""
    num_classes = len(dataset.class_names)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    correct5, loss_sum, count = 0, 0.0, 0
    indices = torch.arange(len(dataset)) if indices is None else indices
    was_training = model.training
    runner = for_inference(model) if isinstance(model, CoAtNet) else model.eval()
    cuda = torch.device(device).type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    try:
        bar = tqdm(total=len(indices), desc="eval", unit="img", disable=not progress, leave=False)
        for images, labels in iterate_batches(dataset, indices, batch_size, workers=workers):
            bar.update(len(labels))
            if len(labels) == 0:
                continue
            x = normalize(prepare_batch(images, preprocessing, device=device), preprocessing)
            with autocast:
                logits = runner(x).float().cpu()
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            top = logits.topk(min(5, num_classes), dim=1).indices
            correct5 += (top == labels[:, None]).any(1).sum().item()
            confusion += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes**2).view(
                num_classes, num_classes
            )
            count += len(labels)
        bar.close()
    finally:
        model.train(was_training)
    totals = confusion.sum(1)
    per_class = [None if t == 0 else confusion[i, i].item() / t.item() for i, t in enumerate(totals)]
    return EvalResult(
        top1=confusion.diagonal().sum().item() / max(count, 1),
        top5=correct5 / max(count, 1),
        loss=loss_sum / max(count, 1),
        per_class=per_class,
        confusion=confusion.tolist(),
        class_names=list(dataset.class_names),
        count=count,
        skipped=dataset.skipped.count,
    )
