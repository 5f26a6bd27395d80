"""The reference pages, generated whenever the site is built (``make docs``), never written by hand: the API
of every public name (``coatnet.__all__``, ``analysis.__all__``, ``analysis.figures.__all__``), rendered by
mkdocstrings from the docstrings, and the command line, from the argparse parsers of ``coatnet`` (plug-ins
included). mkdocs runs this file as a hook (mkdocs.yml); tests/test_reference.py reads the same pages, so a
new public name or command appears in the site, and in the test, without an edit here.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# module -> (page, what the page holds)
API_PAGES = {
    "coatnet": ("reference/coatnet.md", "the model library: models, checkpoints, tracing, training"),
    "analysis": ("reference/analysis.md", "the analyses: from a model and images to small frozen results"),
    "analysis.figures": ("reference/figures.md", "the Plotly figure of every result"),
}
CLI_PAGE = "reference/cli.md"
HELP_WIDTH = 100  # the command-line help wraps here, whatever the terminal that builds the site


def public_names(module: str) -> list[str]:
    """The names ``module.__all__`` lists, in its order."""
    return list(importlib.import_module(module).__all__)


def _section(module: str, name: str) -> str:
    """Where a name's entry goes on its page: the module that defines it, or "Constants"."""
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj.__module__
    return "Constants"


def api_page(module: str) -> str:
    """The Markdown of ``module``'s API page: one mkdocstrings entry (``::: module.name``) for every public
    name, grouped under the module that defines it."""
    _, about = API_PAGES[module]
    groups: dict[str, list[str]] = {}
    for name in public_names(module):
        groups.setdefault(_section(module, name), []).append(name)
    lines = [
        f"# `{module}`",
        "",
        f"The public names of `{module}` (its `__all__`): {about}. Generated from the docstrings by",
        "scripts/reference.py; each example runs in the suite (tests/test_reference.py).",
        "",
    ]
    for section in sorted(groups, key=lambda s: (s == "Constants", s)):
        lines += [f"## {section if section == 'Constants' else f'`{section}`'}", ""]
        lines += [f"::: {module}.{name}\n" for name in sorted(groups[section], key=str.lower)]
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """``parser``'s subcommands: name -> (the one-line help, the subparser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    """``parser.format_help()`` wrapped at HELP_WIDTH columns."""
    kind = parser.formatter_class
    parser.formatter_class = lambda prog: kind(prog, width=HELP_WIDTH)
    try:
        return parser.format_help()
    finally:
        parser.formatter_class = kind


def cli_page() -> str:
    """The Markdown of the command-line page: ``coatnet --help``, then every subcommand's help, from the
    parser that ``coatnet`` itself builds (plug-in commands included)."""
    from coatnet.cli.commands import build_parser

    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "`coatnet` and its commands, as `--help` prints them: generated from the argparse parsers",
        "(`coatnet.cli.commands.build_parser()`, plug-ins registered under the `coatnet.commands` entry",
        "points included) by scripts/reference.py.",
        "",
        "```text",
        _help(parser).rstrip(),
        "```",
        "",
    ]
    for name, (summary, sub) in sorted(_subcommands(parser).items()):
        lines += [f"## `coatnet {name}`", "", f"{summary}." if summary else "", "", "```text"]
        lines += [_help(sub).rstrip(), "```", ""]
    return "\n".join(lines)


def home_page() -> str:
    """The site's home: the README, its links to docs/ pages made relative to the site, and its links to
    other files of the repository (CHANGELOG.md) left as their text: the site holds docs/ alone."""
    text = (ROOT / "README.md").read_text()
    text = re.sub(r"(?<!!)\[([^\]]+)\]\((?!https?:|#|docs/)[^)]+\)", r"\1", text)
    return re.sub(r"\]\(docs/", "](", text)


def pages() -> dict[str, str]:
    """Every generated page: path under docs/ -> Markdown."""
    generated = {"index.md": home_page(), CLI_PAGE: cli_page()}
    generated |= {page: api_page(module) for module, (page, _) in API_PAGES.items()}
    return generated


# A fence's words after the language tell the suite how to run the block (```python no-run, ```python
# torchrun: tests/test_readme.py); Markdown would not read such a line as a fence at all.
RUN_TAG = re.compile(r"^(\s*```python)[ \t]+[\w-]+[ \t]*$", flags=re.M)


def on_files(files, config):  # mkdocs hooks: the generated pages join docs/*.md, written nowhere
    from mkdocs.structure.files import File

    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files


def on_page_markdown(markdown, page, config, files):
    return RUN_TAG.sub(r"\1", markdown)
