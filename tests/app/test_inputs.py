"""The app with the user's own models and images: every source of model, every kind of image, and every
kind of bad input (each one line that says what to do; nothing else breaks, and the app recovers)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from streamlit.testing.v1 import AppTest

from tests.support.apptest import (
    caption,
    clean,
    copied,
    figure_named,
    figures,
    named_titles,
    one_error,
    title,
)
from tests.support.toys import toy_checkpoint

VIEWS = ("views/explorer.py", "views/stages.py", "views/compare.py", "views/kernels.py", "views/model.py")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    made = {
        "toy": toy_checkpoint(folder / "toy.safetensors"),
        "convs": toy_checkpoint(folder / "convs.safetensors", layout="C-C-C-C"),
        "post": toy_checkpoint(folder / "post.safetensors", attention="post"),
    }
    state = load_file(made["toy"])
    key = next(k for k in state if k.endswith("attn.qkv.weight"))
    state[key] = torch.zeros(state[key].shape[0] + 3, state[key].shape[1])
    from safetensors import safe_open

    with safe_open(made["toy"], "pt") as f:
        metadata = f.metadata()
    made["wrong"] = folder / "wrong.safetensors"
    save_file(state, made["wrong"], metadata=metadata)
    made["foreign"] = folder / "foreign.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, made["foreign"])
    return made


def on_path(start: AppTest, path: Path | str) -> AppTest:
    """``start`` (a session of the test's own) moved on to the checkpoint at ``path``."""
    at = start
    at.radio(key="model_source").set_value("Checkpoint or weights file").run()
    assert at.text_input(key="model_path") and not at.error  # waits for a path, says so
    at.text_input(key="model_path").input(str(path)).run()
    return at


@pytest.mark.parametrize("view", VIEWS)
def test_a_checkpoint_by_path_on_every_page(checkpoints, view, explorer):
    at = on_path(explorer, checkpoints["toy"])
    at.switch_page(view).run()
    clean(at)
    assert caption(at).startswith("coatnet_toy, pre-normalization")
    assert at.selectbox(key="gallery_photos").value == "astronaut"  # 3 channels: the photos
    assert figures(at) or view == "views/model.py"


@pytest.mark.parametrize("view", VIEWS)
def test_a_model_without_attention_on_every_page(checkpoints, view, explorer):
    at = on_path(explorer, checkpoints["convs"])
    at.switch_page(view).run()
    clean(at)
    said = " ".join(i.value for i in at.info)
    if view in ("views/explorer.py", "views/compare.py"):
        assert "no attention blocks" in said
    if view == "views/kernels.py":
        assert "No attention blocks" in said


def test_a_post_checkpoint_compares_with_itself_run_pre(checkpoints, explorer):
    at = on_path(explorer, checkpoints["post"])
    at.session_state["compare_heads"] = True  # every head of each model, opened
    at.switch_page("views/compare.py").run()
    assert any("S3.0, pre: where query" in t for t in named_titles(clean(at), "comparison-maps"))
    assert "trained with post-normalization" in " ".join(c.value for c in at.main.caption)


def test_an_uploaded_checkpoint(checkpoints, explorer):
    at = explorer
    at.radio(key="model_source").set_value("Upload a checkpoint").run()
    at.file_uploader(key="model_upload").upload("toy.safetensors", checkpoints["toy"].read_bytes()).run()
    clean(at)
    assert caption(at).startswith("coatnet_toy")


@pytest.mark.parametrize(
    "what, message",
    [
        ("wrong", "qkv.weight"),
        ("foreign", "nor is it timm CoAtNet weights"),
        ("missing", "does not exist"),
        ("folder", "is a directory"),
    ],
)
def test_bad_checkpoints_get_one_line(checkpoints, what, message, explorer):
    path = {"missing": checkpoints["toy"].parent / "nothing.safetensors", "folder": checkpoints["toy"].parent}
    at = on_path(explorer, path.get(what, checkpoints.get(what)))
    assert message in one_error(at)
    at.radio(key="model_source").set_value("Built-in demo").run()
    clean(at)  # and back to work


def test_an_uploaded_file_that_is_no_checkpoint(explorer):
    at = explorer
    at.radio(key="model_source").set_value("Upload a checkpoint").run()
    at.file_uploader(key="model_upload").upload("notes.safetensors", b"just some text").run()
    assert "safetensors" in one_error(at).lower()


def test_timm_offline_says_how_to_load_the_file(monkeypatch, tmp_path, explorer):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    at = explorer
    at.radio(key="model_source").set_value("timm (ImageNet)").run()
    message = one_error(at)
    assert "Cannot download coatnet_nano_rw_224.sw_in1k" in message
    assert "https://huggingface.co/timm/coatnet_nano_rw_224.sw_in1k/resolve/main/model.safetensors" in message
    assert "'Checkpoint or weights file'" in message


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (40, 60, 1), dtype=np.uint8)], axis=2)
    exif = Image.Exif()
    exif[0x0112] = 6
    gif = io.BytesIO()
    frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(255 - rgb).convert("P")]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    return {
        "rgba.png": encoded(rgba, "PNG"),
        "grey.png": encoded(rgb[..., 0], "PNG"),
        "grey16.png": encoded((rgb[..., 0].astype(np.uint16) * 257), "PNG"),
        "cmyk.jpg": cmyk.getvalue(),
        "rotated.jpg": encoded(rgb, "JPEG", exif=exif),
        "anim.gif": gif.getvalue(),
        "photo.webp": encoded(rgb, "WEBP"),
        "photo.bmp": encoded(rgb, "BMP"),
    }


@pytest.fixture(scope="module")
def upload_chosen(first_run):
    """The explorer with "Upload" chosen as the image's source, built once: read-only."""
    at = copied(first_run)
    at.radio(key="image_source").set_value("Upload").run()
    return clean(at)


@pytest.fixture
def uploading(upload_chosen):
    """A session of the test's own, ready for an upload."""
    return copied(upload_chosen)


@pytest.mark.parametrize("name", list(images()))
def test_every_kind_of_image_uploads(uploading, name):
    uploader = uploading.file_uploader(key="image_upload")
    uploader.clear()
    uploader.upload(name, images()[name]).run()
    clean(uploading)
    assert any(f"{name.rsplit('.', 1)[0]} as given" in str(c.proto) for c in uploading.get("image"))
    assert "query (3, 3)" in title(figure_named(uploading, "fused-attention"))


def hundred_megapixels() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty.png", b"", "is empty (0 bytes)"),
        ("notes.png", b"these are notes, not pixels", "not an image"),
        ("cut.png", images()["rgba.png"][:300], "damaged or truncated"),
        ("huge.png", hundred_megapixels(), "100 megapixels"),
    ],
)
def test_bad_images_get_one_line_and_the_gallery_still_works(uploading, name, data, message):
    uploader = uploading.file_uploader(key="image_upload")
    uploader.clear()
    uploader.upload(name, data).run()
    said = one_error(uploading)
    assert (
        said.startswith(name)
        and message in said
        and ("choose" in said or "downscale" in said or "again" in said)
    )
    uploading.radio(key="image_source").set_value("Gallery").run()
    clean(uploading)
    uploading.radio(key="image_source").set_value("Upload").run()


def test_uploads_go_to_a_private_folder_of_this_user_and_never_to_one_another_may_write(tmp_path):
    """Uploaded checkpoints are kept under their digest's name, so the folder must be this user's alone:
    one made by another user (root's earlier run, say) or open to others is passed over for a new one."""
    import os
    import stat

    from app.cache import uploads_folder

    folder = uploads_folder(tmp_path)
    assert folder == tmp_path / f"coatnet-lens-uploads-{os.getuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert uploads_folder(tmp_path) == folder  # kept across starts
    folder.chmod(0o777)  # others may write: a planted file could take a digest's name
    other = uploads_folder(tmp_path)
    assert other != folder and other.parent == tmp_path and stat.S_IMODE(other.stat().st_mode) == 0o700
