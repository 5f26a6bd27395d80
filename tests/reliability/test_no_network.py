"""No network: choosing a timm tag answers at once, without the hub client's timeouts and retries. A
stand-in hub accepts connections and never answers; the test counts calls, it times nothing. The failure
is remembered for the session, and "Try again" asks once more."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import coatnet.weights.hub
from tests.support.apptest import fresh, one_error


@pytest.fixture
def silent_hub() -> Iterator[tuple[str, list[socket.socket]]]:
    """An address that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, int]:
    """Counts the app's hub checks and the hub client's downloads (which must not happen)."""
    calls = {"check": 0, "download": 0}
    real_check = coatnet.weights.hub.check_hub

    def check(tag: str, **kwargs) -> None:
        calls["check"] += 1
        real_check(tag, **{"timeout": 1.0, **kwargs})

    def download(*args, **kwargs):
        calls["download"] += 1
        raise AssertionError("the hub client was called although the hub does not answer")

    monkeypatch.setattr(coatnet.weights, "check_hub", check)  # the face the app reads
    monkeypatch.setattr(coatnet.weights.hub, "hf_hub_download", download)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    return calls


def test_a_hub_that_never_answers_is_said_at_once_remembered_and_retried(
    silent_hub, counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, held = silent_hub
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", address)
    at = fresh()
    at.run()
    at.radio(key="model_source").set_value("timm (ImageNet)").run()
    assert "Cannot download coatnet_nano_rw_224.sw_in1k" in one_error(at)
    assert counted == {"check": 1, "download": 0} and len(held) >= 1  # it asked the hub, once
    at.run()  # any later run of the session: remembered, not asked again
    assert "Cannot download" in one_error(at) and counted["check"] == 1
    at.button(key="hub_try_again").click().run()
    assert "Cannot download" in one_error(at) and counted == {"check": 2, "download": 0}


def test_offline_mode_asks_nobody(counted: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(coatnet.HubUnavailableError, match="offline mode"):
        coatnet.weights.check_hub("coatnet_0_rw_224.sw_in1k", endpoint="http://192.0.2.1")  # never contacted
    at = fresh()
    at.run()
    at.radio(key="model_source").set_value("timm (ImageNet)").run()
    assert "Cannot download" in one_error(at) and counted == {"check": 2, "download": 0}  # ours and the app's
