"""Resume state and run files: everything written atomically, and nothing read back is ever unpickled.

A resume file is a ``.safetensors`` file: the tensors of every state dict (model, EMA, optimizer, RNG) as
tensors, and the structure around them (nested dicts, lists, numbers: optimizer param groups, step,
epoch, metrics) as JSON in the header, with each tensor replaced by ``{"$t": name}``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from coatnet.files import atomic_write, write_text

if TYPE_CHECKING:
    from coatnet.training.evaluation import EvalResult

RESUME_FORMAT = "coatnet-lens-resume/1"


def write_metrics(out_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Per-epoch metrics as ``metrics.json`` (a list of rows) and ``metrics.csv`` (one line per epoch)."""
    out_dir = Path(out_dir)
    write_text(out_dir / "metrics.json", json.dumps(rows, indent=1) + "\n")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "metrics.csv", buffer.getvalue())


def save_resume(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a nest of dicts, lists, numbers, strings and tensors to one safetensors file, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _pack(state, tensors)
    header = {"format": RESUME_FORMAT, "state": json.dumps(structure)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_resume(path: str | os.PathLike) -> dict[str, Any]:
    """Read back what :func:`save_resume` wrote (tensors on the CPU)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no resume state at {path}: --resume continues a run in the --out folder of an earlier "
            "`coatnet train`; leave --resume off to start a new run"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        if header.get("format") != RESUME_FORMAT:
            raise ValueError(f"format {header.get('format')!r}")
        return _unpack(json.loads(header["state"]), tensors)
    except (SafetensorError, OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path} is not a readable resume file ({error}); start the run again without --resume"
        ) from error


def _pack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().to("cpu").contiguous()
        return {"$t": name}
    if isinstance(obj, dict):
        return {"$d": [[key, _pack(value, tensors)] for key, value in obj.items()]}  # keeps int keys
    if isinstance(obj, list | tuple):
        return [_pack(value, tensors) for value in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a resume file")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "$t" in obj:
        return tensors[obj["$t"]]
    if isinstance(obj, dict):
        return {key: _unpack(value, tensors) for key, value in obj["$d"]}
    if isinstance(obj, list):
        return [_unpack(value, tensors) for value in obj]
    return obj


def epoch_line(row: dict[str, Any], epochs: int, train_set, test_set) -> str:
    tested = (
        f"test loss {row['test_loss']:.4f} top-1 {100 * row['test_top1']:.2f}% "
        f"top-5 {100 * row['test_top5']:.2f}%"
        if row.get("test_top1") is not None
        else "test not evaluated this epoch"
    )
    line = (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
        f"top-1 {100 * row['train_top1']:.2f}% | {tested} | {row['images_per_s']:.0f} img/s, "
        f"{row['epoch_s']:.0f} s"
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
            f"{world} x CPU process ({cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
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


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), or the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
