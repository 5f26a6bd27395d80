"""``coatnet study``: interventions and per-head statistics over a dataset, resumable and shardable.

The images are taken in fixed batches (``--batch-size``, 256 as ``coatnet eval``); each batch's per-image
measurements (:func:`analysis.studies.study.measure_batch`) are written to ``OUT/batches/NNNNN.npz``
as soon as it is done, atomically. ``--resume`` (after Ctrl-C, SIGKILL or a crash) skips the batches already
written and ends with the same result as an unbroken run. Under ``torchrun`` each process takes every
``world``-th batch; the first process then merges all batches with :func:`merge_study` (the one merge
function, also used by a single process), so any number of processes gives one process's result. An OUT that
holds a study is refused without ``--resume``; with it, a finished study gets only the parts it lacks
(``--sanity``).

Writes ``OUT/study.json`` (the summary, the model, data, command, versions, device and wall time),
``OUT/study.npz`` (the per-image arrays and the receptive fields) and ``OUT/study.html`` (offline).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import coatnet
from analysis.core.inputs import preprocessing_of
from analysis.core.models import describe, load_model
from analysis.explain.faithfulness import protocol as faithfulness_protocol
from analysis.report.html import html_page
from analysis.report.sections import study_sections
from analysis.studies.ledger import ledger_protocol, measure_ledger, summarise_ledger
from analysis.studies.sanity import chunks, measure_sanity, sanity_protocol, summarise_sanity
from analysis.studies.study import (
    CONVENTIONS,
    StudyPlan,
    concatenate,
    measure_batch,
    study_plan,
    summarise,
)
from analysis.studies.summaries import Study
from coatnet.cli.options import (
    add_attention_arg,
    add_command,
    add_compute_args,
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

DATA_HELP = "fashion-mnist, cifar10:DIR, or an image folder (class sub-folders), as for coatnet eval"


class StudyError(ValueError):
    """A study that cannot start or finish as asked (the message says what to do)."""


# what a study's folder holds once it started: its batches, its sanity checks, its summary
STUDY_FILES = ("batches", "sanity", "study.json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "study", help="interventions and head statistics over a dataset",
        description="Knock out every head, keep only content or only position in every attention block, "
        "remove every MBConv branch and squeeze-excitation, over a dataset; with per-head attention "
        "distance and entropy and per-stage statistics. Writes OUT/study.json, study.npz and study.html. "
        "Resumable (--resume, which also adds --sanity to a finished study) and runs under torchrun.",
        examples=["coatnet study --model demo-pre --limit 1000 --out runs/study",
                  "coatnet study --model demo-pre --limit 1000 --out runs/study --resume --sanity 200"],
    )  # fmt: skip
    add_model_arg(p, default="demo-pre")
    add_attention_arg(p)
    p.add_argument("--data", default="fashion-mnist", help=DATA_HELP)
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split to study")
    add_limit_arg(p)
    p.add_argument("--out", required=True, help="output folder")
    add_resume_arg(p, what="study")
    p.add_argument(
        "--faithfulness", type=int, nargs="?", const=500, default=0, metavar="N",
        help="also measure how faithful every explanation is (deletion, insertion, ROAD) on the first N "
        "images (default 500)",
    )  # fmt: skip
    p.add_argument(
        "--sanity", type=int, nargs="?", const=200, default=0, metavar="N",
        help="also run the sanity checks (model randomisation, random logit) and the robustness of every "
        "explanation on the first N images (default 200); with --resume, added to a finished study: only "
        "what is missing is computed",
    )  # fmt: skip
    p.add_argument(
        "--ledger", type=int, nargs="?", const=1000, default=0, metavar="N",
        help="also measure the layer-wise relevance ledger (AttnLRP and CP-LRP: where each prediction's "
        "relevance flows, part by part) on the first N images (default 1000); with --resume, added to a "
        "finished study: only what is missing is computed",
    )  # fmt: skip
    p.add_argument(
        "--sanity-only", action="store_true",
        help="only the sanity checks and robustness (--sanity N images, default 200), no interventions",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (and per file in OUT)")
    p.add_argument(
        "--max-rows", type=int, help="rows per intervention pass (default: 64 on CPU, 4096 on CUDA)"
    )
    add_run_arguments(p, device_help="default: CUDA when present (bf16 logits there)")
    p.set_defaults(func=cmd_study)


def add_run_arguments(p: argparse.ArgumentParser, *, device_help: str = "default: CUDA when present") -> None:
    """``--device``, ``--threads``, ``--workers`` and ``--quiet``, as the dataset commands (study, probe)
    take them."""
    add_compute_args(p, device_help=device_help)
    p.add_argument("--workers", type=int, default=2, help="image-decoding processes for folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_study(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = Path(args.out)
    holds = check_output(out, resume=args.resume, what="a study", markers=STUDY_FILES)
    device = resolve_device(args.device)
    hub_answers(args.model)
    rank, world = distributed.init(str(device))
    if device.type == "cuda" and world > 1:  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    model = load_model(args.model, attention=args.attention, device=device)
    pre = preprocessing_of(model)
    dataset = open_for_model(args.data, args.split, model, pre)
    if args.limit:
        dataset = dataset.subset(args.limit)
    settings = {
        "model": args.model, "model_description": describe(model), "data": args.data, "split": args.split,
        "limit": args.limit, "n_images": len(dataset), "batch_size": args.batch_size,
        "faithfulness_images": min(max(args.faithfulness, 0), len(dataset)),
    }  # fmt: skip
    sanity = min(max(args.sanity or (SANITY_DEFAULT if args.sanity_only else 0), 0), len(dataset))
    ledger = min(max(args.ledger, 0), len(dataset))
    finished = holds and not args.sanity_only and _finished(out, settings)  # not to be run again

    def ledger_part(**kept) -> int:  # after the other parts: the ledger of the first images
        return _ledger_part(args, out, model, dataset, pre, device, rank, world, ledger, started, **kept)

    if args.sanity_only or (sanity and finished):
        code = _sanity_part(args, out, model, dataset, pre, device, rank, world, settings, sanity, started,
                            finished=finished, finish=not ledger)  # fmt: skip
        return code if code or not ledger else ledger_part(resumed=holds)
    if finished:
        if ledger:
            return ledger_part(finished=len(dataset))
        say_kept("coatnet study", out, f"the finished study of {len(dataset)} images; nothing to compute")
        distributed.finish(world)
        return 0
    if rank == 0:
        _claim(out, settings, resume=args.resume)
    distributed.at("the study's folder claimed")
    distributed.wait_for_peers("folder claimed", world)  # each process loaded the model and data first
    plan = study_plan(model, pre.size, faithfulness=settings["faithfulness_images"] > 0)
    batches = math.ceil(len(dataset) / args.batch_size)
    mine = [i for i in range(batches) if i % world == rank]
    todo = [i for i in mine if not _batch_path(out, i).exists()]
    if holds:
        done = sum(_batch_path(out, i).exists() for i in range(batches))
        say_kept("coatnet study", out, f"{done} of {batches} batches measured")
    runner = for_inference(model)
    cuda = device.type == "cuda"
    max_rows = args.max_rows or (4096 if cuda else 64)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    bar = tqdm(total=len(mine) * args.batch_size, initial=(len(mine) - len(todo)) * args.batch_size,
               desc=f"study {args.model}", unit="img", disable=args.quiet or rank != 0)  # fmt: skip
    try:
        for i in todo:
            indices = torch.arange(i * args.batch_size, min(len(dataset), (i + 1) * args.batch_size))
            began = time.perf_counter()
            parts = []
            measured = max(0, settings["faithfulness_images"] - i * args.batch_size)

            def progress(done: int, of: int) -> None:
                bar.set_postfix_str(f"faithfulness {done}/{of}", refresh=True)

            for images, labels in iterate_batches(dataset, indices, args.batch_size, workers=args.workers):
                if len(labels):
                    x = normalize(prepare_batch(images, pre, device=device), pre)
                    parts.append(measure_batch(model, runner, x, labels, plan, max_rows=max_rows,
                                               autocast=autocast, faithfulness_images=measured,
                                               progress=progress))  # fmt: skip
            arrays = concatenate(parts) if parts else {}
            arrays["seconds"] = np.array(time.perf_counter() - began)
            atomic_write(_batch_path(out, i), lambda tmp, a=arrays: _save_npz(tmp, a))
            bar.update(len(indices))
    except KeyboardInterrupt:
        print(f"interrupted: finished batches are kept; continue with --out {out} --resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    # another process may still be measuring its batches (minutes to hours): wait while it beats
    distributed.at("every batch measured")
    distributed.wait_for_peers("batches measured", world)
    if rank == 0:
        meta = {"command": _command(), "device": str(device), "processes": world,
                "wall_s_this_run": round(time.perf_counter() - started, 1)}  # fmt: skip
        path = merge_study(out, model, plan, settings, batches, meta)
        print(f"wrote {path}, study.npz and study.html in {out} ({len(dataset)} images)")
    distributed.wait_for_peers("study merged", world)  # the first process merges every batch
    if sanity:
        code = _sanity_part(args, out, model, dataset, pre, device, rank, world, settings, sanity, started,
                            resumed=holds, finish=not ledger)  # fmt: skip
        return code if code or not ledger else ledger_part(resumed=holds)
    if ledger:
        return ledger_part(resumed=holds)
    distributed.finish(world)
    return 0


SANITY_DEFAULT = 200
SANITY_CHUNK = 4  # images per file: an interrupted sanity part loses at most this many images' work
MAIN_ONLY = ("batch_size", "faithfulness_images")  # settings of the interventions' part alone


def _finished(out: Path, settings: dict) -> bool:
    """Whether OUT holds this study's finished summary (study.json with the same settings): a shipped
    study folder holds it without its batches."""
    path = out / "study.json"
    if not path.exists():
        return False
    found = json.loads(path.read_text())
    if "baseline" not in found:  # a sanity-only study: the interventions are still to run
        return False
    changed = sorted(k for k in settings if found.get(k) != settings[k])
    if changed:
        raise StudyError(f"{out} holds a different study ({', '.join(changed)} differ): use another --out")
    return True


def _sanity_part(
    args, out, model, dataset, pre, device, rank, world, settings, count, started, *, finished: bool = False,
    resumed: bool = False, finish: bool = True,
) -> int:  # fmt: skip
    """The sanity checks and robustness of the first ``count`` images, in files of
    :data:`SANITY_CHUNK` images under OUT/sanity/ (only the missing ones are computed, under torchrun each
    process every ``world``-th), merged into OUT/study.json, study.npz and study.html. ``finished``: added
    to a finished study; ``resumed``: after the interventions of a resumed one (both say what they kept)."""
    folder = out / "sanity"
    wanted = {k: v for k, v in settings.items() if k not in MAIN_ONLY and k != "n_images"}
    wanted["protocol"] = sanity_protocol(model)
    if rank == 0:
        if (out / "study.json").exists():  # the sanity part of this study, never of another one in OUT
            found = json.loads((out / "study.json").read_text())
            changed = sorted(
                k for k in settings if k not in MAIN_ONLY and k in found and found[k] != settings[k]
            )
            if changed:
                raise StudyError(
                    f"{out} holds a different study ({', '.join(changed)} differ): use another --out"
                )
        _claim_part(out, folder, wanted, "the sanity checks")
    distributed.wait_for_peers("sanity folder claimed", world)
    pieces = chunks(count, SANITY_CHUNK)
    mine = [k for k in range(len(pieces)) if k % world == rank]
    todo = [k for k in mine if not _has_chunk(folder, k, pieces[k][1])]
    if finished or resumed or (args.resume and folder.exists()):
        have = sum(n for k, (_, n) in enumerate(pieces) if _has_chunk(folder, k, n))
        study = f"the finished interventions of {settings['n_images']} images, " if finished else ""
        say_kept("coatnet study", out, f"{study}the sanity checks of {have} of {count} images")
        if have == count and _sanity_merged(out, count):  # nothing to compute, nothing to write again
            if finish:
                distributed.finish(world)
            return 0
    total, initial = sum(pieces[k][1] for k in mine), sum(pieces[k][1] for k in mine if k not in todo)
    bar = tqdm(total=total, initial=initial, desc=f"sanity {args.model}", unit="img",
               disable=args.quiet or rank != 0)  # fmt: skip
    try:
        for k in todo:
            first, n = pieces[k]
            began = time.perf_counter()
            parts, start = [], bar.n

            def advance(share: float, start: float = start, n: int = n) -> None:
                bar.update(round(start + share * n, 2) - bar.n)

            for images, labels in iterate_batches(dataset, torch.arange(first, first + n), n,
                                                  workers=args.workers):  # fmt: skip
                if len(labels):
                    x = normalize(prepare_batch(images, pre, device=device), pre)
                    found = measure_sanity(model, x, progress=advance)
                    parts.append({"sanity_labels": labels.numpy(), **found})
            arrays = concatenate(parts) if parts else {}
            arrays.update({"count": np.array(n), "seconds": np.array(time.perf_counter() - began)})
            atomic_write(_chunk_path(folder, k), lambda tmp, a=arrays: _save_npz(tmp, a))
            bar.update(start + n - bar.n)
    except KeyboardInterrupt:
        print(
            f"interrupted: finished images are kept; continue with --out {out} --resume",
            file=sys.stderr,
        )
        return 130
    finally:
        bar.close()
    distributed.at("every sanity image measured")
    distributed.wait_for_peers("sanity measured", world)
    if rank == 0:
        wall = round(time.perf_counter() - started, 1)
        meta = {"sanity_command": _command(), "sanity_wall_s_this_run": wall}
        base = {**settings, "device": str(device), "attention": model.attention_mode}
        path = merge_sanity(out, model, base, count, meta)
        print(f"wrote the sanity checks of {count} images to {path}, study.npz and study.html in {out}")
    distributed.wait_for_peers("sanity merged", world)
    if finish:  # else another part follows
        distributed.finish(world)
    return 0


def _claim_part(out: Path, folder: Path, wanted: dict, what: str) -> None:
    """Make ``folder`` the files of one part of OUT's study (``what``, its settings ``wanted``): a new
    one, or the same study's; another study's is refused in one line."""
    recorded = folder / "settings.json"
    if not recorded.exists():
        write_text(recorded, json.dumps(wanted, indent=1) + "\n")
        return
    found = json.loads(recorded.read_text())
    if found != wanted:
        changed = sorted(k for k in wanted if found.get(k) != wanted[k])
        raise StudyError(
            f"{out} holds {what} of a different study ({', '.join(changed)} differ): use another --out"
        )


def _sanity_merged(out: Path, count: int) -> bool:
    """Whether OUT/study.json already holds the sanity checks of exactly ``count`` images."""
    path = out / "study.json"
    return path.exists() and json.loads(path.read_text()).get("sanity_images") == count


SANITY_KEYS = ("sanity", "robustness")  # study.json keys and study.npz arrays of the sanity part
KEPT_PARTS = (*SANITY_KEYS, "ledger")  # the parts a study's interventions, merged again, keep


def merge_sanity(out: Path, model, settings: dict, count: int, meta: dict) -> Path:
    """Merge OUT/sanity/*.npz (the first ``count`` images) into study.json (``sanity``, ``robustness``,
    ``sanity_protocol``; a new study.json for a sanity-only study), study.npz (the ``sanity_*`` arrays
    and ``robustness_values``) and study.html. Raises :class:`StudyError` if images are missing."""
    folder = out / "sanity"
    parts, seconds = [], 0.0
    for k, (_, n) in enumerate(chunks(count, SANITY_CHUNK)):
        path = _chunk_path(folder, k)
        if not _has_chunk(folder, k, n):
            raise StudyError(f"{out}: the sanity checks of images {k * SANITY_CHUNK}.. are missing; run the "
                             "same command with --resume")  # fmt: skip
        with np.load(path) as found:
            arrays = {key: found[key] for key in found.files}
        seconds += float(arrays.pop("seconds"))
        arrays.pop("count")
        if arrays:
            parts.append({key: v[:n] for key, v in arrays.items()})
    if not parts:
        raise StudyError(f"{out}: no image could be read; check --data")
    arrays = concatenate(parts)
    sanity, robust = summarise_sanity(model, arrays)
    path = out / "study.json"
    if path.exists():
        study = json.loads(path.read_text())
    else:  # a sanity-only study
        study = {k: v for k, v in settings.items() if k not in MAIN_ONLY}
        study["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                             "coatnet": coatnet.__version__}  # fmt: skip
    study.update(meta)
    study.update({
        "sanity_images": int(arrays["sanity_values"].shape[0]), "sanity_compute_s": round(seconds, 1),
        "sanity_protocol": sanity_protocol(model), "sanity": sanity, "robustness": robust,
    })  # fmt: skip
    npz = out / "study.npz"
    kept = {}
    if npz.exists():
        with np.load(npz) as found:
            kept = {key: found[key] for key in found.files if key not in arrays}
    atomic_write(npz, lambda tmp: _save_npz(tmp, {**kept, **arrays}))
    summary = Study.from_json(study, where=str(path))  # written as read back: every key a known one
    write_text(path, json.dumps(summary.to_json(), indent=1) + "\n")
    title = f"coatnet study: {summary.model_description}"
    write_text(out / "study.html", html_page(title, study_sections(summary)))
    return path


LEDGER_CHUNK = 64  # images per file of the ledger part


def _ledger_part(
    args, out, model, dataset, pre, device, rank, world, count, started, *, finished: int = 0,
    resumed: bool = False,
) -> int:  # fmt: skip
    """The relevance ledger of the first ``count`` images (:mod:`analysis.studies.ledger`), in files of
    :data:`LEDGER_CHUNK` images under OUT/ledger/ (only the missing ones are computed, under torchrun each
    process every ``world``-th), merged into OUT/study.json (``ledger``), study.npz and study.html. A study
    must be there (the ledger is a part of one); ``finished``: the images of a finished study it is added
    to; ``resumed``: after another part of a resumed one (both say what they kept)."""
    folder = out / "ledger"
    wanted = {"model": args.model, "model_description": describe(model), "data": args.data,
              "split": args.split, "protocol": ledger_protocol()}  # fmt: skip
    if rank == 0:
        if not (out / "study.json").exists():
            raise StudyError(f"{out} holds no study: run the study first, or give --ledger with it")
        _claim_part(out, folder, wanted, "the ledger")
    distributed.wait_for_peers("ledger folder claimed", world)
    pieces = chunks(count, LEDGER_CHUNK)
    mine = [k for k in range(len(pieces)) if k % world == rank]
    todo = [k for k in mine if not _has_chunk(folder, k, pieces[k][1])]
    if finished or resumed or (args.resume and folder.exists()):
        have = sum(n for k, (_, n) in enumerate(pieces) if _has_chunk(folder, k, n))
        study = f"the finished study of {finished} images, " if finished else ""
        say_kept("coatnet study", out, f"{study}the ledger of {have} of {count} images")
        if have == count and _ledger_merged(out, count):  # nothing to compute, nothing to write again
            distributed.finish(world)
            return 0
    total, initial = sum(pieces[k][1] for k in mine), sum(pieces[k][1] for k in mine if k not in todo)
    bar = tqdm(total=total, initial=initial, desc=f"ledger {args.model}", unit="img",
               disable=args.quiet or rank != 0)  # fmt: skip
    try:
        for k in todo:
            first, n = pieces[k]
            began = time.perf_counter()
            parts = []
            indices = torch.arange(first, first + n)  # in passes of --batch-size at most
            for images, labels in iterate_batches(
                dataset, indices, min(n, args.batch_size), workers=args.workers
            ):
                if len(labels):
                    x = normalize(prepare_batch(images, pre, device=device), pre)
                    parts.append({"ledger_labels": labels.numpy(), **measure_ledger(model, x)})
            arrays = concatenate(parts) if parts else {}
            arrays.update({"count": np.array(n), "seconds": np.array(time.perf_counter() - began)})
            atomic_write(_chunk_path(folder, k), lambda tmp, a=arrays: _save_npz(tmp, a))
            bar.update(n)
    except KeyboardInterrupt:
        print(f"interrupted: finished images are kept; continue with --out {out} --resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    distributed.at("every ledger image measured")
    distributed.wait_for_peers("ledger measured", world)
    if rank == 0:
        wall = round(time.perf_counter() - started, 1)
        path = merge_ledger(out, model, count, {"ledger_command": _command(), "ledger_wall_s_this_run": wall})
        print(f"wrote the ledger of {count} images to {path}, study.npz and study.html in {out}")
    distributed.wait_for_peers("ledger merged", world)
    distributed.finish(world)
    return 0


def _ledger_merged(out: Path, count: int) -> bool:
    """Whether OUT/study.json already holds the ledger of exactly ``count`` images."""
    path = out / "study.json"
    return path.exists() and json.loads(path.read_text()).get("ledger_images") == count


def merge_ledger(out: Path, model, count: int, meta: dict) -> Path:
    """Merge OUT/ledger/*.npz (the first ``count`` images) into study.json (``ledger``,
    ``ledger_protocol``, ``ledger_images``), study.npz (the ``ledger_*`` arrays) and study.html. Raises
    :class:`StudyError` if images are missing."""
    folder = out / "ledger"
    parts, seconds = [], 0.0
    for k, (_, n) in enumerate(chunks(count, LEDGER_CHUNK)):
        if not _has_chunk(folder, k, n):
            raise StudyError(f"{out}: the ledger of images {k * LEDGER_CHUNK}.. is missing; run the same "
                             "command with --resume")  # fmt: skip
        with np.load(_chunk_path(folder, k)) as found:
            arrays = {key: found[key] for key in found.files}
        seconds += float(arrays.pop("seconds"))
        arrays.pop("count")
        if arrays:
            parts.append({key: v[:n] for key, v in arrays.items()})
    if not parts:
        raise StudyError(f"{out}: no image could be read; check --data")
    arrays = concatenate(parts)
    path = out / "study.json"
    study = json.loads(path.read_text())
    study.update(meta)
    study.update({
        "ledger_images": int(arrays["ledger_labels"].shape[0]), "ledger_compute_s": round(seconds, 1),
        "ledger_protocol": ledger_protocol(), "ledger": summarise_ledger(model, arrays),
    })  # fmt: skip
    npz = out / "study.npz"
    kept = {}
    if npz.exists():
        with np.load(npz) as found:
            kept = {key: found[key] for key in found.files if key not in arrays}
    atomic_write(npz, lambda tmp: _save_npz(tmp, {**kept, **arrays}))
    summary = Study.from_json(study, where=str(path))  # written as read back: every key a known one
    write_text(path, json.dumps(summary.to_json(), indent=1) + "\n")
    write_text(out / "study.html", html_page(f"coatnet study: {summary.model_description}",
                                             study_sections(summary)))  # fmt: skip
    return path


def _command() -> str | None:
    """The command line as typed, where this process was started as ``coatnet study``."""
    return "coatnet " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["study"] else None


def _chunk_path(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}.npz"


def _has_chunk(folder: Path, index: int, count: int) -> bool:
    """Whether chunk ``index`` holds at least ``count`` images (a larger N later re-measures a last,
    shorter chunk)."""
    path = _chunk_path(folder, index)
    if not path.exists():
        return False
    with np.load(path) as found:
        return int(found["count"]) >= count


def merge_study(out: Path, model, plan: StudyPlan, settings: dict, batches: int, meta: dict) -> Path:
    """Merge ``OUT/batches/*.npz`` (in dataset order, whichever process wrote them) into study.json,
    study.npz and study.html. Raises :class:`StudyError` if a batch is missing."""
    parts, seconds = [], 0.0
    for i in range(batches):
        path = _batch_path(out, i)
        if not path.exists():
            raise StudyError(f"{out}: batch {i} is missing; run the same command with --resume")
        with np.load(path) as found:
            arrays = {k: found[k] for k in found.files}
        seconds += float(arrays.pop("seconds"))
        if arrays:
            parts.append(arrays)
    if not parts:
        raise StudyError(f"{out}: no image could be read; check --data")
    arrays = concatenate(parts)
    summary = summarise(model, plan, arrays)
    study = {
        **settings,
        **meta,
        "compute_s": round(seconds, 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "coatnet": coatnet.__version__,
        },
        "attention": model.attention_mode,
        "conventions": dict(CONVENTIONS),
        **({"faithfulness_protocol": faithfulness_protocol()} if plan.faithfulness else {}),
        **summary,
    }
    # a sanity or ledger part measured before (a --sanity-only study resumed for its interventions) is kept
    if (out / "study.json").exists():
        before = json.loads((out / "study.json").read_text())
        study.update({k: v for k, v in before.items() if k.startswith(KEPT_PARTS) and k not in study})
    if (out / "study.npz").exists():
        with np.load(out / "study.npz") as found:
            kept = {k: found[k] for k in found.files if k.startswith(KEPT_PARTS) and k not in arrays}
        arrays = {**arrays, **kept}
    atomic_write(out / "study.npz", lambda tmp: _save_npz(tmp, arrays))
    summary = Study.from_json(study, where=str(out / "study.json"))  # every key a known one
    write_text(out / "study.json", json.dumps(summary.to_json(), indent=1) + "\n")
    write_text(
        out / "study.html",
        html_page(f"coatnet study: {settings['model_description']}", study_sections(summary)),
    )
    return out / "study.json"


def _claim(out: Path, settings: dict, *, resume: bool) -> None:
    """Make OUT a study folder for ``settings``: a new one, or (``resume``) the same study's."""
    recorded = out / "batches" / "settings.json"
    if recorded.exists():
        found = json.loads(recorded.read_text())
        if not resume:
            raise StudyError(
                f"{out} holds a study already: add --resume to continue it, or choose another --out"
            )
        if found != settings:
            changed = sorted(k for k in settings if found.get(k) != settings[k])
            raise StudyError(
                f"{out} holds a different study ({', '.join(changed)} differ): use another --out"
            )
        return
    write_text(recorded, json.dumps(settings, indent=1) + "\n")


def _batch_path(out: Path, index: int) -> Path:
    return out / "batches" / f"{index:05d}.npz"


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
