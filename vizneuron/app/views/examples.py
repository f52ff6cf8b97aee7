"""Neuron view: the unit's top and bottom dataset examples, with where it fired."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vizneuron.samples import SAMPLE_DIR, sample_misfit

from ..common import Context, open_view


def show(ctx: Context) -> None:
    st.subheader("Dataset examples")
    index = ctx.index
    if index is None:
        st.info("No example index selected: mine a folder in the Data view, or pick an index in the sidebar.")
        return
    if ctx.unit_index is None:
        st.info(f"{index.path} has no examples for {ctx.unit} (mine its layer in the Data view).")
        return
    if Path(index.meta["dataset"].get("root", "")) == SAMPLE_DIR:
        misfit = sample_misfit(ctx.model.input_size, ctx.model.labels)
        if misfit:
            st.warning(misfit)
            st.button("Open the Data view to mine a folder", key="examples_to_data", on_click=open_view, args=("Data",))
    stats = index.stats(ctx.unit)
    for column, (name, value) in zip(st.columns(4), [("images", f"{stats.count:,}"), ("mean", f"{stats.mean:.3f}"),
                                                     ("max", f"{stats.max:.3f}"), ("active", f"{stats.active:.0%}")]):
        column.metric(name, value)
    k = st.slider("Examples shown", 4, max(4, len(index.examples(ctx.unit))), 8, key="examples_k")
    for bottom in (False, True):
        examples = index.examples(ctx.unit, bottom=bottom, k=k)
        st.markdown("**Bottom** (least activating)" if bottom else
                    "**Top** (most activating): crop, then where it fired")
        pictures, captions = [], []
        for e in examples:
            pictures += [index.crop(e).resize((96, 96)), index.overlay(e).resize((96, 96))]
            captions += [f"{e.value:.3f} {e.label or ''}", Path(e.path).name]
        st.image(pictures, caption=captions)
        note = index.tie_note(examples)
        if note:
            st.caption(note)
