"""The command line's one grammar: every flag that several commands take, defined once.

``coatnet``'s own commands and the plug-ins of higher layers (``analysis.cli``, ``app.cli``) build their
parsers from these helpers, so that a flag is spelt, typed and explained the same everywhere:

- ``--model SPEC``: any name :mod:`coatnet.weights.names` knows (a built-in, a file, a timm tag, a variant);
- ``--limit N``: the first N images of what the command reads (``train``: ``--test-limit`` for its test set);
- ``--out``: a folder wherever a command writes several files;
- ``--resume``: a long command refuses an output folder that holds its work without it, and with it
  continues, saying what it kept;
- ``--img-size N`` or ``--img-size H W``; ``--device`` and ``--threads``; ``--attention pre|post``;
- an old spelling keeps working and says its new one in one line (:func:`add_renamed`);
- every command's help ends with an example (:func:`add_command`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from coatnet.devices import DEVICES
from coatnet.weights.hub import (
    PRETRAINED_TAGS,
    HubUnavailableError,
    cached_timm_weights,
    check_hub,
    resolve_tag,
)
from coatnet.weights.names import parse_model_name

MODEL_HELP = (
    "a built-in name (demo-pre, layout-c-c-t-t ...), a checkpoint, timm weights (model.safetensors), a timm "
    "tag (coatnet_0_rw_224.sw_in1k) or a variant from `coatnet list` (random weights)"
)


class OutputExistsError(ValueError):
    """An output folder that holds a command's work already, given without ``--resume``."""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a paragraph of indented lines (an example) is kept as written, and
    the help column leaves room for every command's name (``study-layouts``)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 32, width=None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):  # its commands are drawn one indent deeper
            self._action_max_length += self._indent_increment

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


def add_command(
    sub: argparse._SubParsersAction, name: str, *, help: str, description: str, examples: Sequence[str]
) -> argparse.ArgumentParser:
    """A sub-command whose help is one line in ``coatnet --help`` and whose own help ends with examples
    (full command lines, each starting with ``coatnet NAME``)."""
    heading = "example:" if len(examples) == 1 else "examples:"
    epilog = "\n".join([heading, *(f"  {example}" for example in examples)])
    return sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=HelpFormatter
    )


def positive_int(text: str) -> int:
    """argparse ``type``: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class Renamed(argparse.Action):
    """An old spelling of a flag: it works as the new one and says so in one line on stderr."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs) -> None:
        help = f"the old spelling of {new}: works, and says so"
        super().__init__(option_strings, dest, help=help, default=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: {option_string} is now {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(p: argparse.ArgumentParser, old: str, new: argparse.Action) -> None:
    """Accept ``old`` as an alias of the flag ``new`` (the action ``add_argument`` returned)."""
    p.add_argument(
        old, dest=new.dest, type=new.type, nargs=new.nargs, metavar=new.metavar, action=Renamed,
        new=new.option_strings[0],
    )  # fmt: skip


def add_model_arg(
    p: argparse.ArgumentParser,
    *,
    default: str | None = None,
    help: str = MODEL_HELP,
    positional: bool = False,
) -> None:
    """``--model SPEC`` (and, with ``positional``, the older ``coatnet info SPEC`` form: read both with
    :func:`model_of`)."""
    shown = f"{help} (default: {default})" if default else help
    p.add_argument("--model", metavar="SPEC", default=default, help=shown)
    if positional:
        p.add_argument("model_positional", nargs="?", metavar="MODEL", help="the same as --model SPEC")


def model_of(args: argparse.Namespace) -> str:
    """The model a command was given, as ``--model SPEC`` or in the positional form."""
    flag, positional = args.model, getattr(args, "model_positional", None)
    if flag is not None and positional is not None and flag != positional:
        raise ValueError(f"two models given ({positional} and --model {flag}): give one, as --model SPEC")
    spec = flag if flag is not None else positional
    if spec is None:
        raise ValueError(
            "no model given: name one with --model SPEC (e.g. --model demo-pre; see `coatnet list`)"
        )
    return spec


def add_limit_arg(
    p: argparse.ArgumentParser, *, flag: str = "--limit", help: str = "only the first N images"
) -> argparse.Action:
    """``--limit N`` (or ``flag``): the first N images of what the command reads; returns the action."""
    return p.add_argument(flag, type=positive_int, metavar="N", help=help)


class _ImgSize(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if len(values) > 2:
            parser.error(f"{option_string} takes N or H W, got {' '.join(map(str, values))}")
        setattr(namespace, self.dest, (values[0], values[-1]))


def add_img_size_arg(p: argparse.ArgumentParser, *, help: str = "input size: N, or H W") -> None:
    """``--img-size N`` or ``--img-size H W``, read as a pair ``(H, W)`` (None when not given)."""
    p.add_argument("--img-size", type=positive_int, nargs="+", metavar="N", action=_ImgSize, help=help)


def add_compute_args(p: argparse.ArgumentParser, *, device_help: str = "default: CUDA when present") -> None:
    """``--device`` and ``--threads`` (applied by ``coatnet``'s main before the command runs)."""
    p.add_argument("--device", choices=DEVICES, help=device_help)
    p.add_argument(
        "--threads", type=positive_int, metavar="N",
        help="CPU threads per process (torch.set_num_threads; default: torch's own)",
    )  # fmt: skip


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads N``: torch's intra-op threads, where the command takes the flag and it was given."""
    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_attention_arg(
    p: argparse.ArgumentParser,
    *,
    default: str | None = None,
    help: str = "pre- or post-normalization attention (default: the model's own; weights stay as trained)",
) -> None:
    """``--attention pre|post`` wherever a model is built."""
    p.add_argument("--attention", choices=("pre", "post"), default=default, help=help)


def add_resume_arg(p: argparse.ArgumentParser, *, what: str) -> None:
    """``--resume``, for a long command whose ``--out`` :func:`check_output` guards."""
    p.add_argument(
        "--resume", action="store_true",
        help=f"continue the {what} in --out where it stopped, or add parts to it; without it an --out that "
        f"holds a {what} is refused",
    )  # fmt: skip


def first_process() -> bool:
    """Whether this is the only process, or the first under torchrun (which decides for all)."""
    return os.environ.get("RANK", "0") == "0"


def check_output(
    out: str | os.PathLike, *, resume: bool, what: str, markers: Sequence[str]
) -> bool:  # fmt: skip
    """Whether ``out`` holds a command's work (any of ``markers`` in it); refused without ``resume``.

    Under torchrun only the first process refuses (the others may start after it wrote its first file).

    Raises:
        OutputExistsError: ``out`` holds ``what`` and ``resume`` is off.
    """
    folder = Path(out).expanduser()
    holds = folder.is_dir() and any((folder / marker).exists() for marker in markers)
    if holds and not resume and first_process():
        raise OutputExistsError(
            f"{folder} holds {what} already: add --resume to continue it, or choose another --out"
        )
    return holds


def say_kept(prog: str, out: str | os.PathLike, kept: str) -> None:
    """The one line a resumed command says about what it found and keeps (the first process only)."""
    if first_process():
        print(f"{prog}: resuming in {out}: kept {kept}", file=sys.stderr, flush=True)


def hub_line(error: HubUnavailableError) -> str:
    """A hub failure in one line: why, the file's URL, and the offline route."""
    reason = str(error).splitlines()[0].rstrip(".")
    return f"{reason}. Fetch {error.url} by other means and give that file instead of the tag"


def hub_answers(spec: str, *, config_only: bool = False) -> None:
    """For a timm tag whose weights are not cached: ask the hub first (seconds), so that no network fails
    in one line at once instead of after the hub client's retries. ``config_only``: a published tag needs
    no weights (``coatnet info`` reads its known architecture)."""
    name = parse_model_name(spec)
    if name.kind != "timm_tag":
        return
    tag = resolve_tag(name.value)
    if (config_only and tag in PRETRAINED_TAGS) or cached_timm_weights(tag) is not None:
        return
    check_hub(tag)
