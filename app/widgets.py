"""Widgets that only return values: the model and image pickers of the sidebar, and the query, block,
head and part pickers of the pages. Each keeps its value under a fixed session-state key, so tests (and
other widgets, such as a click on a heatmap) can set it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from analysis import PictureView, Query
from analysis.figures import DEFAULT_OPACITY, MAX_WIDTH
from app import gallery
from app.cache import ModelKey, saved_upload
from coatnet import available_devices
from coatnet.weights import NAMES, PRETRAINED_TAGS

# the timm tags the pages analyse: CoAtNet's and MaxViT's (windowed attention, mapped as computed)
TIMM_TAGS = tuple(PRETRAINED_TAGS)

MODEL_SOURCES = ("Built-in demo", "timm (ImageNet)", "Checkpoint or weights file", "Upload a checkpoint")
ATTENTION = {"as trained": None, "pre-normalization": "pre", "post-normalization": "post"}
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
PARTS = {
    "effective": "effective (as applied)",
    "content": "content only",
    "bias": "bias only, w(key - query)",
    "bias_softmax": "softmax(bias)",
}
# session-state keys the app owns, each written here once: the widgets keep their values under them, and a
# link (app.urlstate), a heatmap click and the tests read and set them through these names
MODEL_SOURCE, DEMO_NAME, TIMM_TAG = "model_source", "demo_name", "timm_tag"  # the sidebar's model
MODEL_PATH, MODEL_UPLOAD = "model_path", "model_upload"
ATTENTION_MODE, DEVICE = "attention", "device"
IMAGE_SOURCE, IMAGE_UPLOAD = "image_source", "image_upload"  # the sidebar's image
# the My images page: the set it read (an analysis.ImageSet), the sidebar's third image source (one image
# of that set, picked under MY_IMAGE), and the page's own widgets
MY_IMAGES, FROM_SET, MY_IMAGE = "my_images", "My images", "my_image"
MY_FROM, MY_UPLOADS, MY_FOLDER, MY_METHOD = "my_from", "my_uploads", "my_folder", "my_method"
MY_STUDY, MY_PICK, MY_OPEN = "my_study", "my_pick", "my_open"
LINKED_IMAGE = "url_image"  # a gallery sample named by a link, applied when the gallery is drawn
BLOCK, PART, HEAD = "block", "part", "head"  # the pages' pickers (a link carries them as they are)
QUERY_ROW, QUERY_COL = "query_row", "query_col"  # the inputs of the cell shown
QUERY_POINT, QUERY_SHOWN = "query_point", "query_shown"  # the analysis.Query (fy, fx); (grid, row, col)
LAST_BLOCK = "last_block"  # the block the user last chose on any page: every block picker opens on it
OPACITY = "map_opacity"  # the sidebar's opacity of maps over their image
LINK_NOTICES = "url_notices"  # what a link named that was not found (app.urlstate.notice)
DEFAULTS = "choice_defaults"  # key -> what the widget shows unchosen: a link carries only what differs
INTERVENTIONS_ACTIVE, INTERVENTION_ITEMS = "iv_active", "iv_items"  # labels applied; label -> Intervention


def default_is(key: str, value) -> None:
    """Say what the widget under ``key`` shows when nobody chose (a class picker's predicted class, a block
    picker's first block): a link leaves a choice out while it is this (app.urlstate). A widget that never
    says so has the value it first showed as its default."""
    st.session_state.setdefault(DEFAULTS, {})[key] = value


def gallery_key(kind: str) -> str:
    """The key of the gallery's sample picker for models of ``kind`` (:func:`app.gallery.kind_for`)."""
    return f"gallery_{kind}"


WIDTH_STEP = 20  # px: the column's width is reported in these steps, so a resize by a few px reruns nothing
MIN_REMEMBERED, MAX_REMEMBERED = 100, 8000  # px: a remembered column width outside these is not believed
# reports the width of the column it is drawn in (its host element's), once drawn and after each resize;
# the host carries the width it measured (data-lens-width), the one the page was drawn for
# (data-lens-drawn-for) and the step (data-lens-step), so that a test can tell a page still to be redrawn
# for its width, or still to measure a resized column, from a settled one
_WIDTH_PROBE = st.components.v2.component(
    "lens_column_width",
    js=f"""
export default function(component) {{
    const {{ setStateValue, parentElement, data }} = component;
    const host = parentElement.host || parentElement;
    let timer = null, known = data && data.known;  // the width the page was drawn for: no rerun for it
    host.dataset.lensDrawnFor = known;
    host.dataset.lensStep = {WIDTH_STEP};
    const report = () => {{
        let width = Math.floor(host.getBoundingClientRect().width / {WIDTH_STEP}) * {WIDTH_STEP};
        // a page waiting for a width (known null: its figures are not drawn yet) gets one even from a
        // column with none (a window shrunk to nothing): the default, until a resize reports another
        if (width <= 0 && known == null) width = {MAX_WIDTH};
        if (width <= 0) return;
        host.dataset.lensWidth = width;
        // this browser's width, for its next session's first run (read from the request's cookies)
        if (data && data.cookie)
            document.cookie = `${{data.cookie}}=${{width}}; path=/; max-age=31536000; SameSite=Strict`;
        if (width !== known) {{ known = width; setStateValue('width', width); }}
    }};
    const observer = new ResizeObserver(() => {{ clearTimeout(timer); timer = setTimeout(report, 150); }});
    observer.observe(host);
    report();
    return () => {{ observer.disconnect(); clearTimeout(timer); }};
}}
""",
)


@dataclass(frozen=True)
class ModelChoice:
    """What the sidebar asks for: the model key, and the timm tag to fetch first (None if local)."""

    key: ModelKey
    timm_tag: str | None = None


@dataclass(frozen=True)
class ImageChoice:
    """The image to analyse: its bytes, a name for titles and files, its true label when known, and its
    file's name (for messages)."""

    data: bytes
    name: str
    label: str | None = None
    file_name: str = "the image"


def model_picker() -> ModelChoice | None:
    """Source, checkpoint and attention mode; None until a path or upload is given."""
    source = st.radio("Model", MODEL_SOURCES, key=MODEL_SOURCE)
    timm_tag = None
    if source == MODEL_SOURCES[0]:
        spec = st.selectbox(
            "Checkpoint",
            NAMES,
            key=DEMO_NAME,
            help="Small models trained on Fashion-MNIST: the CoAtNet pre/post pair, a MaxViT and the layout "
            "study's models",
        )
    elif source == MODEL_SOURCES[1]:
        spec = timm_tag = st.selectbox(
            "timm tag",
            TIMM_TAGS,
            key=TIMM_TAG,
            help="Downloaded once into the Hugging Face cache",
        )
    elif source == MODEL_SOURCES[2]:
        spec = st.text_input(
            "Path", key=MODEL_PATH, placeholder="/path/to/model.safetensors",
            help="A checkpoint of ours (coatnet train / import-timm), or timm's model.safetensors or "
            "pytorch_model.bin (read with weights_only=True)",
        ).strip()  # fmt: skip
        if not spec:
            st.caption("Type the path of a .safetensors checkpoint or timm weights file.")
            return None
    else:
        upload = st.file_uploader(
            "Checkpoint", type=["safetensors", "bin", "pth"], key=MODEL_UPLOAD,
            help="A .safetensors checkpoint of ours, or timm weights",
        )  # fmt: skip
        if upload is None:
            st.caption("Upload a .safetensors checkpoint (or timm weights).")
            return None
        spec = saved_upload(upload.getvalue(), upload.name)
    label = st.radio(
        "Attention normalization", tuple(ATTENTION), key=ATTENTION_MODE, horizontal=True,
        help="Pre: softmax(content + bias), the paper's choice. Post: softmax(content) + bias. Switching "
        "a model trained the other way keeps its weights, and is labelled so.",
    )  # fmt: skip
    devices = available_devices()
    device = st.selectbox(
        "Device", devices, key=DEVICE, disabled=len(devices) == 1,
        help="Where the model runs: CUDA when this machine has it (the default), else the CPU",
    )  # fmt: skip
    return ModelChoice(
        ModelKey(spec, ATTENTION[label], device if device in devices else devices[0]), timm_tag
    )


def image_picker(kind: str) -> ImageChoice | None:
    """A gallery sample fit for the model (``kind`` from :func:`app.gallery.kind_for`), an upload, or an
    image of the set the My images page read."""
    kept = st.session_state.get(MY_IMAGES)  # a set read on the My images page: a third source
    sources = ("Gallery", "Upload", FROM_SET) if kept is not None and kept.images else ("Gallery", "Upload")
    source = st.radio("Image", sources, key=IMAGE_SOURCE, horizontal=True)
    if source == FROM_SET:
        return set_image_picker(kept)
    if source == "Gallery":
        samples = gallery.samples(kind)
        names = [s.name for s in samples]
        by_name = {s.name: s for s in samples}
        wanted = st.session_state.pop(LINKED_IMAGE, None)  # named by a link (app.urlstate)
        if wanted in by_name:
            st.session_state[gallery_key(kind)] = wanted
        elif (
            wanted is not None
        ):  # say so, until another image is chosen: never show another as the one linked
            shown = st.session_state.get(gallery_key(kind), names[0])
            st.session_state.setdefault(LINK_NOTICES, {})["image"] = (
                f"The link names the image {wanted!r}, which this model's gallery does not have: showing "
                f"{by_name[shown].caption} ({shown}) instead.", shown,
            )  # fmt: skip
        name = st.selectbox(
            "Sample", names, key=gallery_key(kind), format_func=lambda n: by_name[n].caption,
            help=f"Shipped with the app: {samples[0].licence}",
        )  # fmt: skip
        sample = by_name[name]
        return ImageChoice(sample.read_bytes(), sample.name, sample.class_name, sample.path.name)
    upload = st.file_uploader("Your image", type=IMAGE_TYPES, key=IMAGE_UPLOAD)
    if upload is None:
        st.caption("PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF; at most 50 MB and 40 megapixels.")
        return None
    return ImageChoice(upload.getvalue(), upload.name.rsplit(".", 1)[0] or "upload", file_name=upload.name)


def set_image_picker(images) -> ImageChoice:
    """One image of the set the My images page read (an :class:`analysis.ImageSet`), by its name there."""
    by_name = {image.name: image for image in images.images}
    if st.session_state.get(MY_IMAGE) not in by_name:
        st.session_state[MY_IMAGE] = images.images[0].name
    name = st.selectbox(
        "Image of the set", tuple(by_name), key=MY_IMAGE,
        help=f"The {len(by_name)} images read on the My images page, from {images.origin}",
    )  # fmt: skip
    image = by_name[name]
    return ImageChoice(image.data, name.rsplit(".", 1)[0], image.label_name, name)


def block_picker(names: tuple[str, ...], *, key: str = BLOCK, label: str = "Stage.block") -> str:
    """One block, named by stage and index (``S3.0``...): the block last chosen on any page (or by a link)
    where this picker offers it, else this picker's own last choice, else the first."""
    state, saw = st.session_state, f"{key}_saw"
    last = state.get(LAST_BLOCK)
    if last in names and state.get(saw) != last:  # chosen elsewhere since this picker was last drawn
        state[key] = last
    if state.get(key) not in names:
        state[key] = names[0]
    state[saw] = last
    default_is(key, last if last in names else names[0])

    def chose() -> None:
        state[LAST_BLOCK] = state[saw] = state[key]

    return st.selectbox(label, names, key=key, on_change=chose, help="S3.1 is the second block of stage S3")


def part_picker(mode: str, *, key: str = PART) -> str:
    """Effective weights, content only, bias only (and softmax(bias) under pre-normalization)."""
    parts = [p for p in PARTS if p != "bias_softmax" or mode == "pre"]
    if st.session_state.get(key) not in parts:
        st.session_state[key] = "effective"
    return st.selectbox("Show", parts, key=key, format_func=PARTS.get)


def head_picker(heads: int, *, key: str = HEAD) -> str:
    """``mean`` / ``max`` over heads, or one head (``0`` .. ``heads - 1``) for the clickable map."""
    options = ["mean", "max", *(str(h) for h in range(heads))]
    if st.session_state.get(key) not in options:
        st.session_state[key] = "mean"
    labels = {"mean": "all heads, mean", "max": "all heads, max"}
    return st.selectbox(
        "Heads on the map", options, key=key, format_func=lambda o: labels.get(o, f"head {o}")
    )


def query_picker(view: PictureView, *, grid: tuple[int, int], stride: float) -> Query:
    """The session's one query (:class:`analysis.Query`, a point of the picture: every block, page and
    model looks at the same spot, and a round trip returns to the clicked cell), as ``grid`` shows it: at
    the centre of its cell (:meth:`analysis.Query.snapped`). A click (:func:`take_click`) or the row and
    column inputs move it to the centre of the chosen cell; the inputs only take cells of this grid. The
    page reads the cell, the index and the pixel it needs from the query's own methods."""
    query = query_kept(view, grid=grid, stride=stride)
    left, right = st.columns(2)
    # the range in the label: a value outside it is refused in the field (red, with why) and never used
    left.number_input(f"Query row (0-{grid[0] - 1})", 0, grid[0] - 1, key=QUERY_ROW, step=1)
    right.number_input(f"Query column (0-{grid[1] - 1})", 0, grid[1] - 1, key=QUERY_COL, step=1)
    return query


def query_kept(view: PictureView, *, grid: tuple[int, int], stride: float) -> Query:
    """The query as :func:`query_picker` finds it, without drawing its inputs (for a view the query does
    not act on: the point is kept for the pages it does)."""
    state = st.session_state
    grid = (int(grid[0]), int(grid[1]))
    shown = state.get(QUERY_SHOWN)
    typed = (state.get(QUERY_ROW), state.get(QUERY_COL))
    chosen = None not in typed and (QUERY_POINT not in state or (shown is not None and shown[0] == grid))
    if chosen and (shown is None or tuple(typed) != tuple(shown[1:])):  # clicked or typed on this grid
        row = min(max(int(typed[0]), 0), grid[0] - 1)  # a cell typed or clicked on this grid
        col = min(max(int(typed[1]), 0), grid[1] - 1)
        state[QUERY_POINT] = Query.at_cell(view, row, col, stride=stride)
    elif QUERY_POINT not in state:
        state[QUERY_POINT] = Query.at_cell(view, grid[0] // 2, grid[1] // 2, stride=stride)
    query = Query(*state[QUERY_POINT])
    cell = query.cell(view, grid=grid, stride=stride)
    if cell is None:
        cell = query.nearest_cell(view, grid=grid, stride=stride)
        st.warning(
            f"The query point lies outside what this model sees (its crop): cell {cell} is the nearest. "
            "Click a cell to set a new one.", icon=":material/crop_free:",
        )  # fmt: skip
    state[QUERY_ROW], state[QUERY_COL] = cell
    state[QUERY_SHOWN] = (grid, *cell)
    return query.snapped(view, grid=grid, stride=stride)


def clicked(chart_key: str) -> tuple | None:
    """The ``customdata`` of the point last clicked on the chart drawn under ``chart_key`` (with
    ``on_select``), as a tuple; None when no point with data is selected. A browser sends a point's
    ``[a, b]`` as ``{"0": a, "1": b}`` (plotly.js typed arrays): both read the same."""
    event = st.session_state.get(chart_key)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    data = [p["customdata"] for p in points if p.get("customdata") is not None]
    if not data:
        return None
    last = data[-1]
    if isinstance(last, dict):
        return tuple(last[k] for k in sorted((k for k in last if k.isdigit()), key=int))
    return tuple(last)


def take_click(chart_key: str) -> None:
    """``on_select`` callback of a clickable map: the clicked cell becomes the query."""
    cell = clicked(chart_key)
    if cell is not None:  # the maps' customdata: [row, col, ...]
        st.session_state[QUERY_ROW], st.session_state[QUERY_COL] = int(cell[0]), int(cell[1])


def on_request(
    compute: Callable, *args, working: str, button: str | None = None, button_key: str | None = None,
    note: str | None = None,
):  # fmt: skip
    """The result of ``compute(*args)``, a slow analysis kept for the session
    (:func:`app.cache.session_result`), with a progress bar while it computes ("``working``: 40%").
    With ``button``, it is computed only once the button (under ``button_key``) is clicked, unless the
    session already keeps it; until then None, with ``note`` under the button."""
    kept = compute.has(*args)
    if button is not None and not kept and not st.button(button, key=button_key):
        if note:
            st.caption(note)
        return None
    if kept:
        return compute(*args)
    bar = st.progress(0.0, text=f"{working}...")
    result = compute(*args, progress=lambda share: bar.progress(share, text=f"{working}: {share:.0%}"))
    bar.empty()
    return result


def column_width(key: str = "column_width") -> int | None:
    """The width in px of the column this is called in, as the browser draws it (in steps of
    :data:`WIDTH_STEP`): a figure laid out for it fills the column at any window width. Until the browser
    has said, the width this browser reported last (a cookie the probe sets: a new tab or a reload draws its
    first run at the width it will report), else None on a session's first run (which the probe answers at
    once: :func:`app.main.main` draws the page only then, not twice) and
    :data:`analysis.figures.MAX_WIDTH` on any later run it has not answered yet. A resize reruns the page
    with the new width; a width the page was already drawn for reruns nothing."""
    drawn_for = f"{key}_drawn"  # the width this run draws for, taken from the probe's report in its callback
    state = st.session_state

    def took_width() -> None:
        state[drawn_for] = int(state[key].width)

    cookie = f"lens_{key}"  # the width this browser last reported, for a new session's first run
    if drawn_for not in state:
        remembered = remembered_width(st.context.cookies.get(cookie))
        if remembered is not None:
            state[drawn_for] = remembered
    width = state.get(drawn_for)
    if width is None and state.get(f"{key}_waited"):
        width = MAX_WIDTH  # the probe has not answered a run already: draw, at the default, not nothing
    state[f"{key}_waited"] = True
    _WIDTH_PROBE(
        key=key, data={"known": width, "cookie": cookie}, default={"width": None}, on_width_change=took_width,
        height=0,
    )  # fmt: skip
    return None if width is None else int(width)


def drawn_width(key: str = "column_width") -> int:
    """The width the page's last run laid its column out for (:func:`column_width`, which draws the probe),
    for a part of the page that reruns alone without it (``app.fragments``)."""
    return int(st.session_state.get(f"{key}_drawn", MAX_WIDTH))


def remembered_width(cookie: str | None) -> int | None:
    """The column width a cookie of this browser's last session holds (a new tab, a reload: the first run is
    laid out as the browser will report it, with no second run for the width), or None where there is none
    or it is not a width a column can have.

    Args:
        cookie: the cookie's value as the browser sent it, or None.

    Returns:
        Pixels, or None.

    Examples:
        >>> remembered_width("940"), remembered_width(None), remembered_width("1e9"), remembered_width("x")
        (940, None, None, None)
    """
    if cookie is None or not cookie.isdigit() or not MIN_REMEMBERED <= int(cookie) <= MAX_REMEMBERED:
        return None
    return int(cookie) // WIDTH_STEP * WIDTH_STEP


def opacity_slider() -> float:
    """The sidebar's slider of the opacity of maps over their image (one value for every page), drawn on
    every run, whatever the page and the image, so that it always shows the value the maps use."""
    # the value lives in the session: a default passed as well makes Streamlit warn
    st.session_state.setdefault(OPACITY, DEFAULT_OPACITY)
    return float(
        st.slider(
            "Map opacity", 0.1, 1.0, step=0.05, key=OPACITY,
            help="How strongly maps cover the image under them: lower shows the picture, 1 the map alone.",
        )
    )  # fmt: skip


def opacity() -> float:
    """The opacity of maps drawn over the image, as the sidebar's slider (:func:`opacity_slider`) shows it."""
    return float(st.session_state.get(OPACITY, DEFAULT_OPACITY))


ALL_CLASSES = 1_000_000  # top-k of every class: a class picker lists them all, most probable first


def class_picker(ranked: tuple, shown_for: tuple, *, label: str, key: str) -> int:
    """A class to explain: any class, listed from the most probable; the predicted one again for each
    new model or image (``shown_for``)."""
    options = [p.index for p in ranked]
    labels = {p.index: f"{p.name} ({p.probability:.1%})" for p in ranked}
    state, shown = st.session_state, f"{key}_for"
    # a class a link gave (no model or image shown yet) is kept; another model or image starts predicted
    if state.get(key) not in options or state.get(shown, shown_for) != shown_for:
        state[key] = options[0]
    state[shown] = shown_for
    default_is(key, options[0])
    return st.selectbox(
        label,
        options,
        key=key,
        format_func=labels.get,
        help="Most probable first; the default is the predicted class",
    )
