"""One grammar for the ``coatnet`` command line (coatnet/cli/options.py), checked on the whole parser with
every installed plug-in: each flag explained and each command's help ending with an example that parses;
``--model`` and ``--attention`` where a model is built, ``--limit`` where a dataset is read, ``--device`` and
``--threads`` where anything is computed; a long command refuses a folder that holds its work without
``--resume``; old spellings say their new one in one line and still work; a plug-in of an uninstalled
checkout says how to install it; ``coatnet app`` serves app/main.py as ``make app`` does."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pytest
import torch

import app.cli
import app.serve
from coatnet.cli import commands as cli
from coatnet.cli.options import Renamed

ROOT = Path(__file__).resolve().parents[1]
# every command, and what it does: builds a model (--model, --attention), reads a dataset (its limits),
# computes (--device, --threads), is long (refuses an --out holding these files without --resume)
COMMANDS: dict[str, dict] = {
    "list": {},
    "info": {"model": True},
    "import-timm": {"model": True},
    "train": {"model": True, "limits": ("--limit", "--test-limit"), "computes": True, "long": "metrics.json"},
    "eval": {"model": True, "limits": ("--limit",), "computes": True},
    "analyze": {"model": True, "computes": True},
    "study": {"model": True, "limits": ("--limit",), "computes": True, "long": "batches"},
    "probe": {"model": True, "limits": ("--limit",), "computes": True, "long": "features"},
    # trains the five layout models (--layouts names them): --attention, not --model
    "study-layouts": {"attention": True, "limits": ("--test-limit",), "computes": True, "long": "runs"},
    "app": {},
}


@pytest.fixture(scope="module")
def commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_every_command_is_in_the_grammars_table(commands) -> None:
    assert set(commands) == set(COMMANDS), "a new command: say in COMMANDS what it does"


def test_every_flag_has_help_and_every_help_ends_with_an_example_that_parses(commands) -> None:
    parser = cli.build_parser()
    for name, sub in commands.items():
        bare = [a.dest for a in sub._actions if not a.help or a.help == argparse.SUPPRESS]
        assert not bare, f"coatnet {name}: no help for {bare}"
        text = sub.format_help().rstrip().splitlines()
        heading = max(i for i, line in enumerate(text) if line in ("example:", "examples:"))
        examples = [line.strip() for line in text[heading + 1 :]]
        assert examples and all(e.startswith(f"coatnet {name}") for e in examples), (name, text[heading:])
        for example in examples:
            assert parser.parse_args(shlex.split(example)[1:]).command == name


def test_the_top_help_lists_every_command_on_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main([]) == 2
    text = capsys.readouterr().out
    listed = text.split("COMMAND\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert sorted(line.split()[0] for line in listed) == sorted(COMMANDS)  # no line is a wrapped tail
    assert all(len(line.split()) > 1 for line in listed)


def test_the_flags_each_kind_of_command_takes(commands) -> None:
    for name, does in COMMANDS.items():
        have = flags(commands[name])
        if does.get("model"):
            assert {"--model", "--attention"} <= have, name
        if does.get("attention"):
            assert "--attention" in have, name
        assert set(does.get("limits", ())) <= have, name
        if does.get("computes"):
            assert {"--device", "--threads"} <= have, name
        if does.get("long"):
            assert {"--out", "--resume"} <= have, name
    assert commands["info"].parse_args(["--img-size", "32", "48"]).img_size == (32, 48)
    assert commands["train"].parse_args(["--out", "o", "--img-size", "32"]).img_size == (32, 32)


@pytest.mark.parametrize("name", [n for n, does in COMMANDS.items() if does.get("long")])
def test_a_long_command_refuses_a_folder_holding_its_work_without_resume(name, tmp_path, capsys) -> None:
    (tmp_path / COMMANDS[name]["long"]).mkdir()
    assert cli.main([name, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{tmp_path} holds" in err and "add --resume to continue it" in err, err


def test_old_spellings_say_their_new_one_and_still_work(commands, capsys) -> None:
    args = commands["train"].parse_args(["--out", "o", "--train-subset", "5", "--test-subset", "7"])
    assert (args.limit, args.test_limit) == (5, 7)
    assert capsys.readouterr().err.splitlines() == [
        "coatnet train: --train-subset is now --limit",
        "coatnet train: --test-subset is now --test-limit",
    ]
    assert commands["study-layouts"].parse_args(["--out", "o", "--test-subset", "9"]).test_limit == 9
    assert capsys.readouterr().err.strip() == "coatnet study-layouts: --test-subset is now --test-limit"
    assert commands["analyze"].parse_args(["x.png", "--out", "o", "--point", "3", "4"]).pixel == [3.0, 4.0]
    assert capsys.readouterr().err.strip() == "coatnet analyze: --point is now --pixel"
    aliases = [a for sub in commands.values() for a in sub._actions if isinstance(a, Renamed)]
    assert sorted(a.option_strings[0] for a in aliases) == [
        "--point",
        "--test-subset",
        "--test-subset",
        "--train-subset",
    ]
    # the positional model of info and eval is kept, silently; two different models are refused
    assert cli.main(["info", "coatnet_toy"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("coatnet_toy (variant)") and not err
    assert cli.main(["eval", "demo-pre", "--model", "demo-post"]) == 2
    assert "two models given" in capsys.readouterr().err


def test_info_reads_a_timm_tag_offline_and_a_tag_that_needs_weights_fails_in_one_line(
    monkeypatch, capsys, tmp_path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # nothing cached
    assert cli.main(["info", "--model", "coatnet_0_rw_224.sw_in1k", "--img-size", "224", "256"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert (
        first.startswith("coatnet_0_rw_224 (timm coatnet_0_rw_224.sw_in1k")
        and "224x256x3, 1000 classes" in first
    )
    for argv in (
        ["info", "--model", "coatnet_0_rw_224.sw_other"],
        ["eval", "--model", "coatnet_0_rw_224.sw_in1k"],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "offline mode is on" in err and "give that file instead of the tag" in err


def test_threads_are_set_before_the_command_runs(capsys) -> None:
    before = torch.get_num_threads()
    try:
        assert cli.main(["eval", "--model", "no-such-model", "--threads", "1"]) == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "no model 'no-such-model'" in capsys.readouterr().err


def test_an_uninstalled_plug_in_says_how_to_install_it(monkeypatch, capsys) -> None:
    assert set(cli.declared_commands()) == {ep.name for ep in cli.plugin_entry_points()}
    monkeypatch.setattr(cli, "entry_points", lambda group: [])  # a checkout that is not installed
    assert cli.main(["analyze", "picture.png", "--out", "report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "invalid choice" not in err, err
    assert "'analyze' needs the project installed" in err and "pip install -e ." in err and "make app" in err
    assert cli.main([]) == 2
    assert "study-layouts  needs the project installed" in capsys.readouterr().out


def test_the_app_command_runs_streamlit_on_the_installed_apps_main(monkeypatch, capsys) -> None:
    ran = []
    monkeypatch.setattr(app.cli.subprocess, "run", lambda command, check: ran.append(command) or Done())
    assert cli.main(["app", "--port", "8502"]) == 0
    [command] = ran
    assert command[:3] == [sys.executable, "-m", "app.serve"]  # streamlit run app/main.py, warmed first
    assert Path(app.__file__).resolve().with_name("main.py") == app.serve.MAIN
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    # every setting a checkout's .streamlit/config.toml gives `make app`, the port given here
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    expected = {f"--{section}.{key}": str(value).lower() if isinstance(value, bool) else str(value)
                for section, values in config.items() for key, value in values.items()}  # fmt: skip
    assert flags == {**expected, "--server.port": "8502"}
    assert flags["--server.maxUploadSize"] == "50" and flags["--client.showErrorDetails"] == "none"
    assert flags["--browser.gatherUsageStats"] == "false" and flags["--server.address"] == "localhost"
    assert app.serve.MAIN == ROOT / "app" / "main.py" and "http://localhost:8502" in capsys.readouterr().err
    assert (ROOT / ".streamlit" / "config.toml").resolve() == ROOT / "app" / "streamlit.toml"  # one file


class Done:
    returncode = 0
