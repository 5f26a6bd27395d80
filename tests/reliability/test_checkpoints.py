"""Hostile and broken checkpoints through every door: the API, `coatnet info`, `coatnet eval`,
`coatnet analyze` and the app. Each is refused in one line that names the file and says what to do, with
the project's own exception type; a pickle's code never runs; an absurd config is refused before any
module is built (checked in a subprocess whose address space is capped at 2 GB)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import analysis
import coatnet
from coatnet.cli.commands import main as coatnet_main
from tests.reliability.hostile import CHECKPOINTS, MARKER
from tests.support import processes
from tests.support.apptest import fresh, one_error
from tests.support.toys import toy_checkpoint

SURFACES = ("load_model", "load_checkpoint", "info", "eval", "analyze", "app")
APP_CASES = ("pickle-pth", "zip-bin", "flipped-weights", "width-1e9", "other-arch", "missing", "png-as-pth")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    made = {}
    for name, (build, _) in CHECKPOINTS.items():
        made[name] = build(tmp_path_factory.mktemp(name))
    return made


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image") / "picture.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(path)
    return path


def check_line(message: str, fragment: str, path: Path) -> None:
    """One line, naming the file, holding the expected words, never torch's advice to unpickle."""
    message = message.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert fragment.lower() in message.lower(), message
    assert path.name in message, message
    assert "weights_only=False" not in message and "weights_only" not in message, message


def refusal(surface: str, path: Path, image: Path, tmp_path: Path, capsys) -> str:
    """The one line ``surface`` answers ``path`` with (it must refuse)."""
    if surface in ("load_model", "load_checkpoint"):
        load = analysis.load_model if surface == "load_model" else coatnet.load_checkpoint
        with pytest.raises(coatnet.CheckpointError) as caught:
            load(str(path))
        return str(caught.value)
    if surface == "app":
        at = fresh()
        at.run()
        at.radio(key="model_source").set_value("Checkpoint or weights file").run()
        at.text_input(key="model_path").input(str(path)).run()
        return one_error(at)
    argv = {
        "info": ["info", str(path)],
        "eval": ["eval", str(path), "--data", str(tmp_path), "--quiet"],
        "analyze": ["analyze", str(image), "--model", str(path), "--out", str(tmp_path / "out"), "--quiet"],
    }[surface]
    capsys.readouterr()
    code = coatnet_main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("case", "surface"),
    [
        (case, surface)
        for case in CHECKPOINTS
        for surface in SURFACES
        if surface != "app" or case in APP_CASES  # the app loads through load_model: a sample is enough
    ],
)
def test_a_hostile_checkpoint_is_refused_in_one_line(
    case: str, surface: str, hostile: dict[str, Path], image: Path, tmp_path: Path, capsys
) -> None:
    path = hostile[case]
    message = refusal(surface, path, image, tmp_path, capsys)
    fragment = CHECKPOINTS[case][1]
    if surface == "load_checkpoint" and case == "foreign-safetensors":
        fragment = "without CoAtNet Lens metadata"  # ours only: timm weights go through the model's name
    check_line(message, fragment, path)
    assert not (path.parent / MARKER).exists(), "the pickle's code ran"


@pytest.mark.slow
def test_an_absurd_config_is_refused_before_anything_is_built(hostile: dict[str, Path]) -> None:
    """`coatnet info` and `coatnet eval` of each absurd config, one after another in one process whose
    address space is capped at 2 GB: each exits 2 with its line (a build would not fit)."""
    cases = ("width-1e9", "width-1e5", "blocks-1e6")
    capped = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
        "from coatnet.cli.commands import main\n"
        "for command, path in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    args = [command, path] + ['--quiet'] * (command == 'eval')\n"
        "    print(main(args), flush=True); print('--- end', file=sys.stderr, flush=True)"
    )
    argv = [word for case in cases for command in ("info", "eval") for word in (command, str(hostile[case]))]
    done = processes.run([sys.executable, "-c", capped, *argv], timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2"] * 6, done.stdout
    said = done.stderr.split("--- end\n")
    for n, case in enumerate(cases):
        for told in said[2 * n : 2 * n + 2]:
            check_line(told, "the limit", hostile[case])


def test_a_tilde_in_a_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    toy_checkpoint(tmp_path / "mine.safetensors")
    assert analysis.load_model("~/mine.safetensors").config.name == "coatnet_toy"
    assert coatnet.load_checkpoint("~/mine.safetensors").config.name == "coatnet_toy"
    assert coatnet_main(["info", "~/mine.safetensors"]) == 0
    assert "coatnet_toy" in capsys.readouterr().out


def test_a_saved_checkpoint_carries_a_digest_that_a_clean_load_passes(tmp_path: Path) -> None:
    path = toy_checkpoint(tmp_path / "clean.safetensors")
    assert len(coatnet.read_checkpoint_info(path).extra) == 0
    assert coatnet.load_checkpoint(path).config.name == "coatnet_toy"
    assert coatnet.load_checkpoint("demo-pre").config.name  # saved before digests: still loads
