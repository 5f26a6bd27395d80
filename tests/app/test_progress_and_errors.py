"""The download bar draws into Streamlit, and input errors become one line that says what to do."""

from __future__ import annotations

from app import errors
from app.progress import streamlit_bar
from coatnet import CheckpointError
from coatnet.weights.hub import HubUnavailableError


class Placeholder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def progress(self, value: float, text: str) -> None:
        self.calls.append((value, text))


def test_the_bar_reports_megabytes_and_the_fraction_done():
    placeholder = Placeholder()
    bar_class = streamlit_bar(placeholder)
    with bar_class(total=4_000_000, desc="model.safetensors", name="huggingface_hub.http_get") as bar:
        bar.update(1_000_000)
        bar.refresh()
        bar.update(3_000_000)
    value, text = placeholder.calls[-1]
    assert value == 1.0 and text == "Downloading model.safetensors: 4 of 4 MB"
    assert any(v == 0.25 for v, _ in placeholder.calls)


def test_offline_hub_says_where_the_file_is_and_how_to_load_it():
    error = HubUnavailableError("coatnet_0_rw_224.sw_in1k", "https://hub/model.safetensors", "offline")
    line = errors.message(error)
    assert "\n" not in line and "https://hub/model.safetensors" in line
    assert "'Checkpoint or weights file'" in line


def test_messages_are_one_line():
    assert errors.message(CheckpointError("bad keys\nmore detail")) == "bad keys"
    assert errors.message(KeyError("no block 'S9.0'")) == "no block 'S9.0'"
    assert "is a folder" in errors.message(IsADirectoryError(21, "Is a directory", "/tmp"))


def test_every_cached_computation_says_what_it_is_doing_while_it_runs():
    """A page waiting on a computation shows a spinner naming it (Streamlit draws the cache's spinner only
    while the result is computed); only what is read from files or from another cached result is quiet."""
    from streamlit.runtime.caching.cache_utils import CachedFunc

    from app import cache

    quiet = {"predictions", "stages", "run_record", "study", "layout_study"}  # reads, not computations
    cached = {name: f for name, f in vars(cache).items() if isinstance(f, CachedFunc)}
    assert {"attention", "prepared", "rollout", "model", "gallery_cka", "costs"} <= set(cached)
    silent = sorted(name for name, f in cached.items() if not f._info.show_spinner and name not in quiet)
    assert silent == []
    assert all(isinstance(cached[n]._info.show_spinner, str) for n in cached if n not in quiet)
