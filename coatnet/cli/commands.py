"""The ``coatnet`` command line: ``list``, ``info``, ``import-timm`` here (``train`` and ``eval`` in
:mod:`coatnet.cli.training`); higher layers plug in their own commands.

A plug-in is an entry point in the group ``coatnet.commands`` whose value is a function
``add_parser(subparsers) -> None``; it adds a sub-parser with :func:`coatnet.cli.add_command` (one line of
help, an example at the end) and sets ``func`` (a function of the parsed arguments returning an exit code)
with ``set_defaults``. ``coatnet`` never imports those layers itself: in a checkout that is not installed,
their commands are named from ``pyproject.toml`` and say how to install them. Every flag that several
commands take is defined once, in :mod:`coatnet.cli.options`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import torch

from coatnet.cli.options import (
    HelpFormatter,
    add_attention_arg,
    add_command,
    add_img_size_arg,
    add_model_arg,
    apply_threads,
    hub_answers,
    hub_line,
    model_of,
)
from coatnet.cli.training import add_eval_parser, add_train_parser
from coatnet.files import WriteError
from coatnet.model.complexity import count_params, stage_costs
from coatnet.model.network import CoAtNet
from coatnet.model.variants import build_config, list_models
from coatnet.weights.checkpoint import CheckpointError, save_checkpoint
from coatnet.weights.hub import HubModelNotFoundError, HubUnavailableError
from coatnet.weights.resolve import named_config
from coatnet.weights.timm_import import from_timm

PLUGIN_GROUP = "coatnet.commands"
# the commands build_parser adds itself
BUILT_IN = frozenset({"list", "info", "import-timm", "train", "eval"})
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"  # there in a checkout, not in a wheel


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    installed = plugin_entry_points()
    command = next((word for word in argv if not word.startswith("-")), None)
    if command is not None and command not in {ep.name for ep in installed}:
        declared = declared_commands()
        if command in declared:
            print(needs_install(command), file=sys.stderr)
            return 2
    # a command named loads its own plug-in only (a built-in one none: each plug-in imports its layer, about
    # 0.7 s); help, no command or an unknown one loads them all, to list them
    if command is not None and command in BUILT_IN | {ep.name for ep in installed}:
        installed = [ep for ep in installed if ep.name == command]
    parser = build_parser(installed)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        apply_threads(args)
        return int(args.func(args) or 0)
    except HubUnavailableError as error:
        print(f"coatnet {args.command}: error: {hub_line(error)}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, CheckpointError, HubModelNotFoundError, WriteError) as error:
        print(f"coatnet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser(plugins: Sequence | None = None) -> argparse.ArgumentParser:
    """The whole command line: the built-in commands and every installed plug-in (``plugins``: their entry
    points; default: those installed)."""
    parser = argparse.ArgumentParser(
        prog="coatnet",
        formatter_class=HelpFormatter,
        description="CoAtNet models: list them, inspect them, train and evaluate them; with the analysis "
        "layer installed, analyse them. `coatnet COMMAND --help` for a command's flags and an example.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = add_command(
        sub, "list", help="the known model variants",
        description="The known model variants: layout, blocks and channels per stage, head size, parameters.",
        examples=["coatnet list coatnet_"],
    )  # fmt: skip
    p.add_argument("pattern", nargs="?", default="", help="only names containing this")
    p.set_defaults(func=cmd_list)

    p = add_command(
        sub, "info", help="a model's stages, parameters and MACs",
        description="A model's stages: kind, blocks, channels, stride, grid, parameters and MACs. A timm tag "
        "is read offline from its known architecture.",
        examples=["coatnet info --model coatnet_0 --img-size 384 --attention post",
                  "coatnet info --model coatnet_0_rw_224.sw_in1k"],
    )  # fmt: skip
    add_model_arg(p, positional=True)
    add_img_size_arg(p)
    add_attention_arg(p)
    p.add_argument("--layout", help="S1..S4 layout, e.g. C-C-C-T (variant names only)")
    p.set_defaults(func=cmd_info)

    p = add_command(
        sub, "import-timm", help="convert timm weights to one checkpoint file",
        description="Convert a timm CoAtNet or MaxViT (a hub tag, downloaded when online, or a local "
        "model.safetensors / pytorch_model.bin) into one checkpoint of ours, with identical outputs.",
        examples=["coatnet import-timm --model coatnet_0_rw_224.sw_in1k --out coatnet_0.safetensors"],
    )  # fmt: skip
    add_model_arg(p, positional=True, help="a timm hub tag (coatnet_0_rw_224.sw_in1k) or a weights file")
    p.add_argument("--out", required=True, metavar="FILE", help="the .safetensors checkpoint to write")
    p.add_argument("--arch", help="timm architecture, e.g. coatnet_0_rw_224 (default: recognised)")
    add_attention_arg(p, default="pre", help="normalization to build (timm's weights are pre)")
    add_img_size_arg(p)
    p.set_defaults(func=cmd_import_timm)

    add_train_parser(sub)
    add_eval_parser(sub)
    for add_parser in plugin_commands(plugins):
        add_parser(sub)
    found = {ep.name for ep in (plugin_entry_points() if plugins is None else plugins)}
    for name in declared_commands():
        if name not in found and name not in sub.choices:  # a checkout that is not installed
            p = add_command(sub, name, help="needs the project installed: pip install -e .",
                            description=needs_install(name), examples=["pip install -e ."])  # fmt: skip
            p.set_defaults(func=lambda args: print(needs_install(args.command), file=sys.stderr) or 2)
    return parser


def plugin_entry_points() -> list:
    """The installed entry points of the ``coatnet.commands`` group, by name."""
    return sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)


def plugin_commands(plugins: Sequence | None = None) -> list[Callable[[argparse._SubParsersAction], None]]:
    """The ``add_parser`` functions registered under the ``coatnet.commands`` entry-point group."""
    found = []
    for ep in plugin_entry_points() if plugins is None else plugins:
        try:
            found.append(ep.load())
        except Exception as error:  # a broken plug-in must not take the built-in commands down
            print(f"coatnet: skipping command {ep.name!r} ({ep.value}): {error}", file=sys.stderr)
    return found


def declared_commands(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """The plug-in commands the checkout's pyproject.toml declares (name -> ``module:function``); none
    when the package is not in a checkout. Read with a pattern: Python 3.10 has no tomllib."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return {}
    section = re.search(
        r'^\[project\.entry-points\."coatnet\.commands"\][ \t]*$(.*?)(?=^\[|\Z)', text, re.M | re.S
    )
    if section is None:
        return {}
    return dict(re.findall(r'^[ \t]*"?([A-Za-z0-9_.-]+)"?[ \t]*=[ \t]*"([^"]+)"', section[1], re.M))


def needs_install(command: str) -> str:
    """The one line for a declared command whose layer is not installed."""
    return (
        f"coatnet: '{command}' needs the project installed (its command comes from the analysis or app "
        f"layer): run `pip install -e .` (or `make app`) in {PYPROJECT.parent}"
    )


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
    spec = model_of(args)
    img_size = args.img_size
    hub_answers(spec, config_only=True)
    config, source = named_config(spec, attention=args.attention, layout=args.layout)
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
    source = model_of(args)
    hub_answers(source)
    model = from_timm(source, arch=args.arch, attention=args.attention, img_size=args.img_size)
    save_checkpoint(model, out)
    info = model.checkpoint_info
    names = "ImageNet class names" if info.class_names else "class indices (no names at hand)"
    print(
        f"wrote {out}: timm {info.provenance['arch']} as {info.attention_note}, "
        f"{count_params(model):,} parameters, {model.config.num_classes} classes with {names}"
    )
    return 0


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
