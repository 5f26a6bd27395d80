"""Hub downloads without the network: a patched ``hf_hub_download``, offline mode, and a loopback fake hub."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import huggingface_hub.utils as hf_utils
import pytest
from tqdm import tqdm

from coatnet.weights import hub
from coatnet.weights.hub import HubModelNotFoundError, HubUnavailableError, download_timm_weights, split_tag
from tests.support.timm import import_timm

TAG = "coatnet_0_rw_224.sw_in1k"
URL = f"https://huggingface.co/timm/{TAG}/resolve/main/model.safetensors"


def http_error(cls: type[Exception], status: int, message: str = "error") -> Exception:
    """One of huggingface_hub's HTTP errors, built as the installed version allows."""
    response = SimpleNamespace(status_code=status, headers={}, request=None, url=URL)
    try:
        return cls(message, response=response)
    except TypeError:  # a plain Exception in this version (e.g. EntryNotFoundError in 1.x and 2.x)
        return cls(message)


REMOTE_ENTRY_NOT_FOUND = getattr(hf_utils, "RemoteEntryNotFoundError", hf_utils.EntryNotFoundError)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[tuple[str, str, dict]]]:
    """Patch ``hf_hub_download`` with ``answer(filename)``: a path to return, or an error to raise."""

    def install(answer: Callable[[str], object]) -> list[tuple[str, str, dict]]:
        seen: list[tuple[str, str, dict]] = []

        def fake(repo_id: str, filename: str, **kwargs: object) -> str:
            seen.append((repo_id, filename, kwargs))
            result = answer(filename)
            if isinstance(result, BaseException):
                raise result
            return str(result)

        monkeypatch.setattr(hub, "hf_hub_download", fake)
        return seen

    return install


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (TAG, ("coatnet_0_rw_224", "sw_in1k")),
        ("coatnet_0_rw_224", ("coatnet_0_rw_224", None)),
        ("timm/coatnet_2_rw_224.sw_in12k_ft_in1k", ("coatnet_2_rw_224", "sw_in12k_ft_in1k")),
        ("resnet50.a1_in1k", ("resnet50", "a1_in1k")),
        ("vit_base.tag.with.dots", ("vit_base", "tag.with.dots")),  # timm splits at the first dot
    ],
)
def test_split_tag(tag: str, expected: tuple[str, str | None]) -> None:
    assert split_tag(tag) == expected


@pytest.mark.parametrize("tag", ["", ".sw_in1k", "coatnet_0_rw_224.", "a b.c", "other/coatnet.x", "../x", 3])
def test_malformed_tags_are_value_errors(tag: object, calls: Callable) -> None:
    seen = calls(lambda filename: "/never")
    with pytest.raises(ValueError, match="not a timm hub tag"):
        split_tag(tag)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a timm hub tag"):
        download_timm_weights(tag)  # type: ignore[arg-type]
    assert seen == []


def test_bare_names_get_timm_default_tags(calls: Callable, tmp_path: Path) -> None:
    seen = calls(lambda filename: tmp_path / filename)
    download_timm_weights("coatnet_2_rw_224")
    download_timm_weights("coatnet_nano_rw_224")
    assert [s[0] for s in seen] == [
        "timm/coatnet_2_rw_224.sw_in12k_ft_in1k",
        "timm/coatnet_nano_rw_224.sw_in1k",
    ]
    with pytest.raises(ValueError, match="no pretrained tag and is not a known architecture"):
        download_timm_weights("coatnet_9_rw_224")
    assert len(seen) == 2


def test_weights_url() -> None:
    assert hub.weights_url(TAG) == URL
    assert hub.weights_url("coatnet_0_rw_224", "pytorch_model.bin", endpoint="http://mirror/") == (
        f"http://mirror/timm/{TAG}/resolve/main/pytorch_model.bin"
    )


def test_success_returns_the_downloaded_file(calls: Callable, tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    seen = calls(lambda filename: weights)
    path = download_timm_weights(TAG, cache_dir=tmp_path / "cache")
    assert path == weights and isinstance(path, Path)
    ((repo_id, filename, kwargs),) = seen
    assert (repo_id, filename) == (f"timm/{TAG}", "model.safetensors")
    assert kwargs["cache_dir"] == tmp_path / "cache"
    assert "tqdm_class" not in kwargs  # huggingface_hub's own progress bar


def test_no_progress_passes_a_silent_bar(calls: Callable, tmp_path: Path) -> None:
    seen = calls(lambda filename: tmp_path / filename)
    download_timm_weights(TAG, progress=False)
    bar_class = seen[0][2]["tqdm_class"]
    with bar_class(total=10, desc="x", name="huggingface_hub.download") as bar:
        bar.update(5)
        assert bar.disable


def test_a_front_ends_bar_class_draws_the_progress(calls: Callable, tmp_path: Path) -> None:
    class FrontEndBar(tqdm):
        pass

    seen = calls(lambda filename: tmp_path / filename)
    download_timm_weights(TAG, progress=FrontEndBar)
    assert seen[0][2]["tqdm_class"] is FrontEndBar


def test_falls_back_to_pytorch_model_bin_only_without_safetensors(calls: Callable, tmp_path: Path) -> None:
    def answer(filename: str) -> object:
        if filename == "model.safetensors":
            return http_error(REMOTE_ENTRY_NOT_FOUND, 404)
        return tmp_path / filename

    seen = calls(answer)
    assert download_timm_weights(TAG) == tmp_path / "pytorch_model.bin"
    assert [s[1] for s in seen] == ["model.safetensors", "pytorch_model.bin"]


def test_repo_without_weights(calls: Callable) -> None:
    calls(lambda filename: http_error(REMOTE_ENTRY_NOT_FOUND, 404))
    with pytest.raises(HubModelNotFoundError, match=r"neither model\.safetensors nor pytorch_model\.bin"):
        download_timm_weights(TAG)


def test_missing_repo_says_no_such_model(calls: Callable) -> None:
    calls(lambda filename: http_error(hf_utils.RepositoryNotFoundError, 401))
    with pytest.raises(
        HubModelNotFoundError, match=r"No such model on the Hugging Face hub: timm/nope\.x"
    ) as info:
        download_timm_weights("nope.x")
    assert isinstance(info.value, ValueError)
    assert TAG in str(info.value)  # lists the real tags


def test_gated_repo(calls: Callable) -> None:
    calls(lambda filename: http_error(hf_utils.GatedRepoError, 403))
    with pytest.raises(HubModelNotFoundError, match="is gated"):
        download_timm_weights(TAG)


def assert_offline_advice(error: HubUnavailableError, url: str = URL) -> None:
    message = str(error)
    assert url in message
    assert "coatnet.from_timm('/path/to/model.safetensors', arch='coatnet_0_rw_224')" in message
    assert "coatnet import-timm /path/to/model.safetensors --arch coatnet_0_rw_224 --out " in message
    assert (error.url, error.arch, error.tag) == (url, "coatnet_0_rw_224", TAG)
    assert isinstance(error, RuntimeError)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (hf_utils.LocalEntryNotFoundError("not cached"), "could not be reached"),
        (hf_utils.OfflineModeIsEnabled("offline"), "OfflineModeIsEnabled"),
        (ConnectionError("connection refused"), "connection refused"),
        (TimeoutError("timed out"), "timed out"),
        (http_error(hf_utils.HfHubHTTPError, 503, "503 Server Error"), "the hub answered: 503 Server Error"),
        (http_error(hf_utils.HfHubHTTPError, 429, "429 Too Many Requests"), "429"),
    ],
)
def test_network_failures_give_offline_advice(calls: Callable, error: Exception, reason: str) -> None:
    calls(lambda filename: error)
    with pytest.raises(HubUnavailableError, match=reason) as info:
        download_timm_weights(TAG)
    assert_offline_advice(info.value)
    assert info.value.__cause__ is error


def test_a_bug_is_not_disguised_as_a_network_failure(calls: Callable) -> None:
    calls(lambda filename: KeyError("bug"))
    with pytest.raises(KeyError, match="bug"):
        download_timm_weights(TAG)


@pytest.mark.parametrize("patch_constant", [True, False], ids=["constant", "env-only"])
def test_offline_mode_fails_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, patch_constant: bool
) -> None:
    """The real hf_hub_download with HF_HUB_OFFLINE=1; huggingface_hub reads it at import, so the
    env-only case (set after import) relies on our own check of the environment."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", patch_constant)
    cache = tmp_path / "cache"
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match=r"offline mode is on \(HF_HUB_OFFLINE\)") as info:
        download_timm_weights(TAG, cache_dir=cache)
    assert time.perf_counter() - start < 5
    assert_offline_advice(info.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written


def fill_cache(cache: Path, tag: str, filename: str, data: bytes) -> Path:
    """A file in the layout of the hub cache, as hf_hub_download leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--timm--{tag}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    path = repo / "snapshots" / commit / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_offline_mode_uses_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cached = fill_cache(tmp_path, TAG, "model.safetensors", b"weights")
    assert download_timm_weights("coatnet_0_rw_224", cache_dir=tmp_path, progress=False) == cached


def test_cached_timm_weights_looks_without_the_network(tmp_path: Path) -> None:
    assert hub.cached_timm_weights(TAG, cache_dir=tmp_path) is None
    cached = fill_cache(tmp_path, TAG, "model.safetensors", b"weights")
    assert hub.cached_timm_weights("coatnet_0_rw_224", cache_dir=tmp_path) == cached


class FakeHub(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the hub: repositories named ``nosuch*`` do not exist, and the others
    have only ``pytorch_model.bin``."""

    commit = "c" * 40
    body = b"legacy weights"

    def log_message(self, *args: object) -> None:
        pass

    def _head(self) -> bool:
        if "/timm/nosuch" in self.path or not self.path.endswith("/pytorch_model.bin"):
            self.send_response(404)
            self.send_header(
                "X-Error-Code", "RepoNotFound" if "/timm/nosuch" in self.path else "EntryNotFound"
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        self.send_response(200)
        self.send_header("ETag", '"blob1"')
        self.send_header("X-Repo-Commit", self.commit)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        return True

    def do_HEAD(self) -> None:
        self._head()

    def do_GET(self) -> None:
        if self._head():
            self.wfile.write(self.body)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_real_download_from_a_loopback_hub(
    fake_hub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = download_timm_weights(TAG, cache_dir=tmp_path, progress=False, endpoint=fake_hub)
    assert path.name == "pytorch_model.bin" and path.read_bytes() == FakeHub.body
    assert path.is_relative_to(tmp_path)
    # then offline, or with the hub gone: the legacy file from the cache it filled
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert download_timm_weights(TAG, cache_dir=tmp_path, endpoint=fake_hub) == path
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args: object, **kwargs: object) -> str:
        raise hf_utils.LocalEntryNotFoundError("connection refused")  # what hf raises, after its retries

    monkeypatch.setattr(hub, "hf_hub_download", unreachable)
    assert download_timm_weights(TAG, cache_dir=tmp_path) == path
    with pytest.raises(HubUnavailableError):  # nothing cached for another tag
        download_timm_weights("coatnet_nano_rw_224", cache_dir=tmp_path)


def test_real_missing_repo_from_a_loopback_hub(fake_hub: str, tmp_path: Path) -> None:
    with pytest.raises(HubModelNotFoundError, match="No such model"):
        download_timm_weights("nosuch_model.x", cache_dir=tmp_path, endpoint=fake_hub)


@pytest.mark.timm
def test_default_tags_and_repos_match_timm() -> None:
    timm = import_timm()
    from timm.models import get_pretrained_cfg

    published = [
        tag
        for family in ("coatnet*", "coatnext*", "maxvit*", "maxxvit*")
        for tag in timm.list_pretrained(family)
    ]
    tags = [tag for tag in published if not tag.endswith(".untrained")]
    assert {tag.split(".")[0] for tag in tags} == set(hub.DEFAULT_TAGS)
    for arch, pretrained in hub.DEFAULT_TAGS.items():
        assert get_pretrained_cfg(arch).tag == pretrained  # what timm.create_model(arch) would load
    for tag in tags:
        assert get_pretrained_cfg(tag).hf_hub_id == f"timm/{hub.resolve_tag(tag)}"
    # every published tag, with timm's class count and preprocessing
    assert set(hub.PRETRAINED_TAGS) == set(tags)
    for tag, facts in hub.PRETRAINED_TAGS.items():
        cfg = get_pretrained_cfg(tag)
        assert facts["classes"] == cfg.num_classes, tag
        assert facts.get("mean", [0.5] * 3) == pytest.approx(list(cfg.mean)), tag
        assert facts.get("std", [0.5] * 3) == pytest.approx(list(cfg.std)), tag
        assert facts.get("crop", 0.95) == pytest.approx(cfg.crop_pct), tag
        assert cfg.interpolation == "bicubic"
