"""The app's pages, one registry: what ``main`` navigates, and what the tests and the screenshot script
walk. Each page: its view module, its title and icon, the sentence under its title, the widget keys whose
values it keeps while another page is shown, and a heading it always draws once ready (``landmark``)."""

from __future__ import annotations

from dataclasses import dataclass

from app.widgets import FROM_SET, MY_FOLDER, MY_FROM, MY_METHOD, MY_PICK


@dataclass(frozen=True)
class Page:
    view: str  # the module under app/views/, without .py
    title: str
    icon: str
    intro: str  # one sentence: what the page shows and how to read it
    kept: tuple[str, ...] = ()
    landmark: str = ""
    default: bool = False
    shared: tuple[str, ...] = ()  # the choices of several pages it draws (SHARED_KEPT, "q" for the query)

    @property
    def path(self) -> str:
        """The view's path as ``st.Page`` and AppTest take it (relative to app/)."""
        return f"views/{self.view}.py"


# widgets on several pages (the sidebar's query cell, block, part and head, the maps' opacity)
SHARED_KEPT = ("query_row", "query_col", "block", "part", "head", "map_opacity")

PAGES: tuple[Page, ...] = (
    Page(
        "explorer", "Attention explorer", ":material/grid_on:",
        "Where the heads of one attention block look from one query cell, over the image: brighter keys get "
        "more weight; click a cell of the map (or type its row and column) to move the query.",
        kept=("rollout_from", "explain_class", "explain_class_for", "explain_method"),
        landmark="Attention rollout", default=True, shared=("block", "part", "head", "q"),
    ),
    Page(
        "stages", "Stage inspector", ":material/view_column:",
        "What each stage S0..S4 does to the image: how strongly it responds where, which pixels a prediction "
        "rests on (Grad-CAM), how far each stage sees, and how far each head attends.",
        kept=("gradcam_class", "gradcam_for", "lrp_rule"), landmark="Which pixels the prediction rests on",
    ),
    Page(
        "compare", "Pre vs post", ":material/compare:",
        "The same image and query through pre-normalization (softmax(content + bias)) and post-normalization "
        "(softmax(content) + bias): each model's maps, their difference, per-head measures.",
        kept=("compare_how", "compare_other", "compare_other_block"), shared=("block", "q"),
        landmark="Relative-bias kernels of S3.0",
    ),
    Page(
        "kernels", "Kernels", ":material/blur_on:",
        "The learned relative-position bias of every head, drawn like a convolution kernel (the centre is "
        "the query itself), beside the 3x3 depthwise kernels of the MBConv blocks.",
        kept=("kernel_block", "depthwise_block", "depthwise_order", "depthwise_page"),
        landmark="MBConv depthwise kernels",
    ),
    Page(
        "interventions", "Interventions", ":material/block:",
        "Knock heads out, keep only the content or only the position bias, remove an MBConv branch: the "
        "prediction and the attention before and after, and how much each head matters here.",
        kept=("iv_block", "iv_kind", "iv_heads", "iv_active", "iv_target", "iv_map_block"),
        landmark="Which heads matter for this image",
    ),
    Page(
        "patching", "Patching", ":material/swap_horiz:",
        "Take one component's activation from the clean run into a corrupted one (denoising) or back "
        "(noising): how much of the decision each block, branch, attention part and head carries, 0 the "
        "corrupted run and 1 the clean one; click a cell for that block's positions on the image.",
        kept=("pt_how", "pt_kind", "pt_sigma", "pt_other", "pt_direction", "pt_metric", "pt_target",
              "pt_foil", "pt_block"),
        landmark="Which positions of a block carry it",
    ),
    Page(
        "dataset", "Dataset", ":material/dataset:",
        "A study over a whole test set (coatnet study): each head's attention distance from its content and "
        "from its bias, what every intervention costs in accuracy, and each stage's statistics.",
        kept=("study_choice", "study_folder", "study_metric", "dataset_ledger_rule"),
        landmark="What each intervention costs",
    ),
    Page(
        "my_images", FROM_SET, ":material/photo_library:",
        "A study over a set of your own images (uploaded, a zip, or a folder on this server): each head's "
        "attention distance and entropy, its position share, the model's predictions and their accuracy, and "
        "how faithful one explanation is; any image of the set opens in the explorer.",
        kept=(MY_FROM, MY_FOLDER, MY_METHOD, MY_PICK), landmark="Your image set",
    ),
    Page(
        "layouts", "Layouts", ":material/view_quilt:",
        "The paper's layout study at small scale: one image through five models that differ only in which "
        "stages are convolution (C) or attention (T), stage by stage, how alike their stages are, and how "
        "each layout trades fitting for generalizing.",
        kept=("layout_what",), landmark="The layout study",
    ),
    Page(
        "model", "Model", ":material/info:",
        "The architecture stage by stage (kind, blocks, channels, grid, parameters, MACs), the model card "
        "and the training curves of a checkpoint.",
        landmark="Stage by stage",
    ),
)  # fmt: skip
KEPT: tuple[str, ...] = SHARED_KEPT + tuple(key for page in PAGES for key in page.kept)


def page_titled(title: str) -> Page:
    """The page called ``title``; a KeyError names the pages there are."""
    for page in PAGES:
        if page.title == title:
            return page
    raise KeyError(f"no page {title!r}; the pages are {', '.join(p.title for p in PAGES)}")
