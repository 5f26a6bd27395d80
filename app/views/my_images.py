"""My images: a study over a set of the user's own images (uploaded, a zip, or a folder on this server),
drawn as the Dataset page draws a shipped study: how far each head attends and from what, the model's
predictions and their accuracy, and how faithful one explanation is; any image of the set opens in the
explorer (the sidebar's third image source)."""

from __future__ import annotations

import streamlit as st

from analysis import IMAGE_SET_LIMITS, ImageSet, SetStudy, explainers
from analysis.figures import (
    distance_figure,
    entropy_figure,
    faithfulness_figure,
    position_share_figure,
    stage_figure,
    study_frequency_figure,
)
from analysis.report import faithfulness_section
from app import cache, errors, render, session, urlstate, widgets
from app.pages import PAGES
from app.widgets import IMAGE_TYPES

PAGE = next(page for page in PAGES if page.view == "my_images")
EXPLORER = next(page for page in PAGES if page.view == "explorer")
FROM = ("Upload images or a zip", "A folder on this server")
NONE = "none"  # no faithfulness measured
KEPT_SOURCE = "my_images_source"  # what the set was last read from: read again for another model


def render_page() -> None:
    chosen = session.selection()
    st.subheader(PAGE.landmark)
    st.caption(IMAGE_SET_LIMITS)
    images = given_set(chosen)
    if images is None:
        return
    say_what_it_holds(images)
    if not images.images:
        return
    method = method_picker(chosen)
    found = requested(
        cache.set_study, chosen.key, images, None if method == NONE else method,
        working="Studying the set", button="Study the set", button_key=widgets.MY_STUDY,
        note="Runs every image through the model, recording each head's attention and each stage's "
        "output, and measures the chosen explanation's faithfulness on the leading images: about a "
        "second an image with faithfulness on a CPU at 28 px. Computed when asked, kept for the session.",
    )  # fmt: skip
    image_table(images, found)
    open_in_explorer(images)
    if found is not None:
        draw_study(found, chosen)


def given_set(chosen) -> ImageSet | None:
    """The set given by uploads or a folder, read (with a progress bar) for the sidebar's model; the set
    given before when none is given now; None after a line saying what to give."""
    state = st.session_state
    how = st.radio("Images from", FROM, key=widgets.MY_FROM, horizontal=True)
    source = None
    if how == FROM[0]:
        files = st.file_uploader(
            "Images, or a zip of them", type=[*IMAGE_TYPES, "zip"], accept_multiple_files=True,
            key=widgets.MY_UPLOADS,
        )  # fmt: skip
        hint = (
            "Upload images, several at once, or a zip: in a zip, folders named after the model's classes "
            "label their images."
        )
        if files:
            source = ("uploads", tuple((file.name, file.getvalue()) for file in files))
    else:
        folder = st.text_input(
            "Folder", key=widgets.MY_FOLDER, placeholder="/data/my-images",
            help="A folder of images, or of one sub-folder per class (root/<class>/<image>) to label them",
        ).strip()  # fmt: skip
        hint = "Type a folder on this server: its images, or one sub-folder per class to label them."
        if folder and not urlstate.shared(folder):
            folders = ", ".join(str(f) for f in urlstate.allowed_folders())
            st.error(
                f"{folder} lies outside the folders this server shares ({folders}): choose a folder inside "
                "them, or start the server with COATNET_LENS_ALLOWED_DIRS naming it.",
                icon=":material/folder_off:",
            )  # fmt: skip
            return None
        source = ("folder", folder) if folder else None
    if source is None:
        source = state.get(KEPT_SOURCE)
        if source is None:
            st.caption(hint)
            return None
        st.caption(f"{hint} Until then, the set given before:")
    images = requested(cache.image_set, chosen.key, source, working="Reading the images")
    if images is None:
        return None
    if state.get(widgets.MY_IMAGES) is not images:  # a new set: kept with the source it was read from
        state[KEPT_SOURCE], state[widgets.MY_IMAGES] = source, images  # (whose bytes the set holds)
    return images


def requested(compute, *args, **options):
    """:func:`app.widgets.on_request` of ``compute``, its button or progress bar in a place of their own,
    cleared when ``compute`` refuses its input: one line says why instead, and None is returned."""
    place = st.empty()
    try:
        with place.container():
            return widgets.on_request(compute, *args, **options)
    except errors.INPUT_ERRORS as error:
        place.empty()
        st.error(errors.message(error), icon=":material/error:")
        return None


def say_what_it_holds(images: ImageSet) -> None:
    """How many images the set holds and how many are labelled, which folders name no class, and each
    file skipped with its reason."""
    count, labelled = images.count, images.labelled
    said = f"**{count} image{'' if count == 1 else 's'}** from {images.origin}"
    said += f", {labelled} labelled" if labelled else ", none labelled"
    st.markdown(said + ".")
    if images.unnamed_folders:
        st.caption(
            f"Folders that name none of the model's classes (their images are unlabelled): "
            f"{', '.join(images.unnamed_folders)}."
        )
    skipped = len(images.skipped)
    if skipped:
        with st.expander(f"{skipped} file{'' if skipped == 1 else 's'} skipped"):
            st.dataframe(
                [{"file": s.name, "why": s.reason} for s in images.skipped], hide_index=True, width="stretch"
            )


def method_picker(chosen) -> str:
    """The explanation method whose faithfulness is measured (those that read attention where the model
    has some), or :data:`NONE`."""
    attention = cache.has_attention(chosen.key)
    methods = {
        e.name: e.label for e in explainers() if not e.baseline and (attention or not e.needs_attention)
    }
    options = [*methods, NONE]
    if st.session_state.get(widgets.MY_METHOD) not in options:
        st.session_state[widgets.MY_METHOD] = "gradcam" if "gradcam" in methods else options[0]
    return st.selectbox(
        "Faithfulness of", options, key=widgets.MY_METHOD,
        format_func=lambda name: methods.get(name, "no explanation (faster)"),
        help="Deletion, insertion and ROAD of this explanation of the predicted class, beside the random map",
    )  # fmt: skip


def image_table(images: ImageSet, found: SetStudy | None) -> None:
    """Every image with its label, and once studied the model's prediction; the accuracy above it."""
    predicted = {p.name: p for p in found.predictions} if found is not None else {}
    if found is not None:
        accuracy = found.accuracy
        if accuracy is None:
            st.caption(
                "No image is labelled: put the images in folders named after the model's classes to "
                "measure the accuracy."
            )
        else:
            st.markdown(f"Top-1 accuracy **{accuracy:.1%}** over the {found.labelled} labelled images.")
    rows = []
    for image in images.images:
        row = {"image": image.name, "label": image.label_name or ""}
        if image.name in predicted:
            p = predicted[image.name]
            row |= {"predicted": p.class_name, "probability": round(p.probability, 3), "right": p.correct}
        rows.append(row)
    st.dataframe(rows, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(rows)))


def open_in_explorer(images: ImageSet) -> None:
    """A picker of the set's images and a button that makes the chosen one the sidebar's image and opens
    the explorer on it."""
    names = [image.name for image in images.images]
    if st.session_state.get(widgets.MY_PICK) not in names:
        st.session_state[widgets.MY_PICK] = names[0]
    pick, go = st.columns([3, 1], vertical_alignment="bottom")
    pick.selectbox("Image", names, key=widgets.MY_PICK)

    def show_in_sidebar() -> None:  # before the next run draws the sidebar
        st.session_state[widgets.IMAGE_SOURCE] = widgets.FROM_SET
        st.session_state[widgets.MY_IMAGE] = st.session_state[widgets.MY_PICK]

    if go.button("Open in the explorer", key=widgets.MY_OPEN, on_click=show_in_sidebar):
        st.switch_page(EXPLORER.path)


def draw_study(found: SetStudy, chosen) -> None:
    """The study's figures, as the Dataset page draws a shipped study's."""
    study = found.study
    name = render.slug(f"{chosen.key.spec}-my-images")
    st.subheader("Where each head's locality comes from")
    if not study.heads:
        st.info("This model has no attention heads: its stages are drawn below.", icon=":material/info:")
    else:
        st.caption(
            "Mean attention distance per head against depth, of the weights the block used, of its content "
            "alone and of its bias alone; the position share is how much of the logits' variance comes from "
            "the bias. " + (study.conventions or {}).get("post", "")
        )
        render.figure(distance_figure(study), f"{name}-distance")
        render.figure(entropy_figure(study), f"{name}-entropy")
        render.figure(position_share_figure(study), f"{name}-position-share")
    st.subheader("Stages")
    render.figure(stage_figure(study), f"{name}-stages")
    render.figure(study_frequency_figure(study), f"{name}-frequency")
    if study.faithfulness:
        st.subheader("Which explanation to trust")
        st.caption(
            f"{faithfulness_section(study).text} Over the first {study.faithfulness_images} images. "
            "Protocol: docs/explanations.md."
        )
        render.figure(faithfulness_figure(study), f"{name}-faithfulness")
    with st.expander("Download the results"):
        render.result_downloads(
            found, f"{name}-study", label="The study: predictions, heads, stages, faithfulness",
            about=session.about(chosen, images=study.data, n_images=study.n_images),
        )  # fmt: skip


if __name__ == "__main__":
    render_page()
