"""The reference (docs/development.md, "The reference"): every public name of ``coatnet``, ``analysis`` and
``analysis.figures`` has a docstring that names each of its parameters (``Args:``, or ``Attributes:`` for
a dataclass's fields), says what it returns (``Returns:`` or ``Yields:``) and shows one example
(``Examples:``), read by griffe as mkdocstrings reads them; every example runs, all in this one process; the
generated pages name every public name and every command."""

from __future__ import annotations

import doctest
import functools
import importlib
import importlib.util
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("coatnet", "analysis", "analysis.figures")
# as mkdocs.yml has mkdocstrings parse them: a parameter's type comes from its annotation where it has one
# (the figures take results of any analysis, unannotated), never repeated in the docstring
PARSE_OPTIONS = {"warn_missing_types": False}
_spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


@dataclass(frozen=True)
class Entry:
    """One public name: the object at run time, and its docstring's sections as griffe parses them."""

    module: str
    name: str
    obj: object
    sections: dict[str, list]  # kind ("parameters", "returns", "examples", ...) -> the section's values
    warnings: tuple[str, ...]  # what griffe said while parsing it (mkdocs --strict fails on these)

    @property
    def label(self) -> str:
        return f"{self.module}.{self.name}"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    loader = griffe.GriffeLoader(docstring_parser=griffe.Parser.google)
    packages = {name: loader.load(name) for name in ("coatnet", "analysis")}
    found = []
    collect = _Collect()
    logger = logging.getLogger("griffe")
    logger.addHandler(collect)
    try:
        for module in MODULES:
            static = packages["coatnet" if module == "coatnet" else "analysis"]
            if module == "analysis.figures":
                static = static["figures"]
            for name in importlib.import_module(module).__all__:
                collect.messages = []
                docstring = static[name].docstring
                sections: dict[str, list] = {}
                parsed = docstring.parse(griffe.Parser.google, **PARSE_OPTIONS) if docstring else ()
                for section in parsed:
                    sections.setdefault(section.kind.value, []).extend(
                        section.value if isinstance(section.value, list) else [section.value]
                    )
                obj = getattr(importlib.import_module(module), name)
                found.append(Entry(module, name, obj, sections, tuple(collect.messages)))
    finally:
        logger.removeHandler(collect)
    return found


def _parameters(obj: object) -> list[str]:
    """The parameters a reader passes: a function's, or a class's constructor's (less ``*args`` and
    ``**kwargs`` an exception inherits)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and not (inspect.isclass(obj) and p.kind in variadic)
    ]


def _returns_nothing(obj: object) -> bool:
    annotation = inspect.signature(obj).return_annotation
    return annotation in (None, "None", "Iterator[None]")


def problems(entry: Entry) -> list[str]:
    """What ``entry``'s docstring lacks."""
    if not entry.sections:
        return ["no docstring"]
    found = [f"griffe: {message}" for message in entry.warnings]
    if "examples" not in entry.sections:
        found.append("no Examples:")
    if not callable(entry.obj):  # a constant: a sentence and an example
        return found
    documented = {
        item.name.lstrip("*")
        for kind in ("parameters", "other parameters", "attributes")
        for item in entry.sections.get(kind, [])
    }
    missing = [name for name in _parameters(entry.obj) if name not in documented]
    if missing:
        found.append(f"parameters not documented: {', '.join(missing)}")
    says_returns = "returns" in entry.sections or "yields" in entry.sections
    if not inspect.isclass(entry.obj) and not _returns_nothing(entry.obj) and not says_returns:
        found.append("no Returns: (or Yields:)")
    return found


def test_there_are_as_many_public_names_as_counted(entries: list[Entry]) -> None:
    counts = {module: sum(e.module == module for e in entries) for module in MODULES}
    assert all(count >= 30 for count in counts.values()), counts


def test_every_public_name_has_parameters_returns_and_an_example(entries: list[Entry]) -> None:
    bad = [f"{e.label}: {'; '.join(found)}" for e in entries if (found := problems(e))]
    assert not bad, f"{len(bad)} of {len(entries)} public names:\n" + "\n".join(bad)


def _example_source(entry: Entry) -> str:
    """The ``>>>`` lines (with the output they show) of ``entry``'s Examples section."""
    parts = entry.sections.get("examples", [])
    return "\n".join(text for kind, text in parts if getattr(kind, "value", kind) == "examples")


def _load_builtins_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Examples load the built-in checkpoints by name, as a reader would; here each (name, options) is
    loaded once and handed to every example that asks (a model's first analysis builds its inference
    build, a second or two each time). Every analysis leaves the model as it found it."""
    import analysis
    import coatnet

    for module, name in ((coatnet, "load_checkpoint"), (analysis, "load_model")):
        load = getattr(module, name)
        once = functools.cache(load)

        def shared(spec, *args, _load=load, _once=once, **options):
            builtin = isinstance(spec, str) and coatnet.parse_model_name(spec).kind == "builtin"
            return (_once if builtin else _load)(spec, *args, **options)

        monkeypatch.setattr(module, name, shared)


@pytest.mark.slow  # every analysis and figure runs: about 11 s on two quiet cores (docs/development.md)
def test_every_example_runs(entries: list[Entry], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example in a namespace of its own, as a reader would paste it, in a scratch directory; the
    outputs it shows are compared as doctest compares them."""
    monkeypatch.chdir(tmp_path)
    _load_builtins_once(monkeypatch)
    parser = doctest.DocTestParser()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed: list[str] = []
    ran = 0
    for entry in entries:
        source = _example_source(entry)
        if not source:
            continue
        test = parser.get_doctest(source, {}, entry.label, None, 0)
        report: list[str] = []
        runner = doctest.DocTestRunner(optionflags=flags)
        runner.run(test, out=report.append)
        ran += 1
        if runner.failures:
            failed.append("".join(report))
    assert not failed, f"{len(failed)} of {ran} examples failed:\n" + "\n".join(failed)
    assert ran == len(entries), f"{len(entries) - ran} public names gave no example to run"


def test_the_reference_pages_name_every_public_name() -> None:
    pages = reference.pages()
    for module, (page, _) in reference.API_PAGES.items():
        text = pages[page]
        missing = [n for n in importlib.import_module(module).__all__ if f"::: {module}.{n}\n" not in text]
        assert not missing, f"{page} lacks {missing}"


def test_the_command_line_page_shows_every_command_and_flag() -> None:
    from coatnet.cli.commands import build_parser

    text = reference.pages()[reference.CLI_PAGE]
    for name, (_, sub) in reference._subcommands(build_parser()).items():
        assert f"## `coatnet {name}`" in text
        flags = [flag for action in sub._actions for flag in action.option_strings]
        assert all(flag in text for flag in flags), name


def test_the_site_config_builds_offline_from_the_generated_pages() -> None:
    """mkdocs.yml is valid, runs scripts/reference.py as its hook, and loads nothing from a CDN."""
    config_module = pytest.importorskip("mkdocs.config")
    config = config_module.load_config(str(ROOT / "mkdocs.yml"))
    assert config["theme"]["highlightjs"] is False
    assert [Path(h.__file__).resolve() for h in config["hooks"].values()] == [ROOT / "scripts/reference.py"]
    assert config["docs_dir"] == str(ROOT / "docs")
