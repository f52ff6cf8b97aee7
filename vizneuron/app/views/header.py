"""Neuron view: the unit's name and the question the view answers."""

from __future__ import annotations

import streamlit as st

from ..common import Context


def show(ctx: Context) -> None:
    st.title(ctx.unit)
    st.caption(f"{ctx.model.name} · what does this unit respond to, and is it one concept or several?")
