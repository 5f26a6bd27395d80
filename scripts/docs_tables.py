"""The tables of the docs that are generated whole from results files: ``<!-- fig-table NAME SRC... -->``.

Each generator takes the marker's sources, read (a JSON file as its object, a model card as its table of
key and value), and returns the markdown table. ``scripts/docs_figures.py`` writes it between the markers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

TABLES: dict[str, Callable[..., str]] = {}


def table(function: Callable[..., str]) -> Callable[..., str]:
    """Register a generator under its name, with dashes (``timm_speed`` -> ``timm-speed``)."""
    TABLES[function.__name__.replace("_", "-")] = function
    return function


def markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(cell: dict, spread: bool = True) -> str:
    """``1.43x (1.27-1.60)``: a median ratio and, with ``spread``, its range over the rounds."""
    low, high = cell["spread"]
    return f"{cell['ratio']:.2f}x" + (f" ({low:.2f}-{high:.2f})" if spread else "")


@table
def timm_speed(record: dict) -> str:
    """benchmarks/timm_speed.py: one row per model, each configuration's median ratio and spread."""
    rows = record["figures"]["rows"]
    columns = list(dict.fromkeys(k for row in rows for k in row["cells"]))
    body = [[r["arch"], *(ratio(r["cells"][c]) for c in columns), r["ours_gflops_best"]] for r in rows]
    return markdown(["model", *columns, "best GFLOP/s"], body)


@table
def model_speed(record: dict) -> str:
    """benchmarks/model_speed.py: per model, each mode and batch's median ratio, spread and lowest round."""
    rows = record["figures"]["rows"]
    columns = list(dict.fromkeys(k for row in rows for k in row["cells"]))
    body = [[r["arch"], *(ratio(r["cells"][c]) for c in columns)] for r in rows]
    lowest = min(min(cell["rounds"]) for row in rows for cell in row["cells"].values())
    return markdown(["model", *columns], body) + f"\n\nLowest round of any cell: {lowest:.2f}x."


@table
def timm_compiled(*records: dict) -> str:
    """benchmarks/timm_speed.py --compile: both compiled, beside the same run's other comparisons."""
    rows = [row for record in records for row in record["figures"]["rows"]]
    others = ("default bs8", "both channels_last bs8", "training step bs8")
    body = [
        [r["arch"], ratio(r["cells"]["both compiled bs8"]), *(ratio(r["cells"][c], False) for c in others)]
        for r in rows
    ]
    header = ["model", "both compiled bs8", "in the same run: default bs8", *others[1:]]
    return markdown(header, body)


ANALYSIS_COLUMNS = ("plain forward", "inference build", "attention weights", "attention_maps")


@table
def analysis_vs_timm(record: dict) -> str:
    """benchmarks/analysis_speed.py --vs-timm: timm's time / ours at batch 1 and 8."""
    figures = record["figures"]
    cells = figures["table"]
    body = []
    for arch in figures["archs"]:
        pairs = [f"{cells[f'{arch} bs1 {c}']['ratio']:.2f}x / {cells[f'{arch} bs8 {c}']['ratio']:.2f}x"
                 for c in ANALYSIS_COLUMNS]  # fmt: skip
        body.append([arch, *pairs, f"{cells[f'{arch} bs1 Grad-CAM S3']['ratio']:.2f}x"])
    header = ["model", *(f"{c} bs1 / bs8" for c in ANALYSIS_COLUMNS), "Grad-CAM S3 bs1"]
    return markdown(header, body)


@table
def analysis_without_peer(record: dict) -> str:
    """benchmarks/analysis_speed.py --vs-timm: the gradient analyses without a peer, ours alone."""
    alone = record["figures"]["without_peer"]
    names = list(next(iter(alone.values())))
    body = [
        [arch, *(f"{row[n]['ms']:.0f} ms ({row[n]['x forward']:.1f}x forward)" for n in names)]
        for arch, row in alone.items()
    ]
    return markdown(["model (ours alone, batch 1)", *names], body)


def _counts(record: dict, prefix: str) -> list[dict]:
    return [r for r in record["figures"]["rows"] if r["model"].startswith(prefix)]


@table
def model_counts_coatnet(record: dict) -> str:
    """benchmarks/model_counts.py: CoAtNet-0..7 against Table 3 (and 12), at the paper's sizes."""
    body = []
    for r in _counts(record, "coatnet_"):
        at = "" if r["input"] == 224 else f" @{r['input']}"
        big = r["params"] >= 1e9
        params = f"{r['params'] / 1e9:.2f}B ({r['paper_params'] / 1e9:.2f}B)" if big else (
            f"{r['params'] / 1e6:.2f}M ({r['paper_params'] / 1e6:.0f}M)")  # fmt: skip
        macs = f"{r['macs'] / 1e9:.2f}G{at} ({r['paper_macs'] / 1e9:g}B)"
        body.append([r["model"], params, f"{r['params_vs_paper']:+.1%}", macs, f"{r['macs_vs_paper']:+.1%}"])
    return markdown(["model", "params (paper)", "vs paper", "MACs (paper)", "vs paper"], body)


@table
def model_counts_maxvit(record: dict) -> str:
    """benchmarks/model_counts.py: MaxViT-T..XL against the paper's Tables 1 and 2."""
    names = {"tiny": "T", "small": "S", "base": "B", "large": "L", "xlarge": "XL"}
    body = []
    for r in _counts(record, "maxvit_"):
        size = names[r["model"].split("_")[1]]
        body.append([
            f"MaxViT-{size}", r["input"], f"{r['params'] / 1e6:.2f}M", f"{r['paper_params'] / 1e6:.0f}M",
            f"{r['params_vs_paper']:+.1%}", f"{r['macs'] / 1e9:.2f}G", f"{r['paper_macs'] / 1e9:g}G",
            f"{r['macs_vs_paper']:+.1%}",
        ])  # fmt: skip
    return markdown(["model", "input", "params", "paper", "vs paper", "MACs", "paper", "vs paper"], body)


@table
def layouts_results(study: dict) -> str:
    """analysis/studies/results/layouts/layouts.json: per layout, each size's training loss and test top-1."""
    runs = study["runs"]
    sizes = study["settings"]["sizes"]
    body = []
    for layout in study["settings"]["layouts"]:
        mine = {r["size"]: r for r in runs if r["layout"] == layout}
        first = mine[sizes[0]]
        cells = [f"{mine[s]['train_loss']:.3f} / {mine[s]['test_top1']:.2%}" for s in sizes]
        body.append([layout, f"{first['parameters'] / 1e3:.0f}k", f"{first['macs'] / 1e6:.1f}M", *cells])
    header = ["layout", "parameters", "MACs", *(f"{s // 1000}k: loss / top-1" for s in sizes)]
    return markdown(header, body)


def _delta(study: dict, block: str, kind: str) -> float:
    found = [i for i in study["interventions"] if i["block"] == block and i["kind"] == kind]
    if len(found) != 1:
        raise KeyError(f"{len(found)} interventions {kind} {block}")
    return 100 * found[0]["delta_top1"]


def _points(values: Sequence[float]) -> str:
    return " / ".join(f"{v:+.2f}" for v in values)


def _top_head(study: dict) -> str:
    heads = [i for i in study["interventions"] if i["kind"] == "knockout" and len(i["heads"]) == 1]
    worst = min(heads, key=lambda i: i["delta_top1"])
    return f"{worst['block']} h{worst['heads'][0]}: {100 * worst['delta_top1']:.2f}"


ATTENTION_KINDS = {  # kind: its row's label in the demo studies' table
    "content_only": "`content_only` S3.0 / S3.1 / S4.0: the bias removed",
    "bias_only": "`bias_only` S3.0 / S3.1 / S4.0: position alone",
    "uniform": "`uniform` S3.0 / S3.1 / S4.0",
    "swap_normalization": "`swap_normalization` S3.0 / S3.1 / S4.0 (untrained)",
}


@table
def study_interventions(pre: dict, post: dict) -> str:
    """Two demo studies (study.json): each attention intervention's change of top-1, in points."""
    studies = (pre, post)
    body = [
        [label, *(_points([_delta(s, b, kind) for b in ("S3.0", "S3.1", "S4.0")]) for s in studies)]
        for kind, label in ATTENTION_KINDS.items()
    ]
    body.append(["the most important single head (knockout)", *(_top_head(s) for s in studies)])
    convolution = [
        f"{_delta(s, 'S1.0', 'zero_branch'):.2f} / {_delta(s, 'S1.0', 'no_se'):.2f}" for s in studies
    ]
    body.append(["`zero_branch` S1.0 / `no_se` S1.0", *convolution])
    return markdown(["intervention (change of top-1, points)", pre["model"], post["model"]], body)


@table
def study_partitions(study: dict) -> str:
    """A MaxViT study (study.json): per block, block attention / grid attention."""
    blocks = list(dict.fromkeys(i["block"].rsplit(".", 1)[0] for i in study["interventions"]
                                if i["block"].endswith((".block", ".grid"))))  # fmt: skip
    kinds = {"content_only": "`content_only`: the bias removed", "uniform": "`uniform`",
             "swap_normalization": "`swap_normalization` (untrained)"}  # fmt: skip
    body = [
        [label, *(f"{_delta(study, f'{b}.block', kind):+.2f} / {_delta(study, f'{b}.grid', kind):+.2f}"
                  for b in blocks)]
        for kind, label in kinds.items()
    ]  # fmt: skip
    distances = []
    for b in blocks:
        means = [
            sum(h["mean_distance_px"]["effective"]["mean"] for h in hs) / len(hs)
            for hs in ([h for h in study["heads"] if h["block"] == f"{b}.{p}"] for p in ("block", "grid"))
        ]
        distances.append(f"{means[0]:.1f} / {means[1]:.1f}")
    body.append(["mean distance of the heads, px", *distances])
    return markdown(["intervention (change of top-1, points)", *(f"{b} block / grid" for b in blocks)], body)


@table
def probes(record: dict) -> str:
    """A model's probes (probes.json): each block's test top-1, and the model's own."""
    kinds = {"stem": "(stem)", "C": "C", "T": "T"}
    header = [
        "block",
        *(f"{r['block']} {kinds.get(r['kind'], r['kind'])}" for r in record["rows"]),
        "the model",
    ]
    return markdown(header, [["test top-1", *(f"{r['test_top1']:.3f}" for r in record["rows"]),
                             f"{record['model_top1']:.3f}"]])  # fmt: skip


@table
def faithfulness(pre: dict, post: dict) -> str:
    """Two studies' faithfulness (study.json): deletion and insertion AUC and ROAD per method, the random
    map's range over its seeds in brackets."""
    scores = ("deletion_auc", "insertion_auc", "road")

    def cells(study: dict, method: str, stage: str | None) -> list[str]:
        row = next(r for r in study["faithfulness"] if (r["method"], r["stage"]) == (method, stage))
        spread = row.get("seed_range", {})
        return [f"{row[k]:.3f}" + (f" ({spread[k][0]:.3f}-{spread[k][1]:.3f})" if k in spread else "")
                for k in scores]  # fmt: skip

    body = [
        [r["method"] + (f" {r['stage']}" if r["stage"] else ""), *cells(pre, r["method"], r["stage"]),
         *cells(post, r["method"], r["stage"])]
        for r in pre["faithfulness"]
    ]  # fmt: skip
    header = ["method", "pre: deletion AUC", "insertion AUC", "ROAD", "post: deletion AUC", "insertion AUC",
              "ROAD"]  # fmt: skip
    return markdown(header, body)


@table
def probes_layouts(*records: dict) -> str:
    """The layout models' probes (probes.json each): every block's test top-1 and kind, and the first block
    within 0.02 of the last block's probe."""
    blocks = [r["block"] for r in records[0]["rows"]]
    body = []
    for record in records:
        name = record["model"].removeprefix("layout-").upper().replace("VIT-REL", "ViT_REL")
        rows = record["rows"]
        cells = [f"{r['test_top1']:.3f}" + ("" if r["kind"] == "stem" else f" {r['kind']}") for r in rows]
        readable = next(r["block"] for r in rows if r["test_top1"] >= rows[-1]["test_top1"] - 0.02)
        body.append([f"{name} ({record['model_top1']:.3f})", *cells, readable])
    return markdown(["layout (study top-1)", *blocks, "readable at"], body)
