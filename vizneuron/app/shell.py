"""The app's shell: the sidebar's choices make one `Context`, and the chosen view shows its panels
in order. Adding a panel is one module with `show(ctx)` and one entry in `VIEWS`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import streamlit as st

from vizneuron.errors import expected
from vizneuron.files import using
from vizneuron.units import parse_unit
from vizneuron.workspace import Workspace

from .common import Context, fail, workspace
from .sidebar import pick_index, pick_layer, pick_model, pick_unit, session_saes
from .views import accentuation, atlas, circuit, data, edit, examples, header, layer, probe, renders

#: view -> its panels, shown top to bottom
VIEWS: dict[str, tuple[Callable[[Context], None], ...]] = {
    "Neuron": (header.show, renders.show, examples.show, accentuation.show, probe.show, circuit.show),
    "Layer": (layer.show,),
    "Atlas": (atlas.show,),
    "Edit": (edit.show,),
    "Data": (data.show,),
}
UNIT_VIEWS = ("Neuron",)  # views about the unit picked in the sidebar; the others show its layer


def main(argv: list[str] | None = None) -> None:
    """One rerun of the app: `argv` (default: the script's) gives --root/--home, as the environment can.
    Every file any job of the rerun opens goes through the workspace's file access."""
    st.set_page_config(page_title="vizneuron", layout="wide")
    ws = workspace(*Workspace.settings(sys.argv[1:] if argv is None else argv, os.environ))
    with using(ws.access()):
        rerun(ws)


def rerun(ws: Workspace) -> None:
    loaded = pick_model(ws)
    if loaded is None:
        st.title("vizneuron")
        st.info("Pick a model in the sidebar.")
        return
    layer = pick_layer(loaded.model)
    index = pick_index(ws, loaded, layer)
    unit, sae_files = pick_unit(loaded.model, ws, index, layer)
    saes = session_saes(sae_files)
    view = st.radio("View", list(VIEWS), key="view", horizontal=True, label_visibility="collapsed")
    target = None
    try:
        target = parse_unit(unit, loaded.model, saes)
    except expected() as err:  # e.g. a feature of an SAE trained on another model
        fail(st, f"Cannot show {unit}", err)
        if view in UNIT_VIEWS:
            return
    ctx = Context(ws, loaded, index, unit, target, layer, sae_files, saes)
    for panel in VIEWS[view]:
        panel(ctx)
