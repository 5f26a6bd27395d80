"""Model: what it is (stages, parameters, MACs), where it came from (model card) and how it trained."""

from __future__ import annotations

import streamlit as st

from analysis.figures import training_curves
from app import cache, render, session


def render_page() -> None:
    chosen = session.selection()
    key = chosen.key
    st.markdown(f"**{chosen.description}**")
    total, costs = cache.costs(key)
    by_part = {c.name: c for c in costs}
    rows = [
        {
            "stage": s.name, "kind": s.kind, "blocks": str(s.blocks), "channels": str(s.channels),
            "grid": f"{s.grid[0]}x{s.grid[1]}", "reduction": f"1/{s.reduction}",
            "parameters": f"{by_part[s.name].params:,}", "MACs": f"{by_part[s.name].macs:,}",
        }
        for s in cache.stages(key)
    ]  # fmt: skip
    head = by_part["head"]
    rows.append({**dict.fromkeys(rows[0], ""), "stage": "head", "parameters": f"{head.params:,}",
                 "MACs": f"{head.macs:,}"})  # fmt: skip
    size = cache.prepared(key, chosen.image.data).size
    st.subheader("Stage by stage")  # every model has one: a card and training curves only some
    left, middle, right = st.columns(3)
    left.metric("Parameters", f"{total / 1e6:.2f} M")
    middle.metric("MACs per image", f"{sum(c.macs for c in costs) / 1e9:.3f} G")
    right.metric("Input", f"{size[0]}x{size[1]}")
    st.dataframe(rows, hide_index=True, width="stretch")
    card, metrics = cache.run_record(key)
    if metrics:
        render.figure(training_curves(metrics), "training-curves")
    if card:
        with st.expander("Model card", expanded=True):
            st.markdown(card)
    elif not metrics:
        st.caption("No model card or training metrics travel with this model.")


if __name__ == "__main__":
    render_page()
