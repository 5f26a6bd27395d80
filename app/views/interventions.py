"""Interventions: change what heads, biases and MBConv branches do for this image, and see the prediction
and the attention move; every head's importance for the class, all heads in one batched pass."""

from __future__ import annotations

import streamlit as st

from analysis import query_map
from analysis.figures import head_importance_figure, side_by_side_figures
from app import cache, render, session, widgets
from coatnet import INTERVENTION_DESCRIPTIONS as DESCRIPTIONS
from coatnet import Intervention, PartName, class_names, intervention_targets

ACTIVE = widgets.INTERVENTIONS_ACTIVE  # the labels of the chosen interventions (the multiselect's state)
ITEMS = widgets.INTERVENTION_ITEMS  # label -> Intervention, for this session
HEADS_OF = "iv_heads_of"  # the block the chosen heads belong to
MAPS_FOR = "iv_maps_for"  # the interventions the before/after block was last chosen for
AUTO_HEADS = 64  # head importance runs by itself up to this many heads; beyond, on request


def render_page() -> None:
    chosen = session.selection()
    key, data = chosen.key, chosen.image.data
    net = cache.model(key)
    picture = cache.prepared(key, data)
    render.image_header(
        picture, cache.predictions(key, data), name=chosen.image.name,
        label=chosen.image.label,
    )  # fmt: skip
    items = chooser(net)
    names = class_names(net, numbered=True)
    target = st.selectbox(
        "Follow class", [None, *range(len(names))], key="iv_target",
        format_func=lambda c: "the predicted class" if c is None else f"{c}: {names[c]}",
    )  # fmt: skip
    effect = cache.intervention_effect(key, data, tuple(items), target)
    before, after = st.columns(2)
    name = names[effect.target]
    before.metric(f"logit of {name}", f"{effect.logit_before:.3f}")
    after.metric(
        f"logit of {name}, intervened", f"{effect.logit_after:.3f}",
        delta=f"{effect.logit_after - effect.logit_before:+.3f}",
    )  # fmt: skip
    before.metric(f"p({name})", f"{100 * effect.prob_before:.1f}%")
    after.metric(
        f"p({name}), intervened", f"{100 * effect.prob_after:.1f}%",
        delta=f"{100 * (effect.prob_after - effect.prob_before):+.1f} points",
    )  # fmt: skip
    before.table({"top-5": [f"{p.name} {100 * p.probability:.1f}%" for p in effect.top5_before]})
    after.table({"top-5, intervened": [f"{p.name} {100 * p.probability:.1f}%" for p in effect.top5_after]})
    for note in effect.notes:
        st.info(note, icon=":material/info:")
    if effect.before.blocks:
        changed_maps(effect, picture, first_changed(items, effect.before.names, net.block_names()))
    importance(key, data, target, net, names)


def chooser(net) -> list[Intervention]:
    """Pick a block, a kind and heads, add; the chosen interventions stay in a multiselect to remove."""
    state = st.session_state
    state.setdefault(ITEMS, {})
    state.setdefault(ACTIVE, [])
    targets = intervention_targets(net)  # a MaxViT block: S1.0 (all of it), S1.0.block, S1.0.grid
    attention = {name: heads for name, (_, heads) in targets.items() if heads}
    pick_block, pick_kind, pick_heads, add = st.columns([1, 2, 2, 1], vertical_alignment="bottom")
    with pick_block:
        block = widgets.block_picker(tuple(targets), key="iv_block", label="Block")
    kinds = targets[block][0]
    with pick_kind:
        kind = st.selectbox(
            "Intervention", kinds, key="iv_kind", format_func=lambda k: f"{k}: {DESCRIPTIONS[k]}"
        )
    heads: tuple[int, ...] | None = None
    with pick_heads:
        if block in attention:
            owner = (net.config, block)  # heads are a block's own: another block or model starts from none
            if state.get(HEADS_OF) != owner:
                state["iv_heads"], state[HEADS_OF] = [], owner
            picked = st.multiselect("Heads (none: all)", list(range(attention[block])), key="iv_heads")
            heads = tuple(sorted(picked)) or None
        else:
            st.caption("These act on the whole block (a MaxViT's heads: pick its .block or .grid).")
    with add:
        if st.button("Add", key="iv_add", help="Add this intervention to those applied"):
            item = Intervention(block, kind, heads=heads)
            state[ITEMS][item.label] = item
            if item.label not in state[ACTIVE]:
                state[ACTIVE] = [*state[ACTIVE], item.label]
    labels = st.multiselect(
        "Applied together (remove one with its x)", list(state[ITEMS]), key=ACTIVE,
        help="All apply in one pass; where two cover the same head, the later wins, and a knockout always "
        "wins",
    )  # fmt: skip
    if not labels:
        st.caption("No intervention chosen: both columns show the model as it is.")
    else:  # whole, as the multiselect's chips cut long names
        st.caption("Applied: " + "; ".join(labels))
    return [state[ITEMS][label] for label in labels]


def first_changed(items: list[Intervention], attention_blocks: tuple[str, ...], order: list[str]) -> str:
    """The first attention block whose map an intervention changes: its own block for an attention
    intervention (a MaxViT block's named attention, or its block attention for the whole block), the
    first attention block after it for an MBConv one (every later block sees its output), else the first
    attention block."""

    def place(name: str) -> tuple[int, int]:  # forward order: the block, then its attention within it
        base = PartName(name).base
        return (order.index(base) if base in order else len(order), attention_blocks.index(name))

    changed = []
    for item in items:
        if item.part is not None:
            changed.append(item.block)
            continue
        at = order.index(item.base) if item.base in order else len(order)
        changed += [b for b in attention_blocks if place(b)[0] >= at][:1]
    return min(changed, key=place) if changed else attention_blocks[0]


def changed_maps(effect, picture, first: str) -> None:
    """The attention before and after, and their difference, at the first block the interventions change
    (whenever the interventions change; the user's pick otherwise)."""
    st.subheader("The attention, before and after")
    state = st.session_state
    if state.get(MAPS_FOR) != effect.labels:
        state["iv_map_block"], state[MAPS_FOR] = first, effect.labels
    block_name = widgets.block_picker(effect.before.names, key="iv_map_block", label="Attention block")
    before, after = effect.before.block(block_name), effect.after.block(block_name)
    query = widgets.query_picker(picture.view, grid=before.grid, stride=before.stride)
    row, col = query.nearest_cell(picture.view, grid=before.grid, stride=before.stride)
    index = query.index(picture.view, grid=before.grid, stride=before.stride)
    opacity = widgets.opacity()
    maps = tuple(query_map(block, index) for block in (before, after))
    two, difference = side_by_side_figures(
        maps, ("as the model is", "intervened"), (picture.seen, picture.seen), query=(row, col),
        stride=before.stride, block=block_name, opacity=opacity,
    )  # fmt: skip
    st.caption("Intervened: " + ("; ".join(effect.labels) or "nothing") + ". Click a cell of either map to "
               "make it the query.")  # fmt: skip
    render.figure(
        two, f"{block_name}-before-after-q{row}-{col}", key="iv_map_pair",
        on_select=lambda: widgets.take_click("iv_map_pair"),
    )  # fmt: skip
    render.figure(difference, f"{block_name}-change-q{row}-{col}", key="iv_map_change")


def importance(key, data: bytes, target: int | None, net, names: tuple[str, ...]) -> None:
    st.subheader("Which heads matter for this image")
    st.caption(
        "The drop of the class's logit when each head alone is knocked out (its output set to zero), all "
        "heads in one batched pass per block."
    )
    total = sum(heads for _, heads in intervention_targets(net).values())  # every attention's heads, once
    if total == 0:
        st.info("This model has no attention heads.")
        return
    asked = f"Measure all {total} heads" if total > AUTO_HEADS else None  # few heads: measured at once
    result = widgets.on_request(
        cache.head_importance, key, data, target, working="Knocking out each head", button=asked,
        button_key="iv_measure",
    )  # fmt: skip
    if result is None:
        return
    render.figure(
        head_importance_figure(result, target_name=names[result.target]),
        f"head-importance-class{result.target}",
    )


if __name__ == "__main__":
    render_page()
