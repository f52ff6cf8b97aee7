"""The sidebar: which model, which index of dataset examples, which layer and unit (and the layer's
SAEs). Its choices make the `Context` every panel is shown with."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vizneuron.errors import expected, user_message
from vizneuron.mine import ExampleIndex, mine_sample
from vizneuron.models import MODEL_PRESETS, Model, ModelPreset, ModelSpec, bundled_saes
from vizneuron.probe import most_polysemantic
from vizneuron.sae import SAE, find_saes, load_sae
from vizneuron.workspace import MODEL_SUFFIXES, Workspace

from .common import Loaded, fail, first_look, held_job, index_top_labels, keep_upload, kept_choice, load, open_index

SOURCE_CHOICES = {"preset": "named model", "model file": "file in the app's folders", "model spec": "spec",
                  "upload": "upload"}


def pick_model(ws: Workspace) -> Loaded | None:
    bar = st.sidebar
    bar.header("Model")
    source = bar.radio("Source", list(SOURCE_CHOICES), key="model_source", horizontal=True,
                       format_func=SOURCE_CHOICES.get)
    if source == "preset":
        titles = {preset.title: preset for preset in MODEL_PRESETS}
        chosen = titles[bar.selectbox("Model", list(titles), key="model_preset")]
        bar.caption(preset_note(chosen))
        spec = chosen.spec
    elif source == "model spec":
        spec = bar.text_input("Model spec", value="default", key="model_spec",
                              help="default, torchvision:resnet18?weights=PATH, timm:NAME, lucent:inceptionv1, "
                                   "cifar-resnet:PATH, tflite:PATH (paths inside the app's folders)")
    else:
        spec = model_file(ws, source)
        if spec is None:
            return None
    try:
        return load(str(ws.check_spec(spec)))
    except expected() as err:
        fail(bar, f"Cannot load model '{spec}'", err)  # the spec as typed, never its repr
        return None


def preset_note(preset: ModelPreset) -> str:
    if preset.downloads is None:
        return f"{preset.about.capitalize()}. Nothing to download: it works offline."
    return (f"{preset.about.capitalize()}. The first load downloads {preset.downloads} into the app's home; "
            "later loads work offline. Offline before that first download, loading stops and says which file "
            "to fetch elsewhere and pass as a spec's `weights=`.")


def model_file(ws: Workspace, source: str) -> ModelSpec | None:
    """The spec of a model file found in the app's folders or uploaded: a .tflite graph, or weights
    for the architecture the user names."""
    bar = st.sidebar
    path = None
    if source == "model file":
        files = ws.model_files()
        if not files:
            bar.info(f"No model files ({', '.join(MODEL_SUFFIXES)}) in the app's folders: start the app with "
                     "`--root` on the folder that holds one, or upload it.")
            return None
        path = Path(bar.selectbox("File", [str(p) for p in files], key="model_file",
                                  format_func=lambda p: short_path(ws, Path(p))))
        name = path.name
    else:
        file = bar.file_uploader("Checkpoint or TFLite file", type=[s[1:] for s in MODEL_SUFFIXES], key="model_upload")
        if file is None:
            bar.info("Upload a .tflite file or a weights file (plain tensors: loaded with weights_only=True).")
            return None
        name = file.name
    arch = "cifar-resnet"
    if not name.lower().endswith(".tflite"):
        arch = bar.text_input("Architecture of the weights", value="cifar-resnet", key="model_arch",
                              help="cifar-resnet, default, or a spec such as torchvision:resnet18")
    if path is None:
        try:
            path = keep_upload(ws, file, "model")
        except expected() as err:
            fail(bar, "Upload refused", err)
            return None
    return ModelSpec.for_file(path, arch.strip() or "cifar-resnet")


def short_path(ws: Workspace, path: Path) -> str:
    """`path` relative to the root that holds it."""
    for root in ws.roots:
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def session_saes(found: dict[str, Path]) -> dict[str, SAE]:
    """The layer's SAEs by name, loaded once per session (never registered on the shared model);
    files that fail their checks (edited, damaged) are left out with a note."""
    kept = st.session_state.setdefault("saes", {})
    usable = {}
    for name, path in found.items():
        key = (str(path), path.stat().st_mtime)
        if key not in kept:
            try:
                kept[key] = load_sae(path)
            except expected() as err:
                kept[key] = f"SAE {path.name} left out: {user_message(err)}"
        if isinstance(kept[key], str):
            fail(st.sidebar, kept[key])
        else:
            usable[name] = kept[key]
    return usable


#: choices that belong to one model (its layer, unit...), forgotten when another is loaded
MODEL_STATE = ("layer", "channel", "unit_kind", "sae_name", "feature")


def pick_layer(model: Model) -> str:
    """Sidebar: the layer (searchable, with channel counts). A new model opens on its default layer,
    in a widget of its own (a kept choice keyed by the model), so the box never shows the last
    model's layer."""
    st.sidebar.header("Layer")
    if st.session_state.get("layer_model") != model.fingerprint:  # another model: open on its own defaults
        st.session_state.layer_model = model.fingerprint
        for key in MODEL_STATE:
            st.session_state.pop(key, None)
    names = [n for n, info in model.layers.items() if info.channels]
    return kept_choice(st.sidebar, "Layer (type to search)", names, "layer", model.default_layer,
                       salt=model.fingerprint, format_func=lambda name: model.layers[name].summary)


def pick_unit(model: Model, ws: Workspace, index: ExampleIndex | None, layer: str) -> tuple[str, dict[str, Path]]:
    """Sidebar: the unit of `layer` (channel, neuron or SAE feature). Returns (unit spec, the
    layer's usable SAE files by name)."""
    bar = st.sidebar
    bar.header("Unit")
    info = model.layers[layer]
    saes = {**bundled_saes(model.name, layer), **find_saes(ws.sae_folders, layer, info.channels, model.layers)}
    saes = {name: path for name, path in saes.items() if name in session_saes(saes)}
    kinds = ["channel", "neuron"] + (["SAE feature"] if saes else [])
    if info.layout != "spatial":
        kinds.remove("neuron")
    if st.session_state.get("unit_kind") not in kinds:
        st.session_state.pop("unit_kind", None)
    kind = bar.radio("Unit", kinds, index=kinds.index(st.session_state.get("unit_kind", "channel")), key="unit_kind",
                     horizontal=True)
    if not saes:
        bar.caption("No SAE for this layer in the app's folders (train one: `vizneuron sae train`).")
    if kind == "SAE feature":
        sae_name = bar.selectbox("SAE", list(saes), key="sae_name")
        width = session_saes(saes)[sae_name].config.d_sae
        feature = bar.number_input(f"Feature (of {width})", 0, width - 1, key="feature")
        return f"{layer}/{sae_name}:{int(feature)}", saes
    units = [f"{layer}:{c}" for c in range(info.channels)]
    tops = index_top_labels(index, units) if index is not None else {}
    hints = {unit: f"{label} {count}/{labelled}" for unit, (label, count, labelled) in tops.items()}
    atlas = first_look(model, ws, layer)
    ranked = most_polysemantic(atlas) if atlas is not None else []  # a first look opens on the most polysemantic
    start = int(ranked[0].unit.rsplit(":", 1)[1]) if ranked else 0
    channel = kept_choice(bar, f"Channel (of {info.channels}; type a label to search top examples)",
                          list(range(info.channels)), "channel", start, salt=(layer, sorted(hints.items())),
                          format_func=lambda c: f"{c}" + (f"  · top: {hints[units[c]]}" if units[c] in hints else ""))
    if kind == "neuron":
        h, w = info.shape[1], info.shape[2]
        y = bar.number_input(f"Row (of {h})", 0, h - 1, value=h // 2, key="neuron_y")
        x = bar.number_input(f"Column (of {w})", 0, w - 1, value=w // 2, key="neuron_x")
        return f"{layer}:{channel}@{int(y)},{int(x)}", saes
    return f"{layer}:{channel}", saes


def sample_index(loaded: Loaded, ws: Workspace, layer: str) -> str | None:
    """The bundled sample mined for this model's `layer` into home (once; seconds), so a first start
    shows dataset examples and can run the probe without any data of the user's. Only the layer
    shown is mined: another layer is mined when it is opened."""
    kept = st.session_state.setdefault("sample_indexes", {})
    key = (loaded.model.fingerprint, layer)
    if key not in kept:
        index = held_job(loaded, f"mining the bundled sample images for {layer} (once)…",
                         "Cannot mine the bundled sample",
                         lambda progress: mine_sample(loaded.model, layer, folder=ws.folder("indexes") / "sample",
                                                      progress=False, on_progress=progress),
                         where=st.sidebar)
        kept[key] = index.path if index is not None else None
    return kept[key]


SAMPLE_CHOICE, SAMPLE_LABEL = "(sample)", "bundled sample (300 CIFAR-10 images)"


def index_state(model: Model) -> str:
    """Where the chosen index is kept: one choice per model, so switching models never keeps an index
    mined with another."""
    return f"index_kept_{model.fingerprint[:12]}"


def pick_index(ws: Workspace, loaded: Loaded, layer: str) -> ExampleIndex | None:
    bar = st.sidebar
    bar.header("Dataset examples")
    sample = sample_index(loaded, ws, layer)
    found = sorted(str(p) for p in ws.folder("indexes").glob("*.sqlite"))  # where the Data view mines to
    options = ["(none)", *([SAMPLE_CHOICE] if sample else []), *found, "(path…)"]
    choice = kept_choice(bar, "Index", options, index_state(loaded.model), SAMPLE_CHOICE if sample else "(none)",
                         format_func=lambda p: SAMPLE_LABEL if p == SAMPLE_CHOICE else p if p.startswith("(")
                         else Path(p).name)
    if choice == SAMPLE_CHOICE:  # whichever layer is shown: its own sample index
        choice = sample
    if choice == "(none)":
        bar.caption("No index: mine a folder in the Data view.")
        return None
    if choice == "(path…)":
        choice = bar.text_input("Index file", key="index_typed")
        if not choice:
            return None
    try:
        path = ws.resolve(choice)
        index = open_index(str(path), path.stat().st_mtime)
        index.check_model(loaded.model)
    except expected() as err:
        fail(bar, "Cannot use this index", err)
        return None
    summary = index.summary()
    bar.caption(f"{summary['mined']} images, {summary['units']} units, {summary['skipped']} skipped")
    return index
