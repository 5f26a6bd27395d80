"""The `coatnet` command line: list, info, clear errors, and plug-in commands from entry points."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import coatnet
from coatnet.cli import commands as cli
from tests.support import processes


def add_hello(subparsers: argparse._SubParsersAction) -> None:
    """A plug-in command, as a higher layer would declare one."""
    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("who")
    p.set_defaults(func=lambda args: print(f"hello {args.who}") or 0)


def test_list_shows_every_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in coatnet.list_models():
        assert name in out
    assert "24.40M" in out  # coatnet_0
    assert "2.43B" in out  # coatnet_7


def test_list_filters_and_reports_no_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "pico"]) == 0
    assert "coatnet_pico" in capsys.readouterr().out
    assert cli.main(["list", "resnet"]) == 1


def test_info_prints_a_table_per_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", "coatnet_0"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert lines["S0"][:6] == ["S0", "conv", "2", "64", "2", "112x112"]
    assert lines["S3"][:6] == ["S3", "T", "5", "384", "2", "14x14"]
    assert lines["S4"][:6] == ["S4", "T", "2", "768", "2", "7x7"]
    assert lines["total"][-2:] == ["24.40M", "4.14G"]


def test_info_at_another_size_layout_and_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["info", "coatnet_0", "--img-size", "384", "--layout", "C-C-C-T", "--attention", "post"])
        == 0
    )
    out = capsys.readouterr().out
    assert "C-C-C-T" in out and "post-normalization" in out
    assert any(line.startswith("S4") and "12x12" in line for line in out.splitlines())


def test_info_reads_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = coatnet.save_checkpoint(coatnet.create_model("coatnet_toy"), tmp_path / "toy.safetensors")
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "coatnet_toy (checkpoint" in out and "S3" in out
    assert cli.main(["info", str(path), "--attention", "post"]) == 0
    assert "weights trained with pre-normalization" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "coatnet_pic"], "Did you mean coatnet_pico"),
        (["info", "coatnet_0", "--img-size", "100"], "multiples of its total stride 32"),
        (["info", "missing.safetensors"], "missing.safetensors does not exist"),
        (["info", "coatnet_0", "--layout", "T-C-C-C"], "unknown layout"),
    ],
)
def test_bad_input_is_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_plugin_commands_come_from_entry_points(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins = [
        EntryPoint(name="hello", value="tests.coatnet.test_cli:add_hello", group=cli.PLUGIN_GROUP),
        EntryPoint(name="broken", value="no_such_module_xyz:add_parser", group=cli.PLUGIN_GROUP),
    ]
    monkeypatch.setattr(cli, "entry_points", lambda group: [p for p in plugins if p.group == group])
    assert cli.main(["hello", "world"]) == 0
    captured = capsys.readouterr()
    assert "hello world" in captured.out and captured.err == ""  # a command loads its own plug-in only
    assert cli.main([]) == 2  # the help lists every command: each plug-in is loaded
    captured = capsys.readouterr()
    assert "hello" in captured.out
    assert "skipping command 'broken'" in captured.err  # a broken plug-in is named, not fatal
    assert cli.main(["list", "toy"]) == 0


def test_the_built_in_commands_are_those_the_parser_adds_itself() -> None:
    added = set(cli.build_parser([])._subparsers._group_actions[0].choices)
    assert added - set(cli.declared_commands()) == cli.BUILT_IN


def test_python_dash_m_and_console_script() -> None:
    """Both start the command line; a built-in command loads no plug-in (none of the analysis layer's
    modules is imported: ``-X importtime`` lists every import)."""
    run = processes.run(
        [sys.executable, "-X", "importtime", "-m", "coatnet", "info", "coatnet_toy"], timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "coatnet_toy (variant)" in run.stdout
    imported = {
        line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")
    }
    assert "coatnet.cli.commands" in imported and not {
        m for m in imported if m.split(".")[0] in ("analysis", "app")
    }
    script = Path(sys.executable).with_name("coatnet")
    if script.exists():
        run = processes.run([str(script), "list", "toy"], timeout=120)
        assert run.returncode == 0 and "coatnet_toy" in run.stdout


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: coatnet" in capsys.readouterr().out
