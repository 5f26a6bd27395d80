"""Devices: CUDA by default where present, the CPU otherwise; a missing device refused in one line by
every command that takes --device."""

from __future__ import annotations

import pytest
import torch

from coatnet.cli.commands import main
from coatnet.devices import available_devices, default_device, resolve_device


def test_the_default_is_cuda_where_present_else_the_cpu():
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None).type == default_device()
    assert available_devices()[0] == default_device() and "cpu" in available_devices()
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "command",
    [
        ["eval", "demo-pre", "--limit", "8", "--device", "cuda"],
        [
            "analyze",
            "app/gallery/fashion-mnist/00-t-shirt-top-0019.png",
            "--out",
            "{out}",
            "--device",
            "cuda",
        ],
    ],
)
def test_asking_for_cuda_without_it_is_refused_in_one_line(command, tmp_path, capsys):
    code = main([part.format(out=tmp_path) for part in command])
    error = capsys.readouterr().err
    assert (
        code == 2 and error.count("\n") == 1 and "CUDA is not available" in error and "--device cpu" in error
    )
    assert "Traceback" not in error


def test_analyze_runs_on_the_device_it_is_given(tmp_path, capsys):
    picture = "app/gallery/fashion-mnist/00-t-shirt-top-0019.png"
    assert main(["analyze", picture, "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    assert (tmp_path / "report.html").exists()
