"""The summaries the dataset commands write, read by name: a study (``coatnet study``'s study.json), probes
(``coatnet probe``'s probes.json) and a layout study (``coatnet study-layouts``' layouts.json).

Each is a frozen dataclass with a nested one per row, read from the JSON as it is stored
(:meth:`Record.from_json`) and written back as the same JSON (:meth:`Record.to_json`): the files do not
change. A key the file may lack is None here and left out again when written; a key no record knows is
refused, with its name. What only describes a protocol or a recipe in words (``conventions``,
``faithfulness_protocol``, ``sanity_protocol``, a probe's ``protocol``, a layout study's ``settings``,
``versions``) stays the dict it was written as.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from analysis.explain.faithfulness import row_name

_NONE = object()


OPTIONAL = {"optional": True}  # a key the file may lack: None here, left out when written


def _record(kind: type, *, optional: bool = False) -> dict:
    """A field's metadata: one ``kind`` record."""
    return {"record": kind, **(OPTIONAL if optional else {})}


def _rows(kind: type, *, optional: bool = False) -> dict:
    """A field's metadata: a list of ``kind`` records, as a tuple."""
    return {"rows": kind, **(OPTIONAL if optional else {})}


@dataclass(frozen=True)
class Record:
    """What every summary and row shares: read from its JSON object, written back as the same object."""

    @classmethod
    def from_json(cls, data: Any, *, where: str | None = None):
        """The record of a JSON object (a dict, as :func:`json.loads` gives it).

        Raises:
            ValueError: not an object, a key it must hold is missing, or a key no field knows.
        """
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = [key for key in data if key not in known]
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        values = {}
        for name, f in known.items():
            value = data.get(name, _NONE)
            if value is _NONE:
                if f.default is not MISSING:
                    continue
                raise ValueError(f"{where}: no {name!r}")
            values[name] = _decode(value, f.metadata, f"{where}.{name}")
        record = cls(**values)
        object.__setattr__(record, "_keys", frozenset(data))  # a null it held is written back as null
        return record

    def to_json(self) -> dict[str, Any]:
        """The JSON object this record was read from (keys a file lacked left out again)."""
        out, held = {}, getattr(self, "_keys", frozenset())
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional") and f.name not in held:
                continue
            out[f.name] = _encode(value)
        return out


def _decode(value: Any, metadata, where: str) -> Any:
    if value is None:
        return None
    if "record" in metadata:
        return metadata["record"].from_json(value, where=where)
    if "rows" in metadata:
        kind = metadata["rows"]
        return tuple(kind.from_json(v, where=f"{where}[{i}]") for i, v in enumerate(value))
    return tuple(value) if isinstance(value, list) else value


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Spread(Record):
    """A mean over images and its standard deviation over them (None or NaN where nothing was defined)."""

    mean: float | None
    std: float | None


@dataclass(frozen=True)
class Parts(Record):
    """A head measure of its effective weights, its content alone and its bias alone."""

    effective: Spread = field(metadata=_record(Spread))
    content: Spread = field(metadata=_record(Spread))
    bias: Spread = field(metadata=_record(Spread))


@dataclass(frozen=True)
class Baseline(Record):
    """The model as ``coatnet eval`` runs it over the study's images."""

    top1: float
    loss: float
    n_images: int


@dataclass(frozen=True)
class InterventionRow(Record):
    """One intervention over every image: its top-1, the change from the baseline's, the logit drop."""

    block: str
    heads: tuple[int, ...]
    kind: str
    label: str
    untrained: bool
    top1: float
    delta_top1: float
    mean_logit_drop: float


@dataclass(frozen=True)
class HeadRow(Record):
    """One head: mean attention distance (input pixels) and entropy of each part, and its position share."""

    block: str
    head: int
    mean_distance_px: Parts = field(metadata=_record(Parts))
    entropy: Parts = field(metadata=_record(Parts))
    position_share: Spread = field(metadata=_record(Spread))


@dataclass(frozen=True)
class StageRow(Record):
    """One stage S0..S4: mean |activation|, the effective receptive field's 50% side, frequency profile."""

    stage: str
    kind: str
    grid: tuple[int, ...]
    mean_abs_activation: Spread = field(metadata=_record(Spread))
    erf_side_50_px: int | None = field()
    frequency_profile: tuple[float, ...] = field()
    high_frequency_delta: float = field()


@dataclass(frozen=True)
class FaithfulnessRow(Record):
    """One explanation's faithfulness over the measured images; the random map's seeds and their range.

    ``name`` and ``spread`` read as those of a live :class:`analysis.FaithfulnessResult`, so one figure
    draws both.
    """

    method: str
    stage: str | None
    deletion_auc: float
    insertion_auc: float
    road_morf: float
    road_lerf: float
    road: float
    n_images: int
    std: dict[str, float]
    seeds: tuple[int, ...] | None = field(default=None, metadata=OPTIONAL)
    seed_range: dict[str, list[float] | None] | None = field(default=None, metadata=OPTIONAL)

    @property
    def name(self) -> str:
        """The method, with Grad-CAM's stage: ``gradcam S4``."""
        return row_name(self.method, self.stage)

    @property
    def spread(self) -> dict[str, list[float] | None]:
        """The random map's (min, max) over its seeds per score; else empty."""
        return self.seed_range or {}


@dataclass(frozen=True)
class SanityRow(Record):
    """One explanation under one sanity test (and, cascading or independent, one randomised part)."""

    method: str
    stage: str | None
    test: str
    randomised: str | None
    spearman: float | None
    spearman_abs: float | None
    ssim: float | None
    hog: float | None
    constant: int
    n_images: int
    std: dict[str, float | None]


@dataclass(frozen=True)
class RobustnessRow(Record):
    """One explanation's robustness to noise of radius ``radius``."""

    method: str
    stage: str | None
    max_sensitivity: float | None
    local_lipschitz: float | None
    radius: float
    n_samples: int
    n_images: int
    std: dict[str, float | None]
    infinite: int = 0


@dataclass(frozen=True)
class Study(Record):
    """A dataset study (:func:`analysis.load_study`): what was run, and each measured part. A sanity-only
    study (``coatnet study --sanity-only``) has no ``baseline``, ``interventions``, ``heads`` nor
    ``stages``; a part the study did not measure is None.

    Attributes:
        model: the model as given to ``coatnet study --model``.
        model_description: the model in words.
        data: the dataset.
        split: its split.
        limit: ``--limit`` (the first N images), or None.
        n_images: the images of the interventions' part.
        batch_size: images per batch.
        faithfulness_images: the leading images whose faithfulness was measured.
        command: the command line of the interventions' part.
        device: where it ran.
        processes: how many processes ran it (torchrun).
        wall_s_this_run: the wall time of its last run, in seconds.
        compute_s: the compute time summed over its batches, in seconds.
        versions: Python, torch and coatnet.
        attention: the normalization, ``pre`` or ``post``.
        conventions: what its numbers mean, in words.
        faithfulness_protocol: the faithfulness protocol, in words and numbers.
        baseline: the model's top-1, loss and images.
        interventions: one :class:`InterventionRow` per intervention.
        heads: one :class:`HeadRow` per head.
        stages: one :class:`StageRow` per stage.
        faithfulness: one :class:`FaithfulnessRow` per explanation.
        sanity_command: the command line of the sanity part.
        sanity_wall_s_this_run: its wall time, in seconds.
        sanity_images: the images of the sanity part.
        sanity_compute_s: its compute time, in seconds.
        sanity_protocol: the sanity checks' protocol.
        sanity: one :class:`SanityRow` per explanation, test and randomised part.
        robustness: one :class:`RobustnessRow` per explanation.
        ledger_command: the command line of the ledger part (``--ledger``).
        ledger_wall_s_this_run: its wall time, in seconds.
        ledger_images: the images of the ledger part.
        ledger_compute_s: its compute time, in seconds.
        ledger_protocol: what the ledger's numbers are (:func:`analysis.studies.ledger.ledger_protocol`).
        ledger: per rule, the relevance ledger's rows, absorbed sources and stages, as shares of the logit
            (:func:`analysis.studies.ledger.summarise_ledger`).

    Examples:
        >>> import analysis
        >>> study = analysis.load_study("study-demo-pre")
        >>> study.model, study.baseline.n_images, study.interventions[0].label
        ('demo-pre', 10000, 'zero_branch S1.0')
    """

    model: str
    model_description: str | None = field(default=None, metadata=OPTIONAL)
    data: str | None = field(default=None, metadata=OPTIONAL)
    split: str | None = field(default=None, metadata=OPTIONAL)
    limit: int | None = None
    n_images: int | None = field(default=None, metadata=OPTIONAL)
    batch_size: int | None = field(default=None, metadata=OPTIONAL)
    faithfulness_images: int | None = field(default=None, metadata=OPTIONAL)
    command: str | None = field(default=None, metadata=OPTIONAL)
    device: str | None = field(default=None, metadata=OPTIONAL)
    processes: int | None = field(default=None, metadata=OPTIONAL)
    wall_s_this_run: float | None = field(default=None, metadata=OPTIONAL)
    compute_s: float | None = field(default=None, metadata=OPTIONAL)
    versions: dict[str, str] | None = field(default=None, metadata=OPTIONAL)
    attention: str | None = field(default=None, metadata=OPTIONAL)
    conventions: dict[str, str] | None = field(default=None, metadata=OPTIONAL)
    faithfulness_protocol: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    baseline: Baseline | None = field(default=None, metadata=_record(Baseline, optional=True))
    interventions: tuple[InterventionRow, ...] | None = field(
        default=None, metadata=_rows(InterventionRow, optional=True)
    )
    heads: tuple[HeadRow, ...] | None = field(default=None, metadata=_rows(HeadRow, optional=True))
    stages: tuple[StageRow, ...] | None = field(default=None, metadata=_rows(StageRow, optional=True))
    faithfulness: tuple[FaithfulnessRow, ...] | None = field(
        default=None, metadata=_rows(FaithfulnessRow, optional=True)
    )
    sanity_command: str | None = field(default=None, metadata=OPTIONAL)
    sanity_wall_s_this_run: float | None = field(default=None, metadata=OPTIONAL)
    sanity_images: int | None = field(default=None, metadata=OPTIONAL)
    sanity_compute_s: float | None = field(default=None, metadata=OPTIONAL)
    sanity_protocol: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    sanity: tuple[SanityRow, ...] | None = field(default=None, metadata=_rows(SanityRow, optional=True))
    robustness: tuple[RobustnessRow, ...] | None = field(
        default=None, metadata=_rows(RobustnessRow, optional=True)
    )
    ledger_command: str | None = field(default=None, metadata=OPTIONAL)
    ledger_wall_s_this_run: float | None = field(default=None, metadata=OPTIONAL)
    ledger_images: int | None = field(default=None, metadata=OPTIONAL)
    ledger_compute_s: float | None = field(default=None, metadata=OPTIONAL)
    ledger_protocol: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    ledger: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)

    @property
    def described(self) -> str:
        """The model's description, else its name."""
        return self.model_description or self.model


@dataclass(frozen=True)
class ProbeRow(Record):
    """The linear probe of one block's pooled output."""

    block: str
    stage: str
    kind: str
    features: int
    train_top1: float
    test_top1: float
    weight_decay: float
    held_out_top1: dict[str, float]


@dataclass(frozen=True)
class LensRow(Record):
    """The model's own final norm and classifier read at one block of the last stage."""

    block: str
    train_top1: float
    test_top1: float


@dataclass(frozen=True)
class Probes(Record):
    """A model's linear probes (:func:`analysis.load_probes`): one row per block, the head lens, and the
    model's own top-1.

    Attributes:
        model: the model as given to ``coatnet probe --model``.
        rows: one :class:`ProbeRow` per block, in forward order.
        model_top1: the model's own top-1 on the test split.
        model_description: the model in words.
        data: the dataset.
        limit: ``--limit``, or None.
        batch_size: images per batch.
        n_train: training images.
        n_test: test images.
        protocol: the probes' protocol, in words and numbers.
        head_lens: one :class:`LensRow` per block of the last stage.
        model_train_top1: the model's own top-1 on the training split.
        command: the command line.
        device: where it ran.
        processes: how many processes ran it.
        versions: Python, torch and coatnet.
        wall_s_this_run: the wall time of its last run, in seconds.

    Examples:
        >>> import analysis
        >>> probes = analysis.load_probes("probes-demo-pre")
        >>> probes.model, probes.rows[0].block, probes.n_test
        ('demo-pre', 'S0', 10000)
    """

    model: str
    rows: tuple[ProbeRow, ...] = field(metadata=_rows(ProbeRow))
    model_top1: float = field()
    model_description: str | None = field(default=None, metadata=OPTIONAL)
    data: str | None = field(default=None, metadata=OPTIONAL)
    limit: int | None = None
    batch_size: int | None = field(default=None, metadata=OPTIONAL)
    n_train: int | None = field(default=None, metadata=OPTIONAL)
    n_test: int | None = field(default=None, metadata=OPTIONAL)
    protocol: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    head_lens: tuple[LensRow, ...] | None = field(default=None, metadata=_rows(LensRow, optional=True))
    model_train_top1: float | None = field(default=None, metadata=OPTIONAL)
    command: str | None = field(default=None, metadata=OPTIONAL)
    device: str | None = field(default=None, metadata=OPTIONAL)
    processes: int | None = field(default=None, metadata=OPTIONAL)
    versions: dict[str, str] | None = field(default=None, metadata=OPTIONAL)
    wall_s_this_run: float | None = field(default=None, metadata=OPTIONAL)

    @property
    def described(self) -> str:
        """The model's description, else its name."""
        return self.model_description or self.model


@dataclass(frozen=True)
class LayoutRun(Record):
    """One (layout, training-set size) run of a layout study, scored after training."""

    layout: str
    model: str
    size: int
    parameters: int
    macs: int
    steps: int
    epochs: int
    train_loss: float
    train_top1: float
    train_loss_augmented: float
    test_loss: float
    test_top1: float
    wall_s: float
    command: str | None
    study_command: str | None


@dataclass(frozen=True)
class LayoutStudy(Record):
    """A layout study (:func:`analysis.load_layouts`): its settings (the recipe as
    :class:`coatnet.training.layouts.LayoutStudySettings` wrote it) and one record per run.

    Attributes:
        settings: the recipe every run shares (layouts, sizes, steps, batch size, data ...).
        runs: one :class:`LayoutRun` per (layout, size).
        command: the command line, or None.
        device: where it ran.
        processes: how many processes ran it.
        wall_s: the training time summed over the runs, in seconds.
        versions: Python, torch and coatnet.

    Examples:
        >>> import analysis
        >>> study = analysis.load_layouts()
        >>> study.runs[0].layout, study.settings["steps"], len(study.runs)
        ('C-C-C-C', 600, 15)
    """

    settings: dict[str, Any]
    runs: tuple[LayoutRun, ...] = field(metadata=_rows(LayoutRun))
    command: str | None = None
    device: str | None = field(default=None, metadata=OPTIONAL)
    processes: int | None = field(default=None, metadata=OPTIONAL)
    wall_s: float | None = field(default=None, metadata=OPTIONAL)
    versions: dict[str, str] | None = field(default=None, metadata=OPTIONAL)

    def by_layout(self) -> dict[str, list[LayoutRun]]:
        """The runs of each layout, in the study's order, each layout's by training-set size."""
        found: dict[str, list[LayoutRun]] = {}
        for run in self.runs:
            found.setdefault(run.layout, []).append(run)
        return {layout: sorted(runs, key=lambda r: r.size) for layout, runs in found.items()}

    @property
    def sizes(self) -> list[int]:
        """Every training-set size of the runs, smallest first."""
        return sorted({r.size for r in self.runs})
