"""The ``coatnet`` command line: ``list`` and ``info`` here; higher layers plug in their own commands.

A plug-in is an entry point in the group ``coatnet.commands`` whose value is a function
``add_parser(subparsers) -> None``; it adds a sub-parser and sets ``func`` (a function of the parsed
arguments returning an exit code) with ``set_defaults``. ``coatnet`` never imports those layers itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import torch

from coatnet.cli.training import add_train_parser
from coatnet.files import WriteError
from coatnet.model.complexity import count_params, stage_costs
from coatnet.model.config import CoAtNetConfig
from coatnet.model.network import CoAtNet
from coatnet.model.variants import build_config, list_models
from coatnet.weights.checkpoint import CheckpointError, save_checkpoint, verify_checkpoint
from coatnet.weights.hub import HubModelNotFoundError, HubUnavailableError
from coatnet.weights.names import parse_model_name
from coatnet.weights.timm_import import from_timm

PLUGIN_GROUP = "coatnet.commands"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (
        ValueError,
        FileNotFoundError,
        CheckpointError,
        HubUnavailableError,
        HubModelNotFoundError,
        WriteError,
    ) as error:
        print(f"coatnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coatnet", description="CoAtNet models: list them, inspect them, and (with plug-ins) more."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="the known model variants")
    p.add_argument("pattern", nargs="?", default="", help="only names containing this")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="a model's stages: kind, blocks, channels, grid, params, MACs")
    p.add_argument("model", help="a variant name (see `coatnet list`) or a .safetensors checkpoint")
    p.add_argument("--img-size", type=int, nargs="+", metavar="N", help="input size: N, or H W")
    p.add_argument("--attention", choices=("pre", "post"), help="normalization (default: the model's)")
    p.add_argument("--layout", help="S1..S4 layout, e.g. C-C-C-T (variant names only)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("import-timm", help="convert a timm CoAtNet (hub tag or local file) to our checkpoint")
    p.add_argument("source", help="a hub tag (coatnet_0_rw_224.sw_in1k) or a model.safetensors / .bin file")
    p.add_argument("--out", required=True, help="the .safetensors checkpoint to write")
    p.add_argument("--arch", help="timm architecture, e.g. coatnet_0_rw_224 (default: recognised)")
    p.add_argument("--attention", choices=("pre", "post"), default="pre", help="normalization to build")
    p.add_argument("--img-size", type=int, nargs="+", metavar="N", help="input size: N, or H W")
    p.set_defaults(func=cmd_import_timm)

    add_train_parser(sub)
    for add_parser in plugin_commands():
        add_parser(sub)
    return parser


def plugin_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """The ``add_parser`` functions registered under the ``coatnet.commands`` entry-point group."""
    found = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            found.append(ep.load())
        except Exception as error:  # a broken plug-in must not take the built-in commands down
            print(f"coatnet: skipping command {ep.name!r} ({ep.value}): {error}", file=sys.stderr)
    return found


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models(args.pattern):
        config = build_config(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in CoAtNet(config).parameters())
        depths = "-".join(str(d) for d in config.depths)
        dims = "-".join(str(d) for d in config.dims)
        rows.append(
            [name, config.layout, depths, dims, str(config.head_dim), format_count(params, billion="B")]
        )
    if not rows:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(format_table(["model", "layout", "blocks S1-S4", "channels S1-S4", "head dim", "params"], rows))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    img_size = _img_size(args.img_size)
    config, source = resolve_config(args.model, attention=args.attention, layout=args.layout)
    with torch.device("meta"):
        model = CoAtNet(config)
    infos = model.stage_info(img_size)
    costs = stage_costs(config, img_size)
    rows = [
        [i.name, i.kind, str(i.blocks), str(i.channels), str(i.stride), f"{i.grid[0]}x{i.grid[1]}",
         format_count(c.params, billion="B"), format_count(c.macs)]
        for i, c in zip(infos, costs, strict=False)
    ]  # fmt: skip
    head = costs[-1]
    rows.append(["head", "pool+fc", "", str(config.num_classes), "", "",
                 format_count(head.params, billion="B"), format_count(head.macs)])  # fmt: skip
    total_params, total_macs = sum(c.params for c in costs), sum(c.macs for c in costs)
    rows.append(
        ["total", "", "", "", "", "", format_count(total_params, billion="B"), format_count(total_macs)]
    )
    size = img_size or config.img_size
    print(f"{config.name} ({source}): layout {config.layout}, {config.attention}-normalization attention, "
          f"input {size[0]}x{size[1]}x{config.in_chans}, {config.num_classes} classes")  # fmt: skip
    print(format_table(["stage", "kind", "blocks", "channels", "stride", "grid", "params", "MACs"], rows))
    return 0


def cmd_import_timm(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must name a .safetensors file, got {out.name!r}")
    model = from_timm(
        args.source, arch=args.arch, attention=args.attention, img_size=_img_size(args.img_size)
    )
    save_checkpoint(model, out)
    info = model.checkpoint_info
    names = "ImageNet class names" if info.class_names else "class indices (no names at hand)"
    print(
        f"wrote {out}: timm {info.provenance['arch']} as {info.attention_note}, "
        f"{count_params(model):,} parameters, {model.config.num_classes} classes with {names}"
    )
    return 0


def resolve_config(
    model: str, *, attention: str | None = None, layout: str | None = None
) -> tuple[CoAtNetConfig, str]:
    """The config named by a variant name or held in a checkpoint file, and a word on where it came from."""
    path = Path(model)
    if parse_model_name(model).kind in ("file", "builtin"):
        if layout is not None:
            raise ValueError("--layout applies to variant names, not to checkpoints")
        info = verify_checkpoint(path)  # the whole file: a damaged one is refused here, not later
        config = info.config if attention is None else info.config.replace(attention=attention)
        trained = info.trained_attention
        note = "" if trained == config.attention else f", weights trained with {trained}-normalization"
        return config, f"checkpoint {path}{note}"
    return build_config(model, attention=attention or "pre", layout=layout), "variant"


def _img_size(values: list[int] | None) -> tuple[int, int] | None:
    if not values:
        return None
    if len(values) > 2:
        raise ValueError(f"--img-size takes N or H W, got {values}")
    return (values[0], values[-1])


def format_count(n: int, *, billion: str = "G") -> str:
    """1234 -> '1.23K', 24_400_000 -> '24.40M', 4.1e9 -> '4.14G' (``billion="B"`` for parameters)."""
    for unit, scale in ((billion, 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
