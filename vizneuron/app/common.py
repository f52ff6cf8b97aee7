"""What every panel shares: the `Context` it is shown with, the per-model lock, one way to run a
job (held model, progress, the error as a message), kept choices, uploads and the cached resources
Streamlit keeps between reruns."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from vizneuron.errors import expected, user_message
from vizneuron.mine import ExampleIndex
from vizneuron.models import Model, load_model
from vizneuron.probe import Atlas, build_concepts, sample_atlas
from vizneuron.sae import SAE
from vizneuron.units import Unit
from vizneuron.workspace import Workspace

Result = TypeVar("Result")
#: a job's progress callback: (done, in all, the text shown beside the bar or None to keep it)
Progress = Callable[[int, int, "str | None"], None]


@dataclass
class Loaded:
    """A model shared by all sessions, with the lock its hooks need (one job at a time per model)."""

    model: Model
    lock: threading.Lock


@dataclass
class Context:
    """Everything a panel is shown with, decided once per rerun by the shell and the sidebar: the
    workspace, the model, the chosen index, the unit (its spec as shown and as parsed, once) and the
    layer's SAEs."""

    ws: Workspace
    loaded: Loaded
    index: ExampleIndex | None
    unit: str  # the unit's spec, as the title shows it
    target: Unit | None  # the same unit, parsed once for every panel's job (None: unparsable; the
    #                      shell then shows only the views of its layer)
    layer: str
    sae_files: dict[str, Path] = field(default_factory=dict)  # the layer's SAE files by name
    saes: dict[str, SAE] = field(default_factory=dict)  # the same SAEs, loaded

    @property
    def model(self) -> Model:
        return self.loaded.model

    @cached_property
    def unit_index(self) -> ExampleIndex | None:
        """The chosen index when it holds the unit's examples, else None (looked up once per rerun)."""
        return self.index if self.index is not None and self.unit in self.index.units() else None


@contextmanager
def model_turn(loaded: Loaded) -> Iterator[Model]:
    """Hold the model for one job; say so when another session's job has it."""
    if not loaded.lock.acquire(blocking=False):
        note = st.info("Waiting for another session's job on this model to finish…")
        loaded.lock.acquire()
        note.empty()
    try:
        yield loaded.model
    finally:
        loaded.lock.release()


def held_job(loaded: Loaded, text: str, failure: str, job: Callable[[Progress], Result], *,
             where: Any = st) -> Result | None:
    """`job(progress)`'s result, run while holding the model under a spinner saying `text` (and a
    progress bar, from the job's first report on); None (and `failure: why` shown) when it fails
    with an error meant for users."""
    bar = None

    def progress(done: int, total: int, note: str | None = None) -> None:
        nonlocal bar
        if bar is None:
            bar = where.progress(0.0, text=text)
        bar.progress(min(done / max(total, 1), 1.0), text=note or text)

    try:
        with st.spinner(text), model_turn(loaded):
            return job(progress)
    except expected() as err:
        fail(where, failure, err)
        return None
    finally:
        if bar is not None:
            bar.empty()


def fail(where: Any, message: str, err: BaseException | None = None) -> None:
    where.error(f"{message}: {user_message(err)}" if err else message)


def kept_choice(where: Any, label: str, options: list, state: str, default: Any, salt: object = None, **kwargs: Any):
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


def keep_upload(ws: Workspace, file: Any, kind: str, subfolder: str = "") -> Path:
    """An uploaded file kept in this session's part of the app's home (checked as `kind`)."""
    ctx = st.runtime.scriptrunner.get_script_run_ctx()
    return ws.keep_upload(ctx.session_id if ctx else "", file.file_id, file.name, file.getvalue(), kind, subfolder)


def open_view(view: str) -> None:
    """A click that opens another view."""
    st.session_state.update(view=view)


def open_neuron_view(**state: Any) -> None:
    """A click that opens the neuron view on another unit (`state`: the sidebar's choices to set)."""
    st.session_state.update(view="Neuron", **state)


def open_channel(channel: int, layer: str | None = None) -> None:
    """Open the neuron view on a channel (of `layer`, or of the layer shown)."""
    open_neuron_view(channel=channel, unit_kind="channel", **({"layer": layer} if layer else {}))


@st.cache_resource
def workspace(roots: tuple[str, ...], home: str) -> Workspace:
    ws = Workspace.create(list(roots), home)
    ws.prune_sessions()
    return ws


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load(spec: str) -> Loaded:
    return Loaded(load_model(spec), threading.Lock())


@st.cache_resource(max_entries=8)
def open_index(path: str, modified: float) -> ExampleIndex:  # `modified`: a re-mined file is reopened
    return ExampleIndex(path)


@st.cache_data(max_entries=32)
def top_labels(path: str, modified: float, units: tuple[str, ...]) -> dict[str, tuple[str, int, int]]:
    """Each unit's commonest label among its top examples: what the channel search matches."""
    return open_index(path, modified).top_labels(units)


def index_top_labels(index: ExampleIndex, units: list[str]) -> dict[str, tuple[str, int, int]]:
    return top_labels(index.path, Path(index.path).stat().st_mtime, tuple(units))


@st.cache_resource(max_entries=16)
def labelled_concepts(_model: Model, _ws: Workspace, weights: str, data: str, groups: str, per_concept: int) -> dict:
    """Label-group concepts of a folder (listing a big folder once, not on every rerun)."""
    return build_concepts(_model, data=_ws.source(data), groups=groups, per_concept=per_concept)


@st.cache_resource(max_entries=8, show_spinner="Judging every unit of the layer on the bundled sample (once)…")
def _first_look(_model: Model, folder: str, weights: str, layer: str) -> Atlas | None:
    # keyed by the folder too: the atlas is kept in each workspace's home, where the Atlas view reads it
    return sample_atlas(_model, layer, folder)


def first_look(model: Model, ws: Workspace, layer: str) -> Atlas | None:
    """The atlas of `layer` on the bundled sample's classes (None for a model without them): the
    first screen's verdicts and its strip of polysemantic units."""
    try:
        return _first_look(model, str(ws.folder("atlases")), model.fingerprint, layer)
    except expected():  # a layer the probe cannot judge: the first screen shows no verdict
        return None
