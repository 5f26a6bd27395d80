"""Every cached computation of the app, in one place (docs/architecture.md, "The app").

Models are cached across sessions with ``st.cache_resource``, keyed by :class:`ModelKey` (what to load
and the attention mode); results with ``st.cache_data``, keyed by the model key and the image's bytes, so
clicking a new query only redraws. Each function returns analysis results (frozen dataclasses of numpy
arrays), never tensors.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import streamlit as st

import analysis
from analysis import (
    PictureView,
    as_batch,
    attention_maps,
    attention_rollout,
    attention_statistics,
    attributions,
    cka,
    compare,
    display_image,
    feature_maps,
    frequency_profile,
    gradcam_stages,
    load_image,
    load_model,
    picture_view,
    preprocessing_of,
    receptive_fields,
    relative_bias_kernels,
    top_k,
)
from app import gallery
from coatnet import CoAtNet, atomic_write, class_names, count_params, stage_costs
from coatnet.data import upright_picture
from coatnet.weights import download_timm_weights, with_normalization


def uploads_folder(base: Path | None = None) -> Path:
    """This user's folder for uploaded checkpoints: ``coatnet-lens-uploads-<uid>`` in the temporary
    directory, made private (0700). A folder of that name that is not ours, or that others may write to,
    is never used (another user could have put a file there under a digest's name): a new private
    folder is made instead."""
    base = Path(tempfile.gettempdir()) if base is None else base
    folder = base / f"coatnet-lens-uploads-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        facts = folder.lstat()
        if stat.S_ISDIR(facts.st_mode) and facts.st_uid == os.getuid() and not facts.st_mode & 0o022:
            folder.chmod(0o700)  # ours, and others could not write to it: nor read it from now on
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="coatnet-lens-uploads-", dir=base))


UPLOADS = uploads_folder()


def shared_result(max_entries: int, working: str | None = None):
    """Cache an analysis result for every session as one object, read-only: ``st.cache_resource``, not
    ``st.cache_data``, whose copy on every read cost more than the analysis itself at 224 (the attention
    maps of coatnet_0 at 224 are ~24 MB, read by several functions a run). Every array is made read-only
    first, so no page can change what another session sees. While it computes (a result not yet kept),
    the page shows a spinner saying what: ``working``, or "Computing" and the function's name."""

    def decorate(function):
        @functools.wraps(function)
        def computed(*args, **kwargs):
            return _read_only(function(*args, **kwargs))

        says = working or f"Computing {function.__name__.replace('_', ' ')}..."
        return st.cache_resource(max_entries=max_entries, show_spinner=says)(computed)

    return decorate


def session_result(max_entries: int):
    """Compute on request and keep for this session: for the slow analyses a page asks for with a button,
    drawn with a progress bar (``st.cache_data`` cannot draw one from inside). The decorated function takes
    ``progress`` (called with the share done); ``function.has(*args)`` says whether the result is kept
    (a page then draws it without asking again). Keyed by the arguments, an image's bytes and a set of
    images by their digest; at most ``max_entries`` a session, the oldest dropped first."""

    def decorate(function):
        store = f"session_results.{function.__name__}"

        @functools.wraps(function)
        def computed(*args, progress=None):
            results = st.session_state.setdefault(store, {})
            wanted = _request(args)
            if wanted not in results:
                if len(results) >= max_entries:
                    results.pop(next(iter(results)))
                results[wanted] = function(*args, progress=progress)
            return results[wanted]

        computed.has = lambda *args: _request(args) in st.session_state.get(store, {})
        return computed

    return decorate


def _request(value):
    """A session result's arguments as its key: bytes by their digest, inside tuples too (another image),
    and an :class:`analysis.ImageSet` by its own."""
    if isinstance(value, bytes):
        return image_id(value)
    if isinstance(value, analysis.ImageSet):
        return value.digest
    return tuple(_request(v) for v in value) if isinstance(value, tuple) else value


def _read_only(value):
    """``value`` with every numpy array in it (dataclasses, tuples, lists, dicts) made read-only."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _read_only(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            _read_only(item)
    elif isinstance(value, dict):
        for item in value.values():
            _read_only(item)
    return value


CKA_IMAGES = 16  # the unbiased HSIC over fewer images is noise (analysis.cka)


class ModelKey(NamedTuple):
    """What to load (a model spec, :func:`analysis.load_model`), the attention mode (``pre``, ``post``, or
    None for the mode it was trained with) and the device it runs on: every cache keyed by a model names
    its device too."""

    spec: str
    attention: str | None = None
    device: str = "cpu"


class Prepared(NamedTuple):
    """An image before and after the model's preprocessing, as uint8 pictures, the model's input size, and
    how the model sees the picture (:class:`analysis.PictureView`, for the query point), and what the
    preprocessing did to a picture the model was not made for (:func:`analysis.preparation_note`)."""

    original: np.ndarray
    seen: np.ndarray
    size: tuple[int, int]
    view: PictureView
    note: str | None = None
    warning: str | None = None  # the picture is too small or too long for the prediction to mean much


@st.cache_resource(max_entries=8, show_spinner="Loading the model...")
def model(key: ModelKey) -> CoAtNet:
    """The model ``key`` names, in eval mode on its device, shared by every session (analyses run on a
    per-call view of it where they need one: :func:`analysis.core.running.call_model`). A normalization
    named is the loaded model's weights run that way: its file is read once for both."""
    if key.attention is None:
        return load_model(key.spec, device=key.device)
    return with_normalization(model(ModelKey(key.spec, device=key.device)), key.attention)


def saved_upload(data: bytes, name: str) -> str:
    """An uploaded checkpoint written once to a temporary file named by its digest; returns its path."""
    suffix = (
        Path(name).suffix.lower() if Path(name).suffix.lower() in (".safetensors", ".bin", ".pth") else ""
    )
    path = UPLOADS / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix or '.safetensors'}"
    if not path.exists():  # two sessions uploading the same file at once each write it whole
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return str(path)


def timm_weights(tag: str, bar: type) -> str:
    """Download (or find in the hub cache) a timm tag's weights, drawing the progress with ``bar``."""
    return str(download_timm_weights(tag, progress=bar))


def image_id(data: bytes) -> str:
    """A short name for an image's bytes, for session state (never the bytes themselves)."""
    return hashlib.sha1(data).hexdigest()


def _image(data: bytes, name: str = "the image"):
    return load_image(data, name=name)


@shared_result(max_entries=64, working="Preparing the image for the model...")
def prepared(key: ModelKey, image: bytes, _name: str = "the image") -> Prepared:
    """The image as uploaded (EXIF-rotated, at most 512 px) and as the model sees it; a bad file's
    :class:`analysis.ImageError` names it ``_name`` (not part of the cache key)."""
    picture = upright_picture(_image(image, _name))
    net = model(key)
    view = picture_view((picture.height, picture.width), preprocessing_of(net))
    info = net.checkpoint_info
    dataset = info.provenance.get("dataset") if info is not None else None
    note = analysis.preparation_note(picture, preprocessing_of(net), class_names(net), dataset)
    warning = analysis.size_note((picture.height, picture.width), preprocessing_of(net))
    picture.thumbnail((512, 512))
    batch = as_batch(_image(image), net)
    seen = display_image(batch[0], preprocessing_of(net))
    return Prepared(np.asarray(picture), seen, tuple(batch.shape[-2:]), view, note, warning)


@shared_result(max_entries=32, working="Computing every block's attention...")
def attention(key: ModelKey, image: bytes):
    """Every attention block's maps and the logits (:func:`analysis.attention_maps`)."""
    return attention_maps(model(key), _image(image))


@st.cache_data(max_entries=32, show_spinner=False)
def predictions(key: ModelKey, image: bytes, k: int = 5):
    """The top-``k`` classes with their names."""
    return top_k(attention(key, image).logits[0], class_names(model(key)), k)


@shared_result(max_entries=64)
def rollout(key: ModelKey, image: bytes, query: int | None):
    """Attention rollout to the last attention block, from ``query`` (or averaged over queries)."""
    return attention_rollout(model(key), _image(image), query=query, maps=attention(key, image))


@shared_result(max_entries=32)
def statistics(key: ModelKey, image: bytes):
    """Mean distance, entropy and position share per head (:func:`analysis.attention_statistics`)."""
    return attention_statistics(model(key), _image(image), maps=attention(key, image))


@shared_result(max_entries=32)
def features(key: ModelKey, image: bytes):
    """Each stage's output (:func:`analysis.maps.features.feature_maps`)."""
    return feature_maps(model(key), _image(image))


@shared_result(max_entries=32)
def gradcams(key: ModelKey, image: bytes, target: int | None = None) -> tuple:
    """Grad-CAM of class ``target`` (default: the predicted one) at every stage, S0..S4."""
    return gradcam_stages(model(key), _image(image), target=target)


@shared_result(max_entries=32)
def relevance_ledger(key: ModelKey, image: bytes, target: int, rule: str):
    """Layer-wise relevance of class ``target`` under ``rule`` with its ledger (:func:`analysis.lrp`)."""
    return analysis.lrp(model(key), _image(image), target=target, rule=rule)


@shared_result(max_entries=32)
def class_attribution(key: ModelKey, image: bytes, method: str, target: int):
    """A one-pass attribution method of the registry (layer-wise relevance), of class ``target``."""
    return attributions(model(key), _image(image), method=method, target=target)


@session_result(max_entries=8)
def pixel_attribution(key: ModelKey, image: bytes, method: str, target: int, progress=None):
    """Integrated Gradients, occlusion or another attribution method of :func:`analysis.explainers`, of
    class ``target`` (:func:`analysis.attributions`; slow: asked for with a button)."""
    return attributions(model(key), _image(image), method=method, target=target, progress=progress)


@st.cache_data(max_entries=8, show_spinner="Comparing the stages over every image of the gallery (CKA)...")
def gallery_cka(key: ModelKey, kind: str):
    """Linear CKA between the stages of the model over every image of a gallery (None under 16)."""
    samples = gallery.samples(kind)
    if len(samples) < CKA_IMAGES:
        return None
    return cka(model(key), [sample.image() for sample in samples])


@shared_result(max_entries=32)
def fields(key: ModelKey, image: bytes):
    """Theoretical and effective receptive fields of every stage for this image."""
    return receptive_fields(model(key), _image(image))


@shared_result(max_entries=32)
def frequency(key: ModelKey, image: bytes):
    """The frequency profile of every block (:func:`analysis.frequency_profile`)."""
    return frequency_profile(model(key), _image(image))


@shared_result(max_entries=16)
def kernels(key: ModelKey):
    """Relative-bias kernels of every head and the MBConv depthwise kernels."""
    return relative_bias_kernels(model(key))


@shared_result(max_entries=32)
def comparison(a: ModelKey, b: ModelKey, image: bytes, pixel: tuple[float, float], labels: tuple[str, str]):
    """Two models on one image at one query, an input pixel of ``a`` (:meth:`analysis.Query.centre`):
    :func:`analysis.compare`, on both models' cached attention maps when the two prepare images alike (the
    same checkpoint both ways, the demos)."""
    net_a, net_b = model(a), model(b)
    alike = preprocessing_of(net_a) == preprocessing_of(net_b)
    maps = (attention(a, image), attention(b, image)) if alike else None
    return compare(net_a, net_b, _image(image), pixel=pixel, labels=labels, maps=maps)


@st.cache_data(max_entries=16, show_spinner="Counting parameters and multiply-accumulates...")
def costs(key: ModelKey) -> tuple[int, tuple]:
    """Total parameters, and per-part parameters and MACs at the model's input size."""
    net = model(key)
    return count_params(net), tuple(stage_costs(net))


@st.cache_data(max_entries=16, show_spinner=False)
def stages(key: ModelKey) -> tuple:
    """What each stage is (:meth:`coatnet.CoAtNet.stage_info`) at the model's input size."""
    return tuple(model(key).stage_info())


@st.cache_data(max_entries=16, show_spinner=False)
def run_record(key: ModelKey) -> tuple[str | None, tuple[dict, ...]]:
    """The model card and per-epoch metrics of a shipped or trained checkpoint (None and () if none):
    a built-in checkpoint's own, or ``MODEL_CARD.md`` / ``metrics.json`` beside a checkpoint file."""
    import json

    from coatnet import parse_model_name
    from coatnet.weights import demo

    name = parse_model_name(key.spec)
    if name.kind == "builtin":
        found = demo(name.value)
        return found.model_card, tuple(found.metrics())
    folder = Path(key.spec).expanduser().parent
    card = folder / "MODEL_CARD.md"
    metrics = folder / "metrics.json"
    try:
        rows = tuple(json.loads(metrics.read_text())) if metrics.is_file() else ()
    except (OSError, ValueError):
        rows = ()
    return (card.read_text() if card.is_file() else None), rows


@shared_result(max_entries=32)
def intervention_effect(key: ModelKey, image: bytes, interventions: tuple, target: int | None):
    """The image before and after ``interventions`` (:func:`analysis.intervention_effect`)."""
    net = model(key)
    return analysis.intervention_effect(
        net, _image(image), interventions, target=target, class_names=class_names(net)
    )


@session_result(max_entries=8)
def head_importance(key: ModelKey, image: bytes, target: int | None, progress=None):
    """Each head's logit drop when knocked out alone, batched (:func:`analysis.head_importance`)."""
    return analysis.head_importance(model(key), _image(image), target=target, progress=progress)


@shared_result(max_entries=32)
def relevance(key: ModelKey, image: bytes, target: int, method: str):
    """Class-specific relevance of class ``target`` through the attention blocks
    (:func:`analysis.class_relevance`, ``relevance`` or ``grad_rollout``)."""
    return analysis.class_relevance(model(key), _image(image), target=target, method=method)


@session_result(max_entries=4)
def faithfulness(key: ModelKey, image: bytes, progress=None):
    """Every explanation's faithfulness for the predicted class (:func:`analysis.faithfulness`)."""
    return analysis.faithfulness(model(key), _image(image), progress=progress)


@session_result(max_entries=4)
def sanity(key: ModelKey, image: bytes, progress=None):
    """Model parameter randomisation and the random logit test of every explanation of the predicted
    class (:func:`analysis.sanity_checks`)."""
    return analysis.sanity_checks(model(key), _image(image), progress=progress)


@session_result(max_entries=2)
def image_set(key: ModelKey, source: tuple, progress=None) -> analysis.ImageSet:
    """The set of images ``source`` names, labelled by the model's classes where its folders name them:
    ``("uploads", ((name, bytes), ...))`` (:func:`analysis.read_uploads`) or ``("folder", path)``
    (:func:`analysis.read_folder`); an :class:`analysis.ImageSetError` says which limit it breaks."""
    classes = class_names(model(key))
    kind, given = source
    if kind == "folder":
        return analysis.read_folder(given, class_names=classes, progress=progress)
    return analysis.read_uploads(given, class_names=classes, progress=progress)


@session_result(max_entries=4)
def set_study(key: ModelKey, images: analysis.ImageSet, method: str | None, progress=None):
    """The study of a set of images with the faithfulness of ``method`` (or none), kept per set (by its
    digest), model and method (:func:`analysis.study_image_set`; slow: asked for with a button)."""
    return analysis.study_image_set(model(key), images, method=method, progress=progress)


def has_attention(key: ModelKey) -> bool:
    """Whether the model has attention blocks (whose relative-bias kernels it has)."""
    return bool(kernels(key).bias)


@st.cache_data(max_entries=8, show_spinner=False)
def study(spec: str) -> analysis.Study:
    """A study's summary (:func:`analysis.load_study`): a shipped one by name or a folder."""
    return analysis.load_study(spec)


def layout_models() -> tuple[str, ...]:
    """The layout study's built-in checkpoints that are installed (``layout-c-c-c-c`` ..)."""
    from coatnet.weights import LAYOUT_NAMES, NAMES

    return tuple(name for name in LAYOUT_NAMES if name in NAMES)


def layout_grid(names: tuple[str, ...], device: str) -> tuple[int, int, float]:
    """The S3 grid every layout model shares (rows, cols) and its input pixels per cell."""
    net = model(ModelKey(names[0], device=device))
    size = preprocessing_of(net).size
    grid = tuple(net.stage_info(size)[3].grid)
    return grid[0], grid[1], size[0] / grid[0]


def _layout_models(names: tuple[str, ...], device: str) -> dict:
    nets = {name: model(ModelKey(name, device=device)) for name in names}
    return {net.config.layout: net for net in nets.values()}


@shared_result(max_entries=16)
def layout_views(
    names: tuple[str, ...], image: bytes, what: str, pixel: tuple[float, float] | None, device: str
):
    """The image through every layout's model on ``device``, stage by stage, its ``what`` maps alone (the
    query at input ``pixel`` for ``attention``; None for the others, which no query changes)
    (:func:`analysis.studies.layouts.compare_layouts`)."""
    from analysis import compare_layouts

    return compare_layouts(_layout_models(names, device), _image(image), pixel=pixel, views=[what])


def layout_picture(spec: str, image: bytes, device: str):
    """The picture the layout model ``spec`` sees."""
    return prepared(ModelKey(spec, device=device), image).seen


@shared_result(max_entries=4)
def layout_similarity(names: tuple[str, ...], device: str):
    """Linear CKA between the same stage of every two layouts over the Fashion-MNIST gallery (None with
    fewer than two layouts)."""
    from analysis import layout_similarity as similarity

    if len(names) < 2:
        return None
    images = [sample.image() for sample in gallery.samples("fashion-mnist")]
    return similarity(_layout_models(names, device), images)


@st.cache_data(max_entries=2, show_spinner="Reading the layout models' shipped probes...")
def layout_probes() -> list[analysis.Probes]:
    """The shipped linear probes of the layout models (probes.json each), in the study's order."""
    return analysis.layout_probes()


@st.cache_data(max_entries=2, show_spinner=False)
def layout_study() -> analysis.LayoutStudy | None:
    """The shipped layout study (layouts.json), or None."""
    from analysis import load_layouts

    try:
        return load_layouts()
    except ValueError:
        return None


def _corrupted(corrupted: tuple) -> dict:
    """The keyword arguments naming the corrupted input: ``("corruption", kind, sigma)`` of the clean
    image, or ``("image", bytes)``, another picture."""
    if corrupted[0] == "image":
        return {"corrupted": _image(corrupted[1])}
    return {"corruption": analysis.Corruption(corrupted[1], sigma=float(corrupted[2]))}


@session_result(max_entries=8)
def patching(
    key: ModelKey, image: bytes, corrupted: tuple, direction: str, metric: str, classes: tuple, progress=None
):
    """Every block's, branch's and head's recovery (:func:`analysis.activation_patching`); ``classes`` is
    (target, foil), None for the two predictions."""
    target, foil = classes
    return analysis.activation_patching(
        model(key), _image(image), **_corrupted(corrupted), direction=direction, metric=metric,
        target=target, foil=foil, progress=progress,
    )  # fmt: skip


@session_result(max_entries=16)
def position_patching(
    key: ModelKey,
    image: bytes,
    corrupted: tuple,
    direction: str,
    metric: str,
    classes: tuple,
    block: str,
    progress=None,
):
    """The recovery of each position of ``block``'s output (:func:`analysis.position_patching`)."""
    target, foil = classes
    return analysis.position_patching(
        model(key), _image(image), **_corrupted(corrupted), block=block, direction=direction,
        metric=metric, target=target, foil=foil, progress=progress,
    )  # fmt: skip
