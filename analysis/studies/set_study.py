"""A study over the user's own images (an :class:`analysis.ImageSet`): what the Dataset page draws for a
shipped study, measured with the same code (:func:`~analysis.studies.study.study_plan`,
:func:`~analysis.studies.study.measure_batch`, :func:`~analysis.studies.study.summarise`), without the
interventions: each head's mean attention distance and entropy (of its weights, its content alone and its
bias alone) and position share, each stage's statistics, and, for one chosen explanation method beside
the random map, faithfulness on the leading images; with the model's prediction for every image and its
accuracy over the labelled ones.

An image without a label is measured with its predicted class standing in for one (the head and stage
statistics do not depend on it; faithfulness always explains the predicted class); the baseline's top-1
and loss are over the labelled images alone (NaN when there are none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from analysis.core.image_sets import ImageSet
from analysis.core.images import load_image
from analysis.core.inputs import as_batch, preprocessing_of
from analysis.core.models import describe
from analysis.core.running import call_model
from analysis.explain.faithfulness import protocol as faithfulness_protocol
from analysis.studies.study import CONVENTIONS, concatenate, measure_batch, study_plan, summarise
from analysis.studies.summaries import Study
from coatnet.model.network import CoAtNet
from coatnet.weights.checkpoint import class_names

SET_BATCH = 32  # images per pass: the progress moves once a batch
FAITHFULNESS_IMAGES = (
    100  # the leading images whose faithfulness is measured (coatnet study --faithfulness N)
)
FAITHFULNESS_COST = 10  # an image's faithfulness takes about ten times its other measurements (for progress)


@dataclass(frozen=True)
class SetPrediction:
    """The model's top-1 class for one image of a set, beside its label where it has one.

    Attributes:
        name: the image's name in the set.
        index: the predicted class.
        class_name: its name (``class 7`` when the model names none).
        probability: its softmax probability.
        label: the image's class, or None when unlabelled.
        label_name: that class's name.

    Examples:
        >>> import analysis
        >>> row = analysis.SetPrediction("Coat/1.png", 4, "Coat", 0.93, 4, "Coat")
        >>> row.correct, analysis.SetPrediction("x.png", 4, "Coat", 0.93).correct
        (True, None)
    """

    name: str
    index: int
    class_name: str
    probability: float
    label: int | None = None
    label_name: str | None = None

    @property
    def correct(self) -> bool | None:
        """Whether the prediction is the label; None when unlabelled."""
        return None if self.label is None else self.index == self.label


@dataclass(frozen=True)
class SetStudy:
    """A study of an image set (:func:`study_image_set`).

    Attributes:
        study: the summary, typed as a shipped study's (:class:`analysis.Study`), so the Dataset page's
            figures draw it; no interventions.
        predictions: per image, in the set's order.
        method: the explanation method whose faithfulness was measured, or None.

    Examples:
        >>> import analysis
        >>> found = analysis.SetStudy(analysis.load_study("study-demo-pre"), (), None)
        >>> found.labelled, found.accuracy
        (0, None)
    """

    study: Study
    predictions: tuple[SetPrediction, ...]
    method: str | None = None

    @property
    def labelled(self) -> int:
        """How many of the images have a label."""
        return sum(p.label is not None for p in self.predictions)

    @property
    def accuracy(self) -> float | None:
        """The top-1 accuracy over the labelled images, in [0, 1]; None when none is labelled."""
        scored = [p.correct for p in self.predictions if p.label is not None]
        return sum(scored) / len(scored) if scored else None


def study_image_set(
    model: CoAtNet, images: ImageSet, *, method: str | None = None,
    faithfulness_images: int | None = None, batch_size: int = SET_BATCH,
    progress: Callable[[float], None] | None = None,
) -> SetStudy:  # fmt: skip
    """Measure a study over ``images`` (module docstring), batch by batch.

    Args:
        model: a CoAtNet (analysed as it is, left as found).
        images: the set (:func:`analysis.read_uploads`, :func:`analysis.read_zip`,
            :func:`analysis.read_folder`), read with the model's class names for its labels.
        method: an explanation method of :func:`analysis.explainers` whose faithfulness is measured
            beside the random map's, or None for none.
        faithfulness_images: how many leading images have it measured (default
            :data:`FAITHFULNESS_IMAGES`).
        batch_size: images per pass.
        progress: called with the share of the work done (0 .. 1).

    Returns:
        A :class:`SetStudy`.

    Raises:
        ValueError: an empty set, or an unknown ``method`` (or one that reads attention, on a model
            without any).

    Examples:
        >>> import analysis
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> Path("coats/Coat").mkdir(parents=True)
        >>> for shade in (40, 120, 200):
        ...     Image.new("L", (28, 28), shade).save(f"coats/Coat/{shade}.png")
        >>> import coatnet
        >>> model = analysis.load_model("demo-pre")
        >>> coats = analysis.read_folder("coats", class_names=coatnet.class_names(model))
        >>> found = analysis.study_image_set(model, coats)
        >>> found.study.baseline.n_images, len(found.study.heads), found.labelled
        (3, 16, 3)
    """
    if not images.images:
        raise ValueError(f"{images.origin} holds no image to study: give some images")
    pre = preprocessing_of(model)
    plan = study_plan(
        model, pre.size, faithfulness=method is not None, methods=None if method is None else (method,),
        interventions=False,
    )  # fmt: skip
    count = len(images.images)
    wanted = FAITHFULNESS_IMAGES if faithfulness_images is None else faithfulness_images
    measured = min(max(wanted, 0), count) if method is not None else 0
    arrays, predictions = _measure(model, images, plan, measured, batch_size, progress)
    summary = summarise(model, plan, arrays)
    labelled = np.array([image.label is not None for image in images.images])
    summary["baseline"] = {
        "top1": float(arrays["correct"][labelled].mean()) if labelled.any() else math.nan,
        "loss": float(arrays["loss"][labelled].astype(np.float64).mean()) if labelled.any() else math.nan,
        "n_images": count,
    }
    found = {
        "model": model.config.name,
        "model_description": describe(model),
        "data": images.origin,
        "n_images": count,
        "batch_size": batch_size,
        "faithfulness_images": measured,
        "attention": model.attention_mode,
        "conventions": {
            **CONVENTIONS,
            "accuracy": f"top-1 over the {int(labelled.sum())} labelled images of {count}, in [0, 1]; the "
            "others' predicted class stands in for their label",
        },
        **({"faithfulness_protocol": faithfulness_protocol()} if method is not None else {}),
        **summary,
    }
    return SetStudy(Study.from_json(found, where=images.origin), predictions, method)


def _measure(model, images, plan, measured, batch_size, progress) -> tuple[dict, tuple[SetPrediction, ...]]:
    """The per-image arrays of :func:`measure_batch` over the set, batch by batch (faithfulness on the
    first ``measured`` images), and the predictions."""
    count = len(images.images)
    work = count + FAITHFULNESS_COST * measured
    names = class_names(model)
    parts, predictions = [], []

    def report(images_done: int, faithful_done: int) -> None:
        if progress is not None:
            progress((images_done + FAITHFULNESS_COST * faithful_done) / work)

    with call_model(model) as runner:
        for start in range(0, count, batch_size):
            chunk = images.images[start : start + batch_size]
            x = as_batch([load_image(image.data, name=image.name) for image in chunk], model)
            with torch.inference_mode():
                probabilities = runner(x).float().softmax(-1)
            top = probabilities.argmax(-1).tolist()
            predictions += [
                SetPrediction(
                    image.name, t, names[t] if names else f"class {t}", float(probabilities[i, t]),
                    image.label, image.label_name,
                )
                for i, (image, t) in enumerate(zip(chunk, top, strict=True))
            ]  # fmt: skip
            labels = torch.tensor([p.index if p.label is None else p.label for p in predictions[start:]])
            faithful = min(max(measured - start, 0), len(chunk))
            before = min(start, measured)
            parts.append(
                measure_batch(
                    model, runner, x, labels, plan, faithfulness_images=faithful,
                    progress=lambda done, of, start=start, before=before: report(start, before + done),
                )
            )  # fmt: skip
            report(start + len(chunk), before + faithful)
    return concatenate(parts), tuple(predictions)
