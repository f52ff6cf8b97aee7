"""vizneuron in the browser: what does this unit respond to, and is it one concept or several?

Start it with `streamlit run streamlit_app.py` (bundled default model, no network), optionally
followed by `-- --root FOLDER` (repeatable: folders of images, indexes, SAEs and checkpoints the
app may read; default: the current folder) and `--home FOLDER` (where it writes mined indexes,
cached renders and per-session uploads; default `.vizneuron-app`). The same settings can come
from VIZNEURON_APP_ROOTS (os.pathsep-separated) and VIZNEURON_APP_HOME.

The app is thin on purpose: each action is a library call that the CLI makes too (render with
`--cache`, mine, top, probe); it only parses widgets and shows results.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import vizneuron as vz
from vizneuron.gallery import heatmap_overlay, to_pil
from vizneuron.mine import ExampleIndex
from vizneuron.mine.run import mine
from vizneuron.models import Model
from vizneuron.optim.cache import RenderCache
from vizneuron.probe import label_groups, parse_label_groups, probe
from vizneuron.sae import SAEError, read_sae_config
from vizneuron.workspace import Workspace

#: errors that come from what the user typed or uploaded: shown as a message, never a traceback
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, ImportError, RuntimeError, OSError)
GRID_COLUMNS = 8
GRID_PAGE = 64


@dataclass
class Loaded:
    """A model shared by all sessions, with the lock its hooks need (one job at a time per model)."""

    model: Model
    lock: threading.Lock


@contextmanager
def model_turn(loaded: Loaded):
    """Hold the model for one job; say so when another session's job has it."""
    if not loaded.lock.acquire(blocking=False):
        note = st.info("Waiting for another session's job on this model to finish…")
        loaded.lock.acquire()
        note.empty()
    try:
        yield loaded.model
    finally:
        loaded.lock.release()


# -- setup ----------------------------------------------------------------------------------------
def app_settings() -> tuple[tuple[str, ...], str]:
    parser = argparse.ArgumentParser(prog="streamlit run streamlit_app.py --", add_help=False)
    parser.add_argument("--root", action="append", default=None)
    parser.add_argument("--home", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    env_roots = [p for p in os.environ.get("VIZNEURON_APP_ROOTS", "").split(os.pathsep) if p]
    roots = args.root or env_roots or ["."]
    home = args.home or os.environ.get("VIZNEURON_APP_HOME") or ".vizneuron-app"
    return tuple(roots), home


@st.cache_resource
def workspace(roots: tuple[str, ...], home: str) -> Workspace:
    ws = Workspace.create(list(roots), home)
    ws.prune_sessions()
    return ws


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load(spec: str) -> Loaded:
    return Loaded(vz.load_model(spec), threading.Lock())


@st.cache_resource(max_entries=8)
def open_index(path: str, modified: float) -> ExampleIndex:  # `modified`: a re-mined file is reopened
    return ExampleIndex(path)


@st.cache_data(max_entries=32)
def top_labels(path: str, modified: float, units: tuple[str, ...]) -> dict[str, str]:
    """Each unit's commonest label among its top examples: what the channel search matches."""
    index = open_index(path, modified)
    known = set(index.units())
    found = {unit: index.top_label(unit) for unit in units if unit in known}
    return {unit: f"{label} {count}/{total}" for unit, (label, count, total) in
            ((u, t) for u, t in found.items() if t is not None)}


@st.cache_resource(max_entries=16)
def labelled_concepts(data: str, groups: str, per_concept: int, labels: tuple[str, ...]) -> dict:
    """Label-group concepts of a folder (listing a big folder once, not on every rerun)."""
    return label_groups(data, parse_label_groups(groups, list(labels)), list(labels) or None,
                        per_concept=per_concept)


def session_folder(ws: Workspace) -> Path:
    if "session_dir" not in st.session_state or not Path(st.session_state.session_dir).exists():
        ctx = st.runtime.scriptrunner.get_script_run_ctx()
        st.session_state.session_dir = str(ws.session_dir(ctx.session_id if ctx else None))
    return Path(st.session_state.session_dir)


def keep_upload(ws: Workspace, file, kind: str, subfolder: str = "") -> Path:
    """Save an uploaded file once (reruns reuse it)."""
    saved = st.session_state.setdefault("uploads", {})
    key = (file.file_id, subfolder)
    if key not in saved or not Path(saved[key]).exists():
        folder = session_folder(ws) / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        saved[key] = str(ws.save_upload(folder, file.name, file.getvalue(), kind))
    return Path(saved[key])


def fail(where, message: str, err: Exception | None = None) -> None:
    text = f"{message}: {err.args[0] if isinstance(err, KeyError) else err}" if err else message
    where.error(text)


# -- pickers --------------------------------------------------------------------------------------
def pick_model(ws: Workspace) -> Loaded | None:
    bar = st.sidebar
    bar.header("Model")
    source = bar.radio("Source", ["bundled default", "model spec", "upload"], key="model_source", horizontal=True)
    if source == "bundled default":
        spec = "default"
    elif source == "model spec":
        spec = bar.text_input("Model spec", value="default", key="model_spec",
                              help="default, torchvision:resnet18?weights=PATH, timm:NAME, lucent:inceptionv1, "
                                   "cifar-resnet:PATH, tflite:PATH (paths inside the app's folders)")
    else:
        file = bar.file_uploader("Checkpoint or TFLite file", type=["tflite", "pt", "pth", "th", "safetensors"],
                                 key="model_upload")
        arch = bar.text_input("Architecture of .pt/.pth/.safetensors weights", value="cifar-resnet", key="model_arch",
                              help="cifar-resnet, default, or a spec such as torchvision:resnet18")
        if file is None:
            bar.info("Upload a .tflite file or a weights file (plain tensors: loaded with weights_only=True).")
            return None
        try:
            path = keep_upload(ws, file, "model")
        except USER_ERRORS as err:
            fail(bar, "Upload refused", err)
            return None
        if path.suffix == ".tflite":
            spec = f"tflite:{path}"
        elif arch.strip() == "cifar-resnet":
            spec = f"cifar-resnet:{path}"
        else:
            spec = f"{arch.strip()}{'&' if '?' in arch else '?'}weights={path}"
    try:
        return load(ws.check_spec(spec))
    except USER_ERRORS as err:
        fail(bar, f"Cannot load model {spec!r}", err)
        return None


def default_layer(model: Model, names: list[str]) -> str:
    """The deepest layer that still has a spatial grid (where renders are most readable)."""
    spatial = [n for n in names if model.layers[n].layout == "spatial" and model.layers[n].shape[1] > 1]
    return (spatial or names)[-1]


def find_saes(ws: Workspace, model: Model, layer: str) -> dict[str, Path]:
    """SAE files for this model's layer in the app's folders (`saes/` under home and each root)."""
    found = {}
    for folder in [ws.home / "saes", *(root / "saes" for root in ws.roots), *ws.roots]:
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                config = read_sae_config(path)
            except SAEError:
                continue
            if config.layer == layer and config.d_in == model.layers[layer].channels:
                found.setdefault(path.stem, path)
    return found


def pick_unit(model: Model, ws: Workspace, index: ExampleIndex | None) -> tuple[str, str, dict[str, Path]]:
    """Sidebar: layer (searchable, with channel counts) and unit. Returns (unit spec, layer, the
    layer's SAE files)."""
    bar = st.sidebar
    bar.header("Unit")
    names = [n for n, info in model.layers.items() if info.channels]
    # A widget's default must equal its state: Streamlit's front end falls back to the default
    # (not the state set through the API) when it redraws, so stale state is dropped and the
    # wanted value goes in as the default index.
    if st.session_state.get("layer") not in names:
        st.session_state.pop("layer", None)
    current = st.session_state.get("layer", default_layer(model, names))

    def describe(name: str) -> str:
        info = model.layers[name]
        grid = f", {info.shape[1]}x{info.shape[2]}" if info.layout == "spatial" else ""
        return f"{name} ({info.channels} channels{grid})"

    layer = bar.selectbox("Layer (type to search)", names, index=names.index(current), key="layer",
                          format_func=describe)
    info = model.layers[layer]
    saes = find_saes(ws, model, layer)
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
        if sae_name not in model.saes:
            model.add_sae(sae_name, saes[sae_name])
        width = model.saes[sae_name].config.d_sae
        feature = bar.number_input(f"Feature (of {width})", 0, width - 1, key="feature")
        return f"{layer}/{sae_name}:{int(feature)}", layer, saes
    hints = {}
    if index is not None:
        hints = top_labels(index.path, Path(index.path).stat().st_mtime, tuple(f"{layer}:{c}" for c in range(info.channels)))
    # the picker's labels change when an index appears, and Streamlit matches a selectbox's value by
    # its label: so the widget key follows the labels and the chosen channel lives under "channel"
    widget = f"channel_{layer}_{hashlib.sha1(repr(sorted(hints.items())).encode()).hexdigest()[:8]}"
    if not 0 <= st.session_state.setdefault("channel", 0) < info.channels:
        st.session_state.channel = 0
    if st.session_state.get(widget, st.session_state.channel) != st.session_state.channel:  # a grid click
        del st.session_state[widget]
    channel = bar.selectbox(
        f"Channel (of {info.channels}; type a label to search top examples)", range(info.channels),
        index=st.session_state.channel, key=widget,
        on_change=lambda: st.session_state.update(channel=st.session_state[widget]),
        format_func=lambda c: f"{c}" + (f"  · top: {hints[f'{layer}:{c}']}" if f"{layer}:{c}" in hints else ""))
    if kind == "neuron":
        h, w = info.shape[1], info.shape[2]
        y = bar.number_input(f"Row (of {h})", 0, h - 1, value=h // 2, key="neuron_y")
        x = bar.number_input(f"Column (of {w})", 0, w - 1, value=w // 2, key="neuron_x")
        return f"{layer}:{channel}@{int(y)},{int(x)}", layer, saes
    return f"{layer}:{channel}", layer, saes


def pick_index(ws: Workspace, model: Model) -> ExampleIndex | None:
    bar = st.sidebar
    bar.header("Dataset examples")
    found = sorted(str(p) for p in ws.folder("indexes").glob("*.sqlite"))
    mined = st.session_state.get("index_path")
    if mined and mined not in found:
        found.append(mined)
    options = ["(none)", *found, "(path…)"]
    # The chosen index lives under "index_kept" (set by the user or by a finished mining run); the
    # widget's key follows it, so the widget is always created with the wanted value as its
    # default and its state is never set behind the front end's back.
    kept = st.session_state.get("index_kept")
    kept = kept if kept in options else "(none)"
    widget = f"index_{hashlib.sha1(repr((options, kept)).encode()).hexdigest()[:8]}"
    choice = bar.selectbox("Index", options, index=options.index(kept), key=widget,
                           on_change=lambda: st.session_state.update(index_kept=st.session_state[widget]),
                           format_func=lambda p: p if p.startswith("(") else Path(p).name)
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
        index.check_model(model)
    except USER_ERRORS as err:
        fail(bar, "Cannot use this index", err)
        return None
    summary = index.summary()
    bar.caption(f"{summary['mined']} images, {summary['units']} units, {summary['skipped']} skipped")
    return index


# -- neuron view ----------------------------------------------------------------------------------
def render_settings(model: Model) -> dict:
    with st.expander("Render settings", expanded=False):
        c1, c2, c3 = st.columns(3)
        steps = c1.number_input("Steps", 16, 4096, 256, step=16, key="steps")
        size = c2.number_input("Size (px)", 16, 1024, model.input_size[0], step=8,
                               key=f"size_{model.name}")  # each model starts at its own input size
        param = c3.selectbox("Parameterisation", ["fft", "pixel", "maco"], key="param")
        samples = c1.number_input("Diverse samples", 1, 16, 4, key="samples")
        diversity = c2.number_input("Diversity weight", 0.0, 1e4, 1.0, key="diversity",
                                    help="lucid uses 100 on InceptionV1; activation scales differ between models, "
                                         "so lower it when the renders stop driving the unit")
        seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="seed")
        layers = ["(the unit's layer)", *(n for n, info in model.layers.items() if info.layout == "spatial")]
        diversity_layer = c1.selectbox("Diversity layer", layers, key=f"diversity_layer_{model.name}",
                                       help="where the samples' Gram matrices are pushed apart; a lower layer keeps "
                                            "samples alive when the unit's layer is small")
    settings = {"samples": int(samples), "diversity": float(diversity) if samples > 1 else 0.0, "param": param,
                "size": int(size), "steps": int(steps), "seed": int(seed)}
    if samples > 1 and diversity_layer != layers[0]:
        settings["diversity_layer"] = diversity_layer
    return settings


def render_with_progress(loaded: Loaded, cache: RenderCache, units, settings: dict, text: str):
    """A cached render with a progress bar; None (and a message) when it fails."""
    bar = st.progress(0.0, text=text)
    try:
        with model_turn(loaded):
            return cache.render(loaded.model, units, **settings,
                                on_progress=lambda s, n: bar.progress(s / n, text=f"step {s} of {n}"))
    except USER_ERRORS as err:
        fail(st, "Render failed", err)
        return None
    finally:
        bar.empty()


def show_renders(loaded: Loaded, ws: Workspace, unit: str, index: ExampleIndex | None) -> None:
    st.subheader("Renders")
    settings = render_settings(loaded.model)
    cache = RenderCache(ws.folder("renders"))
    try:
        result = cache.get(loaded.model, unit, **settings)
    except USER_ERRORS as err:
        return fail(st, "Cannot render this unit", err)
    if st.button("Render", key="render", type="primary", disabled=result is not None,
                 help="already rendered with these settings" if result is not None else None):
        result = render_with_progress(loaded, cache, unit, settings, "rendering…")
    if result is None:
        st.caption("Not rendered with these settings yet.")
        return
    scale = max(1, 160 // result.images.shape[-1])
    best_real = index.stats(unit).max if index is not None and unit in index.units() else None
    st.image([to_pil(img, scale) for img in result.images],
             caption=[f"activation {a:.3f}" + (f" ({a / best_real:.1f}x best example)" if best_real else "")
                      for a in result.activations.tolist()])


def show_examples(index: ExampleIndex | None, unit: str) -> None:
    st.subheader("Dataset examples")
    if index is None:
        st.info("No example index selected: mine a folder in the Data view, or pick an index in the sidebar.")
        return
    if unit not in index.units():
        st.info(f"{index.path} has no examples for {unit} (mine its layer in the Data view).")
        return
    stats = index.stats(unit)
    c = st.columns(4)
    c[0].metric("images", f"{stats.count:,}")
    c[1].metric("mean", f"{stats.mean:.3f}")
    c[2].metric("max", f"{stats.max:.3f}")
    c[3].metric("active", f"{stats.active:.0%}")
    k = st.slider("Examples shown", 4, max(4, len(index.examples(unit))), 8, key="examples_k")
    for bottom in (False, True):
        examples = index.examples(unit, bottom=bottom, k=k)
        st.markdown("**Bottom** (least activating)" if bottom else "**Top** (most activating): crop, then where it fired")
        pictures, captions = [], []
        for e in examples:
            thumb = index.thumbnail(e.image)
            shown = heatmap_overlay(thumb, e.heatmap) if e.heatmap is not None else thumb
            pictures += [index.crop(e).resize((96, 96)), shown.resize((96, 96))]
            captions += [f"{e.value:.3f} {e.label or ''}", Path(e.path).name]
        st.image(pictures, caption=captions)


def concept_inputs(ws: Workspace, model: Model) -> dict:
    """Concepts from a labelled folder's label groups, from folders, and from uploaded images."""
    concepts: dict = {}
    st.markdown("Concepts: label groups of a labelled folder, folders, and/or uploaded images (two or more).")
    c1, c2 = st.columns(2)
    data = c1.text_input("Labelled folder (class subfolders)", key="concept_data")
    default_groups = ", ".join(model.labels) if model.labels and len(model.labels) <= 20 else \
        "domestic cat, big cat, car, snake, ferret-like, dog, bird, fish, boat"
    groups = c2.text_area("Label groups (a label, NAME=LABEL+LABEL, or an ImageNet group)", default_groups,
                          key="concept_groups", height=80)
    per = c1.number_input("Images per concept", 8, 5000, 100, key="per_concept")
    folders = c2.text_area("Folder concepts, one NAME=FOLDER per line", key="concept_folders", height=80)
    if data.strip():
        concepts.update(labelled_concepts(str(ws.resolve(data)), groups, int(per), tuple(model.labels or ())))
    for line in folders.splitlines():
        name, _, folder = line.partition("=")
        if name.strip() and folder.strip():
            concepts[name.strip()] = ws.resolve(folder.strip())
    with st.expander("Concepts from uploaded images"):
        name = st.text_input("Concept name", key="upload_concept_name")
        files = st.file_uploader("Images of this concept", type=None, accept_multiple_files=True,
                                 key="upload_concept_files")
        if st.button("Add concept", key="add_concept") and name.strip() and files:
            folder = f"concepts/{''.join(ch for ch in name if ch.isalnum() or ch in ' -_').strip() or 'concept'}"
            kept = []
            for file in files:
                try:
                    kept.append(keep_upload(ws, file, "image", folder))
                except USER_ERRORS as err:
                    fail(st, "Image refused", err)
            if kept:
                st.session_state.setdefault("uploaded_concepts", {})[name.strip()] = str(kept[0].parent)
        for cname, folder in st.session_state.get("uploaded_concepts", {}).items():
            st.caption(f"{cname}: {len(list(Path(folder).iterdir()))} images")
    concepts.update(st.session_state.get("uploaded_concepts", {}))
    return concepts


def concept_signature(concepts: dict) -> tuple:
    """What identifies a set of concepts across reruns: names and the images' keys."""
    return tuple((name, str(data) if isinstance(data, (str, Path)) else tuple(data.key(i) for i in range(len(data))))
                 for name, data in sorted(concepts.items()))


def show_probe(loaded: Loaded, ws: Workspace, unit: str, saes: dict[str, Path], index: ExampleIndex | None) -> None:
    st.subheader("Is it polysemantic?")
    model = loaded.model
    try:
        concepts = concept_inputs(ws, model)
    except USER_ERRORS as err:
        return fail(st, "Cannot build the concepts", err)
    c1, c2, c3 = st.columns(3)
    renders = c1.number_input("Renders to classify", 0, 16, 4, key="probe_renders")
    steps = c2.number_input("Render steps", 16, 2048, 128, step=16, key="probe_steps")
    sae_name = c3.selectbox("Split into SAE features", ["(no SAE)", *saes], key="probe_sae",
                            disabled="/" in unit or not saes)
    key = (model.name, model.fingerprint, unit, concept_signature(concepts), index.path if index else None, sae_name,
           int(renders), int(steps))
    reports = st.session_state.setdefault("probes", {})
    if st.button("Probe", key="probe", type="primary", disabled=len(concepts) < 2):
        sae = None
        if sae_name != "(no SAE)" and "/" not in unit:
            model.add_sae(sae_name, saes[sae_name])
            sae = sae_name
        with st.spinner(f"Measuring {len(concepts)} concepts, rendering and classifying…"):
            try:
                with model_turn(loaded):
                    reports[key] = probe(model, unit, concepts, index=index if unit in (index.units() if index else [])
                                         else None, sae=sae, renders=int(renders), render_steps=int(steps))
            except USER_ERRORS as err:
                return fail(st, "Probe failed", err)
    if len(concepts) < 2:
        st.caption(f"{len(concepts)} concept(s) defined; the probe needs two or more.")
    if key in reports:
        show_report(reports[key])


def show_report(report) -> None:
    banner = {"monosemantic": st.success, "polysemantic": st.warning}.get(report.verdict, st.info)
    banner(f"Verdict: **{report.summary}** — score {report.score:.2f}")
    st.dataframe([{"concept": e.name, "images": e.images, "mean": round(e.mean, 4), "z": round(e.z, 2),
                   "top range": f"{e.top_fraction:.0%}", "drives": e.drives}
                  for e in sorted(report.evidence, key=lambda e: -e.z)], hide_index=True)
    if report.renders:
        st.markdown(f"**Renders:** {report.renders['summary']}")
        images = report.renders["images"]
        st.image([to_pil(img, max(1, 128 // images.shape[-1])) for img in images],
                 caption=[f"model: {c} · nearest: {n}" for c, n in
                          zip(report.renders["classified_as"], report.renders["nearest_concept"])])
    if report.example_clusters:
        st.markdown("**Top dataset examples, grouped by the model's own features:** " + "; ".join(
            f"group {i + 1}: {len(g['members'])} images"
            + (f" ({', '.join(sorted(set(filter(None, g.get('labels', [])))))})" if g.get("labels") else "")
            for i, g in enumerate(report.example_clusters)))
    if report.sae_split:
        st.markdown("**Split into SAE features** (share of the unit on its driving images):")
        st.dataframe([{"feature": f["feature"], "share": f"{f['share']:.0%}", "verdict": f["verdict"],
                       "concepts": ", ".join(f["concepts"]) or "-"} for f in report.sae_split], hide_index=True)
        pictures = [f for f in report.sae_split if f["render"] is not None]
        if pictures:
            st.image([to_pil(f["render"], max(1, 128 // f["render"].shape[-1])) for f in pictures],
                     caption=[f["feature"] for f in pictures])


# -- layer view -----------------------------------------------------------------------------------
def open_channel(channel: int) -> None:
    st.session_state.channel = channel
    st.session_state.unit_kind = "channel"
    st.session_state.view = "Neuron"


def show_layer(loaded: Loaded, ws: Workspace, layer: str, index: ExampleIndex | None) -> None:
    model = loaded.model
    channels = model.layers[layer].channels
    st.subheader(f"{layer}: {channels} channels")
    source = st.radio("Show", ["top dataset examples", "renders"], key="grid_source", horizontal=True)
    units = [f"{layer}:{c}" for c in range(channels)]
    pictures: dict[int, object] = {}
    names: dict[int, str] = {}  # channel -> commonest label of its top examples
    if source == "renders":
        cache = RenderCache(ws.folder("renders"))
        steps = st.number_input("Steps per channel", 16, 2048, 64, step=16, key="grid_steps")
        settings = {"steps": int(steps), "seed": 0}
        result = cache.get(model, units, **settings)
        if result is None and st.button(f"Render all {channels} channels", key="render_layer", type="primary"):
            result = render_with_progress(loaded, cache, units, settings, "rendering the layer…")
        if result is None:
            st.caption("Not rendered yet with these settings (one batch for the whole layer, cached).")
            return
        scale = max(1, 96 // result.images.shape[-1])
        pictures = {c: to_pil(result.images[c], scale) for c in range(channels)}
    else:
        if index is None or units[0] not in index.units():
            st.info("No index with this layer: mine it in the Data view, or show renders.")
            return
        for c, unit in enumerate(units):
            best = index.examples(unit, k=1)
            if best:
                pictures[c] = index.crop(best[0]).resize((96, 96))
        names = {c: hint.split()[0] for c, hint in enumerate(
            top_labels(index.path, Path(index.path).stat().st_mtime, tuple(units)).get(u) for u in units) if hint}
    pages = max(1, -(-channels // GRID_PAGE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="grid_page") if pages > 1 else 1
    shown = list(range((page - 1) * GRID_PAGE, min(channels, page * GRID_PAGE)))
    for row in range(0, len(shown), GRID_COLUMNS):
        for column, c in zip(st.columns(GRID_COLUMNS), shown[row : row + GRID_COLUMNS]):
            if c in pictures:
                column.image(pictures[c])
            column.button(f"#{c} {names.get(c, '')}".strip(), key=f"open_{c}", on_click=open_channel, args=(c,),
                          width="stretch")


# -- data view ------------------------------------------------------------------------------------
def show_data(loaded: Loaded, ws: Workspace, layer: str) -> None:
    model = loaded.model
    st.subheader("Mine a folder for dataset examples")
    st.caption("Streams every image through the model and keeps each unit's top and bottom k, with crops and "
               "heatmaps. Interrupted? Press Mine again with the same settings: it resumes where it stopped.")
    folder = st.text_input("Image folder (class subfolders become labels) or list file", key="mine_folder")
    names = [n for n, info in model.layers.items() if info.channels]
    layers = st.multiselect("Layers (all their channels)", names, default=[layer], key=f"mine_layers_{model.name}")
    c1, c2 = st.columns(2)
    k = c1.number_input("Top/bottom k per unit", 1, 256, 16, key="mine_k")
    batch = c2.number_input("Batch size", 1, 1024, 64, key="mine_batch")
    if st.button("Mine", key="mine", type="primary", disabled=not (folder.strip() and layers)):
        try:
            data = ws.resolve(folder)
            digest = hashlib.sha1(repr((model.fingerprint, str(data), sorted(layers), int(k), int(batch))).encode()).hexdigest()
            stem = "".join(ch if ch.isalnum() else "_" for ch in f"{model.name}_{data.name}")[:60]
            path = ws.folder("indexes") / f"{stem}_{digest[:10]}.sqlite"
            bar = st.progress(0.0, text="mining…")
            with model_turn(loaded):
                index = mine(model, ",".join(layers), data, k=int(k), index=path, batch_size=int(batch),
                             progress=False,
                             on_progress=lambda done, total: bar.progress(
                                 done / max(total, 1), text=f"{done:,} of {total:,} images" + (
                                     "; now crops and heatmaps…" if done >= total else "")))
            bar.empty()
        except USER_ERRORS as err:
            return fail(st, "Mining failed", err)
        st.session_state.index_path = st.session_state.index_kept = str(path)  # picked on the rerun
        st.session_state.mined = {"path": str(path), "summary": index.summary(), "notes": index.notes()}
        st.rerun()
    mined = st.session_state.get("mined")
    if mined:
        summary = mined["summary"]
        st.success(f"Mined {summary['mined']:,} images for {summary['units']} units into {Path(mined['path']).name} "
                   f"({summary['skipped']} skipped, {summary['converted']} converted).")
        if mined["notes"]:
            st.dataframe([{"file": p, "action": a, "reason": r} for p, a, r in mined["notes"]], hide_index=True)
    st.caption(f"The app reads only inside: {', '.join(str(p) for p in ws.readable)}")


# -- page -----------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="vizneuron", layout="wide")
    ws = workspace(*app_settings())
    loaded = pick_model(ws)
    if loaded is None:
        st.title("vizneuron")
        st.info("Pick a model in the sidebar.")
        return
    index = pick_index(ws, loaded.model)
    unit, layer, saes = pick_unit(loaded.model, ws, index)
    view = st.radio("View", ["Neuron", "Layer", "Data"], key="view", horizontal=True, label_visibility="collapsed")
    if view == "Neuron":
        st.title(f"{unit}")
        st.caption(f"{loaded.model.name} · what does this unit respond to, and is it one concept or several?")
        show_renders(loaded, ws, unit, index)
        show_examples(index, unit)
        show_probe(loaded, ws, unit, saes, index)
    elif view == "Layer":
        show_layer(loaded, ws, layer, index)
    else:
        show_data(loaded, ws, layer)


main()
