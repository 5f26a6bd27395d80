"""The sentence under each page's title: what the page shows and how to read it."""

from __future__ import annotations

INTRO = {
    "Attention explorer": "Where the heads of one attention block look from one query cell, over the image: "
    "brighter keys get more weight; click a cell of the map (or type its row and column) to move the query.",
    "Stage inspector": "What each stage S0..S4 does to the image: how strongly it responds where, which "
    "pixels a prediction rests on (Grad-CAM), how far each stage sees, and how far each head attends.",
    "Pre vs post": "The same image and query through pre-normalization (softmax(content + bias)) and "
    "post-normalization (softmax(content) + bias): each model's maps, their difference, per-head measures.",
    "Kernels": "The learned relative-position bias of every head, drawn like a convolution kernel (the "
    "centre is the query itself), beside the 3x3 depthwise kernels of the MBConv blocks.",
    "Interventions": "Knock heads out, keep only the content or only the position bias, remove an MBConv "
    "branch: the prediction and the attention before and after, and how much each head matters here.",
    "Dataset": "A study over a whole test set (coatnet study): each head's attention distance from its "
    "content and from its bias, what every intervention costs in accuracy, and each stage's statistics.",
    "Layouts": "The paper's layout study at small scale: one image through five models that differ only in "
    "which stages are convolution (C) or attention (T), stage by stage, how alike their stages are, and "
    "how each layout trades fitting for generalizing.",
    "Model": "The architecture stage by stage (kind, blocks, channels, grid, parameters, MACs), the model "
    "card and the training curves of a checkpoint.",
}
