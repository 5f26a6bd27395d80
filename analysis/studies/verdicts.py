"""Which explanation to trust: a study's faithfulness and sanity checks joined, a verdict per explanation.

Per row of study.json (the (method, stage) rows of :func:`analysis.explain.faithfulness.method_rows`),
three questions, each answered from the study's means over its images, with the evidence kept:

- **faithful**: the model's own behaviour supports the map: its ROAD score (mean of the two orders) is
  above the highest the random map reached over its seeds, and it deletes faster (a lower deletion AUC)
  or inserts faster (a higher insertion AUC) than any seed of the random map;
- **depends on the model** (Adebayo et al. 2018): once every part is randomised (the cascading test's
  last step), the map's Spearman rank correlation of |map| with the trained model's is below
  :data:`ALIKE`;
- **depends on the class** (Sixt et al. 2020): the map for another class has a Spearman rank
  correlation of |map| with the map for the predicted class below :data:`ALIKE`.

The verdict is ``trust`` when all three hold, else the ones that fail, named; a question the study did not
measure is ``None`` and named as unmeasured. The random map is the reference, not a candidate: its verdict
is ``the floor``.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.explain.faithfulness import row_name
from analysis.studies.summaries import FaithfulnessRow, SanityRow, Study

ALIKE = 0.5  # a Spearman rank correlation of |map| at least this high: the map has not changed
VERDICT_RULE = (
    "faithful: ROAD above every random seed's, and deletion or insertion beyond every seed's; depends on "
    f"the weights: a Spearman rank correlation of |map| with the trained map below {ALIKE} once every part "
    f"is randomised; depends on the class: the same below {ALIKE} against another class's map"
)
"""The rule :func:`explanation_verdicts` applies, in one sentence for the reader of a verdict table.

Examples:
    >>> import analysis
    >>> analysis.VERDICT_RULE.split(";")[0]
    "faithful: ROAD above every random seed's, and deletion or insertion beyond every seed's"
"""


@dataclass(frozen=True)
class Verdict:
    """One explanation's verdict and its evidence (means over the study's images).

    Attributes:
        method: the row's method.
        stage: Grad-CAM's stage, else None.
        name: both as one label.
        faithful: ROAD and deletion or insertion beyond every random seed's (module docstring); None
            where the study did not measure it.
        model_dependent: whether the map changes once the weights are randomised; None where unmeasured.
        class_dependent: whether the map changes for another class; None where unmeasured.
        road: the map's ROAD score.
        deletion_auc: the area under its deletion curve.
        insertion_auc: the area under its insertion curve.
        random_road_high: the random map's best ROAD over its seeds.
        random_deletion_low: the random map's lowest deletion area over its seeds.
        random_insertion_high: the random map's highest insertion area over its seeds.
        after_head: Spearman rank correlation of |map| with the trained model's map once the head is
            randomised (cascading).
        after_all: the same once every part is randomised.
        random_logit: the same between the maps for the predicted and another class.
        verdict: ``trust``, ``the floor`` (the random map), or what fails (``not faithful; ...``).

    Examples:
        >>> import analysis
        >>> study = analysis.load_study("study-demo-pre")
        >>> verdicts = {v.name: v for v in analysis.explanation_verdicts(study)}
        >>> verdicts["rollout"].verdict, verdicts["rollout"].class_dependent
        ('not faithful; does not depend on the class', False)
    """

    method: str
    stage: str | None
    name: str
    faithful: bool | None
    model_dependent: bool | None
    class_dependent: bool | None
    road: float | None
    deletion_auc: float | None
    insertion_auc: float | None
    random_road_high: float | None
    random_deletion_low: float | None
    random_insertion_high: float | None
    after_head: float | None
    after_all: float | None
    random_logit: float | None
    verdict: str


def explanation_verdicts(study: Study) -> list[Verdict]:
    """The verdict of every explanation of a study (module docstring), in the order of its rows: those of
    ``faithfulness`` where it has them, else of ``sanity``. Empty when it measured neither.

    Args:
        study: a study's summary (:func:`load_study`).

    Returns:
        One :class:`Verdict` per explanation.

    Examples:
        >>> import analysis
        >>> verdicts = analysis.explanation_verdicts(analysis.load_study("study-demo-pre"))
        >>> verdicts[0].name, verdicts[0].verdict
        ('random', 'the floor')
    """
    faith: dict[tuple[str, str | None], FaithfulnessRow] = {
        (r.method, r.stage): r for r in study.faithfulness or ()
    }
    sanity: dict[tuple[str, str | None], dict[tuple[str, str | None], SanityRow]] = {}
    for entry in study.sanity or ():
        sanity.setdefault((entry.method, entry.stage), {})[(entry.test, entry.randomised)] = entry
    rows = list(faith) or list(sanity)
    random = faith.get(("random", None))
    ranges = random.spread if random is not None else {}
    out = []
    for method, stage in rows:
        found, checks = faith.get((method, stage)), sanity.get((method, stage), {})
        logit = checks.get(("random_logit", None))
        road_high = _top(ranges.get("road"))
        deletion_low = _bottom(ranges.get("deletion_auc"))
        insertion_high = _top(ranges.get("insertion_auc"))
        faithful = None
        if found is not None and None not in (road_high, deletion_low, insertion_high):
            faithful = found.road > road_high and (
                found.deletion_auc < deletion_low or found.insertion_auc > insertion_high
            )
        head, stem = checks.get(("cascading", "head")), checks.get(("cascading", "S0"))  # S0: every part
        after_head = head.spearman_abs if head else None
        after_all = stem.spearman_abs if stem else None
        random_logit = logit.spearman_abs if logit else None
        model_dependent = None if after_all is None else after_all < ALIKE
        class_dependent = None if random_logit is None else random_logit < ALIKE
        out.append(
            Verdict(
                method=method, stage=stage, name=row_name(method, stage), faithful=faithful,
                model_dependent=model_dependent, class_dependent=class_dependent,
                road=found.road if found else None,
                deletion_auc=found.deletion_auc if found else None,
                insertion_auc=found.insertion_auc if found else None,
                random_road_high=road_high, random_deletion_low=deletion_low,
                random_insertion_high=insertion_high, after_head=after_head, after_all=after_all,
                random_logit=random_logit,
                verdict=_verdict(method, faithful, model_dependent, class_dependent),
            )
        )  # fmt: skip
    return out


def _verdict(method: str, faithful, model_dependent, class_dependent) -> str:
    if method == "random":
        return "the floor"
    answers = (
        (faithful, "not faithful", "faithfulness"),
        (model_dependent, "does not depend on the weights", "model randomisation"),
        (class_dependent, "does not depend on the class", "random logit"),
    )
    failed = [fails for answer, fails, _ in answers if answer is False]
    unmeasured = [what for answer, _, what in answers if answer is None]
    if not failed and not unmeasured:
        return "trust"
    said = "; ".join(failed) if failed else "passes what was measured"
    return said + (f" ({', '.join(unmeasured)} not measured)" if unmeasured else "")


def _top(pair) -> float | None:
    return None if not pair else float(max(pair))


def _bottom(pair) -> float | None:
    return None if not pair else float(min(pair))
