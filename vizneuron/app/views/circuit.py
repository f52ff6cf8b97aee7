"""Neuron view: the circuit, what feeds the unit from an earlier layer or what it feeds later, with
a click through to any channel of it."""

from __future__ import annotations

import streamlit as st

from vizneuron.circuit import circuit, circuit_ends, nearest_end
from vizneuron.samples import SAMPLE_DIR

from ..common import Context, held_job, open_channel


def open_layer_unit(unit: str) -> None:
    """From a circuit to the neuron view of one of its channels (in its own layer)."""
    layer, channel = unit.rsplit(":", 1)
    open_channel(int(channel), layer)


def show(ctx: Context) -> None:
    st.subheader("Circuit: what feeds it, what it feeds")
    model, unit = ctx.model, ctx.target
    c1, c2, c3 = st.columns([1, 2, 2])
    side = c1.radio("Direction", ["upstream", "downstream"], key="circuit_side",
                    disabled=unit.kind == "logit" and not circuit_ends(model, unit.layer, "upstream"))
    choices = circuit_ends(model, unit.layer, side)
    if not choices:
        st.caption(f"No layer {'before' if side == 'upstream' else 'after'} this unit's.")
        return
    other = c2.selectbox("Other end", choices, index=choices.index(nearest_end(model, unit.layer, side)),
                         key=f"circuit_layer_{side}")
    folder = c3.text_input("Images (reference mean and top examples)", str(SAMPLE_DIR), key="circuit_data")
    key = (model.name, model.fingerprint, ctx.unit, side, other, folder, ctx.index.path if ctx.index else None)
    found_all = st.session_state.setdefault("circuits", {})
    if st.button("Trace", key="circuit", type="primary"):
        found_all[key] = held_job(ctx.loaded, "Attributing…", "Circuit failed", lambda _progress: circuit(
            model, unit, saes=ctx.saes, data=ctx.ws.source(folder), **{side: other}, index=ctx.unit_index))
    found = found_all.get(key)
    if found is None:
        st.caption("Not traced yet for these settings.")
        return
    if found.baseline is not None:
        st.caption(f"Mean value {found.value:.4g} on {len(found.images)} images; with {other} at its mean "
                   f"{found.baseline:.4g}; contributions add up within {found.completeness:.1%}.")
    st.dataframe([{"unit": e.unit, "contribution": round(e.contribution, 5), "share": f"{e.share:.0%}"}
                  for e in found.edges], hide_index=True)
    channels = [e.unit for e in found.edges if e.unit.split(":")[0] in model.layers and "/" not in e.unit]
    if channels:
        c1, c2 = st.columns([3, 1])
        chosen = c1.selectbox("Open one of these units", channels, key="circuit_open")
        c2.button("Open in the neuron view", key="circuit_open_button", on_click=open_layer_unit, args=(chosen,))
