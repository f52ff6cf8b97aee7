"""Neuron view: the unit's name and the question the view answers, answered at once where the
bundled sample can: the probe's verdict on its classes, the top examples of each concept that
drives the unit, and a strip to step through the layer's other polysemantic units."""

from __future__ import annotations

import streamlit as st

from vizneuron.probe import most_polysemantic

from ..common import Context, first_look, open_channel

STRIP = 10  # polysemantic units offered in the strip
PER_CONCEPT = 4  # top examples shown per driving concept


def show(ctx: Context) -> None:
    st.title(ctx.unit)
    st.caption(f"{ctx.model.name} · what does this unit respond to, and is it one concept or several?")
    atlas = first_look(ctx.model, ctx.ws, ctx.layer)
    if atlas is None:
        return
    entry = next((e for e in atlas.entries if e.unit == ctx.unit), None)
    if entry is not None:
        st.markdown(f"**{entry.verdict.capitalize()}** on the bundled sample's {len(atlas.concepts)} classes"
                    + (f": driven by **{', '.join(entry.concepts)}**" if entry.concepts else "")
                    + f" (score {entry.score:.2f}; the probe below takes your own concepts)")
        index = ctx.unit_index
        if index is not None and entry.concepts:
            examples = index.examples(ctx.unit)
            for column, concept in zip(st.columns(len(entry.concepts[:3])), entry.concepts[:3]):
                chosen = [e for e in examples if e.label == concept][:PER_CONCEPT]
                column.markdown(f"*{concept}*")
                if chosen:
                    column.image([index.overlay(e).resize((72, 72)) for e in chosen],
                                 caption=[f"{e.value:.2f}" for e in chosen])
                else:
                    column.caption(f"no {concept} among its top {len(examples)} examples")
    ranked = most_polysemantic(atlas)[:STRIP]
    if ranked and ":" in ctx.unit and "/" not in ctx.unit:
        st.caption("Polysemantic units of this layer, most evenly split first:")
        for column, other in zip(st.columns(len(ranked)), ranked):
            channel = int(other.unit.rsplit(":", 1)[1])
            column.button(other.unit.rsplit(":", 1)[1], key=f"poly_{other.unit}", help=", ".join(other.concepts),
                          on_click=open_channel, args=(channel, ctx.layer), disabled=other.unit == ctx.unit)
