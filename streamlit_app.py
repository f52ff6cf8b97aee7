"""vizneuron in the browser: `streamlit run streamlit_app.py [-- --root FOLDER ... --home FOLDER]`
(or VIZNEURON_APP_ROOTS / VIZNEURON_APP_HOME): roots are read, home is written. Widgets, layout and
the per-model lock only: every action is a library call the CLI makes too."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import vizneuron as vz
from vizneuron.choices import PARAMETERISATIONS, VERDICTS
from vizneuron.errors import EXPECTED, user_message
from vizneuron.imageio import enlarged
from vizneuron.mine import ExampleIndex, index_path, mine, mine_sample
from vizneuron.models import Model, ModelSpec
from vizneuron.optim.cache import RenderCache
from vizneuron.optim.config import PRESETS, RenderConfig
from vizneuron.probe import build_concepts, concepts_key, default_groups, parse_named_paths, probe
from vizneuron.probe.atlas import MIN_FIRING, atlas_key, cached_atlas, layer_atlas
from vizneuron.probe.concepts import as_concepts
from vizneuron.sae import SAE, find_saes, load_sae
from vizneuron.samples import SAMPLE_DIR
from vizneuron.shift.run import SAE_NAME, evaluate, retrain_head, shift
from vizneuron.sources import fetch_cifar10
from vizneuron.workspace import MODEL_SUFFIXES, Workspace

GRID_COLUMNS = 8
GRID_PAGE = 64
SAMPLE_CLASSES = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_dir())


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


def held_job(loaded: Loaded, text: str, failure: str, job):
    """`job()`'s result, run under a spinner while holding the model; None (the error shown) when it fails."""
    with st.spinner(text):
        try:
            with model_turn(loaded):
                return job()
        except EXPECTED as err:
            fail(st, failure, err)
            return None


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
    return open_index(path, modified).label_hints(units)


@st.cache_resource(max_entries=16)
def labelled_concepts(_model: Model, _ws: Workspace, weights: str, data: str, groups: str, per_concept: int) -> dict:
    """Label-group concepts of a folder (listing a big folder once, not on every rerun)."""
    return build_concepts(_model, data=_ws.source(data), groups=groups, per_concept=per_concept)


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
            except EXPECTED as err:
                kept[key] = f"SAE {path.name} left out: {user_message(err)}"
        if isinstance(kept[key], str):
            fail(st.sidebar, kept[key])
        else:
            usable[name] = kept[key]
    return usable


def keep_upload(ws: Workspace, file, kind: str, subfolder: str = "") -> Path:
    ctx = st.runtime.scriptrunner.get_script_run_ctx()
    return ws.keep_upload(ctx.session_id if ctx else "", file.file_id, file.name, file.getvalue(), kind, subfolder)


def fail(where, message: str, err: Exception | None = None) -> None:
    where.error(f"{message}: {user_message(err)}" if err else message)


def kept_choice(where, label: str, options: list, state: str, default, salt: object = None, **kwargs):
    """A selectbox whose choice lives in session state under `state` (set by the user, or by code such
    as a grid click). Streamlit's front end falls back to a widget's default, not to state set through
    the API, when it redraws; so the widget is created with the kept value as its default, under a
    key that follows its options, that value and `salt` (e.g. the labels, since Streamlit matches a
    value by its label), and its own state is never set behind its back."""
    if st.session_state.get(state) not in options:
        st.session_state[state] = default
    widget = f"{state}_{hashlib.sha1(repr((options, st.session_state[state], salt)).encode()).hexdigest()[:8]}"
    return where.selectbox(label, options, index=options.index(st.session_state[state]), key=widget,
                           on_change=lambda: st.session_state.update({state: st.session_state[widget]}), **kwargs)


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
        file = bar.file_uploader("Checkpoint or TFLite file", type=[s[1:] for s in MODEL_SUFFIXES], key="model_upload")
        arch = bar.text_input("Architecture of .pt/.pth/.safetensors weights", value="cifar-resnet", key="model_arch",
                              help="cifar-resnet, default, or a spec such as torchvision:resnet18")
        if file is None:
            bar.info("Upload a .tflite file or a weights file (plain tensors: loaded with weights_only=True).")
            return None
        try:
            path = keep_upload(ws, file, "model")
        except EXPECTED as err:
            fail(bar, "Upload refused", err)
            return None
        spec = ModelSpec.for_file(path, arch.strip() or "cifar-resnet")
    try:
        return load(str(ws.check_spec(spec)))
    except EXPECTED as err:
        fail(bar, f"Cannot load model {spec!r}", err)
        return None


def pick_unit(model: Model, ws: Workspace, index: ExampleIndex | None) -> tuple[str, str, dict[str, Path]]:
    """Sidebar: layer (searchable, with channel counts) and unit. Returns (unit spec, layer, the
    layer's SAE files by name)."""
    bar = st.sidebar
    bar.header("Unit")
    names = [n for n, info in model.layers.items() if info.channels]
    if st.session_state.get("layer") not in names:  # a widget's default must equal its state (see kept_choice)
        st.session_state.pop("layer", None)
    layer = bar.selectbox("Layer (type to search)", names, index=names.index(st.session_state.get(
        "layer", model.default_layer)), key="layer", format_func=lambda name: model.layers[name].summary)
    info = model.layers[layer]
    saes = find_saes(ws.sae_folders, layer, info.channels)
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
        return f"{layer}/{sae_name}:{int(feature)}", layer, saes
    units = [f"{layer}:{c}" for c in range(info.channels)]
    hints = top_labels(index.path, Path(index.path).stat().st_mtime, tuple(units)) if index is not None else {}
    channel = kept_choice(bar, f"Channel (of {info.channels}; type a label to search top examples)",
                          list(range(info.channels)), "channel", 0, salt=(layer, sorted(hints.items())),
                          format_func=lambda c: f"{c}" + (f"  · top: {hints[units[c]]}" if units[c] in hints else ""))
    if kind == "neuron":
        h, w = info.shape[1], info.shape[2]
        y = bar.number_input(f"Row (of {h})", 0, h - 1, value=h // 2, key="neuron_y")
        x = bar.number_input(f"Column (of {w})", 0, w - 1, value=w // 2, key="neuron_x")
        return f"{layer}:{channel}@{int(y)},{int(x)}", layer, saes
    return f"{layer}:{channel}", layer, saes


def sample_index(loaded: Loaded, ws: Workspace) -> str | None:
    """The bundled sample mined for this model into home (once, seconds for the default model), so a
    first start shows dataset examples and can run the probe without any data of the user's."""
    kept = st.session_state.setdefault("sample_indexes", {})
    if loaded.model.fingerprint not in kept:
        bar = st.sidebar.progress(0.0, text="mining the bundled sample images (first start)…")
        try:
            with model_turn(loaded):
                index = mine_sample(loaded.model, folder=ws.folder("indexes"), progress=False,
                                    on_progress=lambda done, total: bar.progress(done / max(total, 1)))
            kept[loaded.model.fingerprint] = index.path
        except EXPECTED as err:
            fail(st.sidebar, "Cannot mine the bundled sample", err)
            kept[loaded.model.fingerprint] = None
        finally:
            bar.empty()
    return kept[loaded.model.fingerprint]


def index_state(model: Model) -> str:
    """Where the chosen index is kept: one choice per model, so switching models never keeps an index
    mined with another."""
    return f"index_kept_{model.fingerprint[:12]}"


def pick_index(ws: Workspace, loaded: Loaded) -> ExampleIndex | None:
    bar = st.sidebar
    bar.header("Dataset examples")
    sample = sample_index(loaded, ws)
    found = sorted(str(p) for p in ws.folder("indexes").glob("*.sqlite"))  # where the Data view mines to
    choice = kept_choice(bar, "Index", ["(none)", *found, "(path…)"], index_state(loaded.model), sample or "(none)",
                         format_func=lambda p: p if p.startswith("(") else (
                             "bundled sample (300 CIFAR-10 images)" if p == sample else Path(p).name))
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
    except EXPECTED as err:
        fail(bar, "Cannot use this index", err)
        return None
    summary = index.summary()
    bar.caption(f"{summary['mined']} images, {summary['units']} units, {summary['skipped']} skipped")
    return index


def render_settings(model: Model) -> RenderConfig:
    """The neuron view's render settings: the preset's defaults, changed by the widgets."""
    base = PRESETS["neuron-view"]
    with st.expander("Render settings", expanded=False):
        c1, c2, c3 = st.columns(3)
        steps = c1.number_input("Steps", 16, 4096, base.steps, step=16, key="steps")
        size = c2.number_input("Size (px)", 16, 1024, model.input_size[0], step=8,
                               key=f"size_{model.name}")  # each model starts at its own input size
        params = list(PARAMETERISATIONS)
        param = c3.selectbox("Parameterisation", params, index=params.index(base.param), key="param")
        samples = c1.number_input("Diverse samples", 1, 16, base.samples, key="samples")
        diversity = c2.number_input("Diversity weight", 0.0, 1e4, base.diversity, key="diversity",
                                    help="lucid uses 100 on InceptionV1; activation scales differ between models, "
                                         "so lower it when the renders stop driving the unit")
        seed = c3.number_input("Seed", 0, 2**31 - 1, base.seed, key="seed")
        layers = ["(the unit's layer)", *(n for n, info in model.layers.items() if info.layout == "spatial")]
        diversity_layer = c1.selectbox("Diversity layer", layers, key=f"diversity_layer_{model.name}",
                                       help="where the samples' Gram matrices are pushed apart; a lower layer keeps "
                                            "samples alive when the unit's layer is small")
    return base.with_settings(samples=int(samples), diversity=float(diversity), param=param, size=int(size),
                              steps=int(steps), seed=int(seed),
                              diversity_layer=None if diversity_layer == layers[0] else diversity_layer)


def render_with_progress(loaded: Loaded, cache: RenderCache, units, config: RenderConfig, saes: dict, text: str):
    """A cached render with a progress bar; None (and a message) when it fails."""
    bar = st.progress(0.0, text=text)
    try:
        with model_turn(loaded):
            return cache.render(loaded.model, units, config, saes=saes,
                                on_progress=lambda s, n: bar.progress(s / n, text=f"step {s} of {n}"))
    except EXPECTED as err:
        fail(st, "Render failed", err)
        return None
    finally:
        bar.empty()


def show_renders(loaded: Loaded, ws: Workspace, unit: str, saes: dict, index: ExampleIndex | None) -> None:
    st.subheader("Renders")
    config = render_settings(loaded.model)
    cache = RenderCache(ws.folder("renders"))
    try:
        result = cache.get(loaded.model, unit, config, saes=saes)
    except EXPECTED as err:
        return fail(st, "Cannot render this unit", err)
    if st.button("Render", key="render", type="primary", disabled=result is not None,
                 help="already rendered with these settings" if result is not None else None):
        result = render_with_progress(loaded, cache, unit, config, saes, "rendering…")
    if result is None:
        st.caption("Not rendered with these settings yet.")
        return
    best_real = index.stats(unit).max if index is not None and unit in index.units() else None
    st.image([enlarged(img, 160) for img in result.images],
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
    for column, (name, value) in zip(st.columns(4), [("images", f"{stats.count:,}"), ("mean", f"{stats.mean:.3f}"),
                                                     ("max", f"{stats.max:.3f}"), ("active", f"{stats.active:.0%}")]):
        column.metric(name, value)
    k = st.slider("Examples shown", 4, max(4, len(index.examples(unit))), 8, key="examples_k")
    for bottom in (False, True):
        examples = index.examples(unit, bottom=bottom, k=k)
        st.markdown("**Bottom** (least activating)" if bottom else "**Top** (most activating): crop, then where it fired")
        pictures, captions = [], []
        for e in examples:
            pictures += [index.crop(e).resize((96, 96)), index.overlay(e).resize((96, 96))]
            captions += [f"{e.value:.3f} {e.label or ''}", Path(e.path).name]
        st.image(pictures, caption=captions)


def accentuation_seeds(index: ExampleIndex, unit: str, k: int = 16, most: int = 4) -> list:
    """The unit's best example of each label among its top `k` (at most `most`): for a
    polysemantic unit, its top cat and its top car side by side."""
    seeds, labels = [], set()
    for example in index.examples(unit, k=k):
        if example.label is None:  # unlabelled images: the top two
            if len(seeds) < 2:
                seeds.append(example)
        elif example.label not in labels:
            seeds.append(example)
            labels.add(example.label)
    return seeds[:most]


def show_accentuation(loaded: Loaded, ws: Workspace, unit: str, saes: dict, index: ExampleIndex | None) -> None:
    """Feature accentuation of the unit's top examples: what in each image makes it fire."""
    if index is None or unit not in index.units():
        return
    st.subheader("What in these images makes it fire? (accentuation)")
    seeds = accentuation_seeds(index, unit)
    left, right = st.columns(2)
    stay_close = left.slider("Stay close to the image", 0.0, 20.0, RenderConfig().stay_close, 0.5, key="stay_close",
                             help="how hard the image is pulled back towards the example (0: free to drift)")
    steps = right.number_input("Steps", 16, 2048, 128, 16, key="accent_steps")
    cache = RenderCache(ws.folder("renders"))
    configs = [RenderConfig(seed_image=index.thumbnail(e.image), stay_close=float(stay_close), steps=int(steps))
               for e in seeds]
    try:
        results = [cache.get(loaded.model, unit, config, saes=saes) for config in configs]
    except EXPECTED as err:
        return fail(st, "Cannot accentuate this unit", err)
    done = all(r is not None for r in results)
    if st.button("Accentuate", key="accentuate", disabled=done,
                 help="already made with these settings" if done else "start from each top example, push it "
                                                                      "towards the unit, stay close to it"):
        results = [r or render_with_progress(loaded, cache, unit, config, saes, f"accentuating example {i + 1}…")
                   for i, (r, config) in enumerate(zip(results, configs))]
    if not all(r is not None for r in results):
        st.caption(f"The best top example of each label ({len(seeds)}), not accentuated with these settings yet.")
        return
    pictures, captions = [], []
    for example, result in zip(seeds, results):
        seed_picture = index.thumbnail(example.image)  # enlarged by whole pixels, as the render beside it
        pictures += [seed_picture.resize((128, 128 * seed_picture.height // seed_picture.width), 0),
                     enlarged(result.images[0], 128)]
        captions += [f"{example.label or Path(example.path).name}: {result.seed_activation[0]:.3f}",
                     f"accentuated: {result.activations[0]:.3f} (moved {result.seed_distance[0]:.3f} RMS)"]
    st.image(pictures, caption=captions)


def concept_inputs(ws: Workspace, loaded: Loaded) -> dict:
    """Concepts from a labelled folder's label groups, from folders, and from uploaded images."""
    model = loaded.model
    st.markdown("Concepts: label groups of a labelled folder, folders, and/or uploaded images (two or more).")
    c1, c2 = st.columns(2)
    sample_fits = set(SAMPLE_CLASSES) <= set(model.labels or ())  # the sample's labels are this model's
    data = c1.text_input("Labelled folder (class subfolders)", key="concept_data",
                         placeholder="the bundled sample (300 CIFAR-10 images)" if sample_fits else "")
    groups = c2.text_area("Label groups (a label, NAME=LABEL+LABEL, or an ImageNet group)", default_groups(model),
                          key="concept_groups", height=80)
    per = c1.number_input("Images per concept", 8, 5000, 100, key="per_concept")
    folders = c2.text_area("Folder concepts, one NAME=FOLDER per line", key="concept_folders", height=80)
    concepts: dict = {}
    if data.strip() or sample_fits:
        data = data if data.strip() else SAMPLE_DIR
        concepts.update(labelled_concepts(loaded.model, ws, model.fingerprint, str(ws.resolve(data)), groups, int(per)))
    concepts.update(build_concepts(model, folders={name: ws.source(folder)
                                                   for name, folder in parse_named_paths(folders).items()}))
    with st.expander("Concepts from uploaded images"):
        name = st.text_input("Concept name", key="upload_concept_name")
        files = st.file_uploader("Images of this concept", type=None, accept_multiple_files=True,
                                 key="upload_concept_files")
        if st.button("Add concept", key="add_concept") and name.strip() and files:
            kept = []
            for file in files:
                try:
                    kept.append(keep_upload(ws, file, "image", f"concepts/{name}"))
                except EXPECTED as err:
                    fail(st, "Image refused", err)
            if kept:
                st.session_state.setdefault("uploaded_concepts", {})[name.strip()] = str(kept[0].parent)
        for cname, folder in st.session_state.get("uploaded_concepts", {}).items():
            st.caption(f"{cname}: {len(list(Path(folder).iterdir()))} images")
    concepts.update(build_concepts(model, folders=st.session_state.get("uploaded_concepts", {})))
    return concepts


def show_probe(loaded: Loaded, ws: Workspace, unit: str, sae_files: dict[str, Path], saes: dict[str, SAE],
               index: ExampleIndex | None) -> None:
    st.subheader("Is it polysemantic?")
    model = loaded.model
    try:
        concepts = concept_inputs(ws, loaded)
    except EXPECTED as err:
        return fail(st, "Cannot build the concepts", err)
    c1, c2, c3 = st.columns(3)
    renders = c1.number_input("Renders to classify", 0, 16, 4, key="probe_renders")
    steps = c2.number_input("Render steps", 16, 2048, 128, step=16, key="probe_steps")
    sae_name = c3.selectbox("Split into SAE features", ["(no SAE)", *sae_files], key="probe_sae",
                            disabled="/" in unit or not sae_files)
    key = (model.name, model.fingerprint, unit, concepts_key(concepts), index.path if index else None, sae_name,
           int(renders), int(steps))
    reports = st.session_state.setdefault("probes", {})
    if st.button("Probe", key="probe", type="primary", disabled=len(concepts) < 2):
        sae = sae_files[sae_name] if sae_name != "(no SAE)" and "/" not in unit else None
        with st.spinner(f"Measuring {len(concepts)} concepts, rendering and classifying…"):
            try:
                with model_turn(loaded):
                    reports[key] = probe(model, vz.parse_unit(unit, model, saes), concepts, sae=sae,
                                         index=index if index is not None and unit in index.units() else None,
                                         renders=int(renders), render_steps=int(steps))
            except EXPECTED as err:
                return fail(st, "Probe failed", err)
    if len(concepts) < 2:
        st.caption(f"{len(concepts)} concept(s) defined; the probe needs two or more.")
    if key in reports:
        show_report(reports[key])


def show_report(report) -> None:
    banner = {"monosemantic": st.success, "polysemantic": st.warning}.get(report.verdict, st.info)
    banner(f"Verdict: **{report.summary}** — score {report.score:.2f}")
    for warning in report.warnings:
        st.warning(warning)
    st.dataframe(report.evidence_table(), hide_index=True)
    if report.renders:
        st.markdown(f"**Renders:** {report.renders['summary']}")
        st.image([enlarged(img) for img in report.renders["images"]],
                 caption=[f"model: {c} · nearest: {n}" for c, n in
                          zip(report.renders["classified_as"], report.renders["nearest_concept"])])
    if report.example_clusters:
        st.markdown(f"**Top dataset examples, grouped by the model's own features:** {report.clusters_summary()}")
    if report.sae_split:
        st.markdown("**Split into SAE features** (share of the unit on its driving images):")
        st.dataframe(report.split_table(), hide_index=True)
        pictures = [f for f in report.sae_split if f["render"] is not None]
        if pictures:
            st.image([enlarged(f["render"]) for f in pictures],
                     caption=[f["feature"] for f in pictures])


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
        grid = PRESETS["layer-grid"]
        steps = st.number_input("Steps per channel", 16, 2048, grid.steps, step=16, key="grid_steps")
        config = grid.with_settings(steps=int(steps))
        result = cache.get(model, units, config)
        if result is None and st.button(f"Render all {channels} channels", key="render_layer", type="primary"):
            result = render_with_progress(loaded, cache, units, config, {}, "rendering the layer…")
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


def open_layer_unit(unit: str) -> None:
    """From a circuit to the neuron view of one of its channels (in its own layer)."""
    layer, channel = unit.rsplit(":", 1)
    st.session_state.update(layer=layer, channel=int(channel), unit_kind="channel", view="Neuron")


def show_circuit(loaded: Loaded, ws: Workspace, unit: str, saes: dict[str, SAE], index: ExampleIndex | None) -> None:
    st.subheader("Circuit: what feeds it, what it feeds")
    model = loaded.model
    here = model.layers[model.resolve_layer(unit.split(":")[0].split("/")[0])].order
    before = [n for n, info in model.layers.items() if info.channels and info.order < here]
    after = [n for n, info in model.layers.items() if info.channels and info.order > here and n != "logits"] + ["logits"]
    c1, c2, c3 = st.columns([1, 2, 2])
    side = c1.radio("Direction", ["upstream", "downstream"], key="circuit_side",
                    disabled=not before and unit.startswith("logit"))
    choices = before if side == "upstream" else after
    if not choices:
        st.caption(f"No layer {'before' if side == 'upstream' else 'after'} this unit's.")
        return
    tops = [n for n in choices if "." not in n] or choices  # blocks first: the layer just before is the default
    default = tops[-1] if side == "upstream" else tops[0]
    other = c2.selectbox("Other end", choices, index=choices.index(default), key=f"circuit_layer_{side}")
    folder = c3.text_input("Images (reference mean and top examples)", str(SAMPLE_DIR), key="circuit_data")
    key = (model.name, model.fingerprint, unit, side, other, folder, index.path if index else None)
    found_all = st.session_state.setdefault("circuits", {})
    if st.button("Trace", key="circuit", type="primary"):
        found_all[key] = held_job(loaded, "Attributing…", "Circuit failed", lambda: vz.circuit(
            model, vz.parse_unit(unit, model, saes), saes=saes, data=ws.source(folder), **{side: other},
            index=index if index is not None and unit in index.units() else None))
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


def open_unit(unit: str, sae_name: str | None) -> None:
    """From the atlas to the neuron view of one of its units (a channel or an SAE feature)."""
    number = int(unit.rsplit(":", 1)[1])
    if sae_name is None:
        return open_channel(number)
    st.session_state.update(unit_kind="SAE feature", sae_name=sae_name, feature=number, view="Neuron")


def show_atlas(loaded: Loaded, ws: Workspace, layer: str, sae_files: dict[str, Path], saes: dict[str, SAE]) -> None:
    model = loaded.model
    st.subheader(f"Layer atlas: every unit of {layer}, probed with the same concepts")
    what = st.radio("Units", ["channels", *[f"SAE {name}" for name in sae_files]], key="atlas_units", horizontal=True)
    sae_name = what.removeprefix("SAE ") if what != "channels" else None
    try:
        concepts = concept_inputs(ws, loaded)
    except EXPECTED as err:
        return fail(st, "Cannot build the concepts", err)
    if len(concepts) < 2:
        st.caption(f"{len(concepts)} concept(s) defined; the atlas needs two or more.")
        return
    sae = saes[sae_name] if sae_name else None
    folder = ws.folder("atlases")
    try:
        atlas = cached_atlas(atlas_key(model, layer, as_concepts(concepts), sae), folder)
    except EXPECTED as err:
        return fail(st, "Cannot read the concepts", err)
    units = sae.config.d_sae if sae is not None else model.layers[layer].channels
    if atlas is None:
        st.caption(f"Not built yet for these units and concepts: {units} units x {len(concepts)} concepts, one pass "
                   "over the concept images, then kept on disk.")
        if not st.button(f"Build the atlas ({units} units)", key="build_atlas", type="primary"):
            return
        bar = st.progress(0.0, text="probing…")
        try:
            with model_turn(loaded):
                atlas = layer_atlas(model, layer, concepts, sae=sae, sae_name=sae_name, folder=folder, progress=False,
                                    on_progress=lambda done, total: bar.progress(
                                        done / max(total, 1), text=f"{done:,} of {total:,} concept images"))
        except EXPECTED as err:
            return fail(st, "Atlas failed", err)
        bar.empty()
    counts = atlas.counts()
    for column, (verdict, count) in zip(st.columns(len(counts)), counts.items()):
        column.metric(verdict, count)
    st.caption(f"{len(atlas.entries)} units, {atlas.images:,} concept images. \"rare\": fired on fewer than "
               f"{MIN_FIRING} of them, too few to judge (counted apart, not dropped).")
    c1, c2 = st.columns(2)
    driven_by = c1.multiselect("Driven by (all of)", atlas.concepts, key="atlas_driven_by")
    verdicts = c2.multiselect("Verdict", list(VERDICTS), key="atlas_verdicts")
    chosen = atlas.select(driven_by, verdicts)
    st.dataframe(atlas.rows(chosen), hide_index=True)
    if chosen:
        c1, c2 = st.columns([3, 1])
        unit = c1.selectbox(f"Open one of these {len(chosen)} units", [e.unit for e in chosen], key="atlas_open")
        c2.button("Open in the neuron view", key="atlas_open_button", on_click=open_unit, args=(unit, sae_name))


def explore_edit(path: str) -> None:
    """Load a saved edit as the app's model (the other views then show the edited network)."""
    st.session_state.update(model_source="model spec", model_spec=f"edit:{path}", view="Neuron")


def show_edit(loaded: Loaded, ws: Workspace, layer: str, sae_files: dict[str, Path], saes: dict[str, SAE]) -> None:
    model = loaded.model
    st.subheader(f"Edit: trim the units of {layer} the classifier uses for a cue it should ignore")
    what = st.radio("Units", ["channels", *[f"SAE {name}" for name in sae_files]], key="edit_units", horizontal=True)
    sae_name = what.removeprefix("SAE ") if what != "channels" else None
    c1, c2 = st.columns(2)
    train = c1.text_input("Training images (class folders)", key="edit_train")
    test = c2.text_input("Test images (class folders; a file's WORD- prefix is its group)", key="edit_test")
    named = c1.text_area("Concepts, one NAME=FOLDER per line (those not named after a class are the cue)",
                         key="edit_concepts", height=100)
    top = c2.number_input("Units to judge (best first)", 4, 4096, 256, key="edit_top")
    rank_images = c2.number_input("Training images to rank on", 16, 1_000_000, 2000, key="edit_rank_images")
    try:
        concepts = {name: ws.source(folder) for name, folder in parse_named_paths(named).items()}
    except EXPECTED as err:
        return fail(st, "Cannot read the concepts", err)
    key = (model.fingerprint, layer, sae_name, train, named, int(top), int(rank_images))
    ranked = st.session_state.setdefault("edit_ranked", {})
    if st.button("Rank units", key="edit_rank", type="primary", disabled=not (train.strip() and len(concepts) >= 2)):
        ranked[key] = held_job(loaded, "Attributing the decision and probing the top units…", "Ranking failed",
                               lambda: shift(model, layer, sae_files[sae_name] if sae_name else None, ws.source(train),
                                             concepts, top=int(top), retrain=False, max_images=int(rank_images)))
    result = ranked.get(key)
    if result is None:
        st.caption("Not ranked yet for these settings.")
        return
    st.caption(f"Ticked: the units the concepts to ignore ({', '.join(result.ignore)}) drive more than the "
               "task's concepts do. Tick or untick before applying.")
    chosen = []
    for c in result.candidates:
        label = (f"{c.unit} · attribution {c.attribution:+.4f} · {c.verdict} ({', '.join(c.concepts) or '-'}) · z "
                 + ", ".join(f"{name} {z:+.2f}" for name, z in c.z.items()))
        if st.checkbox(label, value=c.proposed, key=f"edit_pick_{c.unit}"):
            chosen.append(c.unit)
    retrain = st.checkbox("Retrain the head on the training images with the edit in place", key="edit_retrain")
    if st.button(f"Apply the edit ({len(chosen)} units)", key="edit_apply", disabled=not test.strip()):
        bar = st.progress(0.0, text="scoring…")
        try:
            with model_turn(loaded):
                edited = vz.edit(model, chosen, saes={SAE_NAME: sae_files[sae_name]} if sae_name else None)
                if retrain:
                    edited = retrain_head(edited, ws.source(train))
                scores = {}
                for name, scored in (("original", model), ("edited", edited)):
                    scores[name] = evaluate(scored, ws.source(test), on_progress=lambda done, total, name=name: bar.progress(
                        done / max(total, 1), text=f"{name}: {done:,} of {total:,} test images"))
            path = edited.save(ws.folder("edits") / f"edit-{edited.fingerprint[:12]}.json")
        except EXPECTED as err:
            return fail(st, "Edit failed", err)
        bar.empty()
        st.session_state.edit_applied = {"scores": scores, "path": str(path), "units": len(chosen)}
    applied = st.session_state.get("edit_applied")
    if applied:
        scores = applied["scores"]
        st.dataframe([{"model": name, **s.row(), **{g: f"{a:.1%}" for g, a in s.groups.items()}}
                      for name, s in scores.items()], hide_index=True)
        st.caption(f"{applied['units']} units ablated; saved as {Path(applied['path']).name}.")
        st.button("Explore the edited model", key="edit_explore", on_click=explore_edit, args=(applied["path"],))


def show_data(loaded: Loaded, ws: Workspace, layer: str) -> None:
    model = loaded.model
    st.subheader("Mine a folder for dataset examples")
    st.caption("Streams every image through the model and keeps each unit's top and bottom k, with crops and "
               "heatmaps. Interrupted? Press Mine again with the same settings: it resumes where it stopped.")
    what = st.radio("Images", ["a folder or list file", "CIFAR-10 test set (10,000 images; downloads 170 MB once)"],
                    key="mine_what", horizontal=True)
    fetch = what.startswith("CIFAR")
    folder = "" if fetch else st.text_input("Image folder (class subfolders become labels) or list file",
                                            key="mine_folder")
    names = [n for n, info in model.layers.items() if info.channels]
    layers = st.multiselect("Layers (all their channels)", names, default=[layer], key=f"mine_layers_{model.name}")
    c1, c2 = st.columns(2)
    k = c1.number_input("Top/bottom k per unit", 1, 256, 16, key="mine_k")
    batch = c2.number_input("Batch size", 1, 1024, 64, key="mine_batch")
    if st.button("Fetch and mine" if fetch else "Mine", key="mine", type="primary",
                 disabled=not ((fetch or folder.strip()) and layers)):
        try:
            if fetch:
                with st.spinner("Fetching CIFAR-10 through torchvision…"):
                    data, where = fetch_cifar10(ws.folder("datasets")), ws.folder("datasets") / "cifar-10-test"
            else:
                data, where = ws.source(folder), ws.resolve(folder)
            path = index_path(ws.folder("indexes"), model, where, ",".join(layers), int(k), int(batch))
            bar = st.progress(0.0, text="mining…")
            with model_turn(loaded):
                index = mine(model, ",".join(layers), data, k=int(k), index=path, batch_size=int(batch),
                             progress=False,
                             on_progress=lambda done, total: bar.progress(
                                 done / max(total, 1), text=f"{done:,} of {total:,} images" + (
                                     "; now crops and heatmaps…" if done >= total else "")))
            bar.empty()
        except EXPECTED as err:
            return fail(st, "Mining failed", err)
        st.session_state[index_state(model)] = str(path)  # picked on the rerun
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


def main() -> None:
    st.set_page_config(page_title="vizneuron", layout="wide")
    ws = workspace(*Workspace.settings(sys.argv[1:], os.environ))
    loaded = pick_model(ws)
    if loaded is None:
        st.title("vizneuron")
        st.info("Pick a model in the sidebar.")
        return
    index = pick_index(ws, loaded)
    unit, layer, sae_files = pick_unit(loaded.model, ws, index)
    saes = session_saes(sae_files)
    view = st.radio("View", ["Neuron", "Layer", "Atlas", "Edit", "Data"], key="view", horizontal=True,
                    label_visibility="collapsed")
    if view == "Neuron":
        st.title(f"{unit}")
        st.caption(f"{loaded.model.name} · what does this unit respond to, and is it one concept or several?")
        show_renders(loaded, ws, unit, saes, index)
        show_examples(index, unit)
        show_accentuation(loaded, ws, unit, saes, index)
        show_probe(loaded, ws, unit, sae_files, saes, index)
        show_circuit(loaded, ws, unit, saes, index)
    elif view == "Layer":
        show_layer(loaded, ws, layer, index)
    elif view == "Atlas":
        show_atlas(loaded, ws, layer, sae_files, saes)
    elif view == "Edit":
        show_edit(loaded, ws, layer, sae_files, saes)
    else:
        show_data(loaded, ws, layer)


main()
