"""Atlas view: every unit of the layer (channels or an SAE's features) probed with the same
concepts, counted by verdict, filterable by driving concept, each a click from its neuron view."""

from __future__ import annotations

import streamlit as st

from vizneuron.choices import VERDICTS
from vizneuron.errors import expected
from vizneuron.probe import MIN_FIRING, as_concepts, atlas_key, cached_atlas, layer_atlas

from ..common import Context, fail, held_job, open_channel, open_neuron_view
from ..concepts import concept_inputs


def open_unit(unit: str, sae_name: str | None) -> None:
    """From the atlas to the neuron view of one of its units (a channel or an SAE feature)."""
    number = int(unit.rsplit(":", 1)[1])
    if sae_name is None:
        return open_channel(number)
    open_neuron_view(unit_kind="SAE feature", sae_name=sae_name, feature=number)


def show(ctx: Context) -> None:
    model, layer = ctx.model, ctx.layer
    st.subheader(f"Layer atlas: every unit of {layer}, probed with the same concepts")
    what = st.radio("Units", ["channels", *[f"SAE {name}" for name in ctx.sae_files]], key="atlas_units",
                    horizontal=True)
    sae_name = what.removeprefix("SAE ") if what != "channels" else None
    try:
        concepts = concept_inputs(ctx.ws, ctx.loaded)
    except expected() as err:
        return fail(st, "Cannot build the concepts", err)
    if len(concepts) < 2:
        st.caption(f"{len(concepts)} concept(s) defined; the atlas needs two or more.")
        return
    sae = ctx.saes[sae_name] if sae_name else None
    folder = ctx.ws.folder("atlases")
    try:
        atlas = cached_atlas(atlas_key(model, layer, as_concepts(concepts), sae), folder)
    except expected() as err:
        return fail(st, "Cannot read the concepts", err)
    units = sae.config.d_sae if sae is not None else model.layers[layer].channels
    if atlas is None:
        st.caption(f"Not built yet for these units and concepts: {units} units x {len(concepts)} concepts, one pass "
                   "over the concept images, then kept on disk.")
        if not st.button(f"Build the atlas ({units} units)", key="build_atlas", type="primary"):
            return
        atlas = held_job(ctx.loaded, "probing…", "Atlas failed", lambda progress: layer_atlas(
            model, layer, concepts, sae=sae, sae_name=sae_name, folder=folder, progress=False,
            on_progress=lambda done, total: progress(done, total, f"{done:,} of {total:,} concept images")))
        if atlas is None:
            return
    counts = atlas.counts()
    for column, (verdict, count) in zip(st.columns(len(counts)), counts.items()):
        column.metric(verdict, count)
    st.caption(f"{len(atlas.entries)} units, {atlas.images:,} concept images. \"rare\": fired on fewer than "
               f"{MIN_FIRING} of them, too few to judge (counted apart, not dropped).")
    for note in atlas.notes:  # e.g. a concept too thin to judge, left out of every verdict
        st.warning(note)
    c1, c2 = st.columns(2)
    driven_by = c1.multiselect("Driven by (all of)", atlas.concepts, key="atlas_driven_by")
    verdicts = c2.multiselect("Verdict", list(VERDICTS), key="atlas_verdicts")
    chosen = atlas.select(driven_by, verdicts)
    st.dataframe(atlas.rows(chosen), hide_index=True)
    if chosen:
        c1, c2 = st.columns([3, 1])
        unit = c1.selectbox(f"Open one of these {len(chosen)} units", [e.unit for e in chosen], key="atlas_open")
        c2.button("Open in the neuron view", key="atlas_open_button", on_click=open_unit, args=(unit, sae_name))
