"""Layer view: a grid of every channel of the layer (top dataset example or render), each a click
away from its neuron view."""

from __future__ import annotations

import streamlit as st

from vizneuron.imageio import enlarged
from vizneuron.optim.config import PRESETS

from ..common import Context, index_top_labels, open_channel
from .renders import cached_render, rendered

GRID_COLUMNS = 8
GRID_PAGE = 64


def show(ctx: Context) -> None:
    layer, index = ctx.layer, ctx.index
    channels = ctx.model.layers[layer].channels
    st.subheader(f"{layer}: {channels} channels")
    source = st.radio("Show", ["top dataset examples", "renders"], key="grid_source", horizontal=True)
    units = [f"{layer}:{c}" for c in range(channels)]
    pictures: dict[int, object] = {}
    names: dict[int, str] = {}  # channel -> commonest label of its top examples
    if source == "renders":
        grid = PRESETS["layer-grid"]
        steps = st.number_input("Steps per channel", 16, 2048, grid.steps, step=16, key="grid_steps")
        config = grid.with_settings(steps=int(steps))
        asked, result = rendered(ctx, units, config, "Cannot render this layer")
        if asked and result is None and st.button(f"Render all {channels} channels", key="render_layer",
                                                  type="primary"):
            result = cached_render(ctx, units, config, "rendering the layer…")
        if result is None:
            st.caption("Not rendered yet with these settings (in batches as large as memory allows, cached).")
            return
        pictures = {c: enlarged(result.images[c], 96) for c in range(channels)}
    else:
        if index is None or units[0] not in index.units():
            st.info("No index with this layer: mine it in the Data view, or show renders.")
            return
        for c, unit in enumerate(units):
            best = index.examples(unit, k=1)
            if best:
                pictures[c] = index.crop(best[0]).resize((96, 96))
        tops = index_top_labels(index, units)
        names = {c: tops[unit][0] for c, unit in enumerate(units) if unit in tops}
    pages = max(1, -(-channels // GRID_PAGE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="grid_page") if pages > 1 else 1
    shown = list(range((page - 1) * GRID_PAGE, min(channels, page * GRID_PAGE)))
    for row in range(0, len(shown), GRID_COLUMNS):
        for column, c in zip(st.columns(GRID_COLUMNS), shown[row : row + GRID_COLUMNS]):
            if c in pictures:
                column.image(pictures[c])
            column.button(f"#{c} {names.get(c, '')}".strip(), key=f"open_{c}", on_click=open_channel, args=(c,),
                          width="stretch")
