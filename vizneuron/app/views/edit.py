"""Edit view: SHIFT by hand. Rank the layer's units (channels or an SAE's features) by how much the
classifier leans on them, judge each against concepts, tick the ones to take out, and apply: the
same `shift.rank` and `shift.apply` as `vizneuron shift`, so the same defaults (units held at their
mean over the training images) and the same per-group table."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vizneuron.errors import expected
from vizneuron.models import bundled_saes
from vizneuron.probe import parse_named_paths
from vizneuron.shift import BIASED_MODEL, CUE_LAYER, apply, build_sample_cue_task, rank, task_concepts
from vizneuron.workspace import Workspace

from ..common import Context, fail, held_job


def explore_edit(path: str) -> None:
    """Load a saved edit as the app's model (the other views then show the edited network)."""
    st.session_state.update(model_source="model spec", model_spec=f"edit:{path}", view="Neuron")


DEMO_NOTE = ("The bundled cue task: the cue-biased model learned that a faint stripe texture means cat. 10 training "
             "images a class (the cue on every cat and on one dog), 10 images a concept, 10 test images a group (each "
             "test image with and without the cue): a demonstration, too small to measure finely. The full task's "
             "figures are on the SHIFT benchmark page.")


def start_cue_demo(ws: Workspace) -> None:
    """Fill the view for the bundled cue task (the cue-biased model, its SAE, the task built from the
    bundled sample) and ask the next rerun to rank and apply at once."""
    task = build_sample_cue_task(ws.folder("cue-task-sample"))
    st.session_state.update(
        model_source="model spec", model_spec=BIASED_MODEL, view="Edit", layer=CUE_LAYER,
        edit_units=f"SAE {next(iter(bundled_saes(BIASED_MODEL, CUE_LAYER)))}", edit_train=str(task / "train-biased"),
        edit_test=str(task / "test-balanced"), edit_top=256, edit_rank_images=2000, edit_retrain=False,
        edit_concepts="\n".join(f"{c}={path}" for c, path in task_concepts(task).items()), edit_demo=True)
    st.session_state.pop("edit_applied", None)


def show(ctx: Context) -> None:
    model, layer, ws = ctx.model, ctx.layer, ctx.ws
    st.subheader(f"Edit: trim the units of {layer} the classifier uses for a cue it should ignore")
    st.button("Try it on the bundled cue task", key="edit_try", on_click=start_cue_demo, args=(ws,),
              help="The bundled cat-vs-dog model that learned a faint stripe cue, its SAE, and a small cue task made "
                   "from the bundled sample's cats and dogs: rank, apply and score, in seconds")
    demo = st.session_state.pop("edit_demo", False) and model.name == BIASED_MODEL and layer == CUE_LAYER
    what = st.radio("Units", ["channels", *[f"SAE {name}" for name in ctx.sae_files]], key="edit_units",
                    horizontal=True)
    sae_file = ctx.sae_files[what.removeprefix("SAE ")] if what != "channels" else None
    c1, c2 = st.columns(2)
    train = c1.text_input("Training images (class folders)", key="edit_train")
    test = c2.text_input("Test images (class folders; a file's WORD- prefix is its group)", key="edit_test")
    named = c1.text_area("Concepts, one NAME=FOLDER per line (those not named after a class are the cue)",
                         key="edit_concepts", height=100)
    top = c2.number_input("Units to judge (best first)", 4, 4096, 256, key="edit_top")
    rank_images = c2.number_input("Training images to rank on", 16, 1_000_000, 2000, key="edit_rank_images")
    try:
        concepts = {name: ws.source(folder) for name, folder in parse_named_paths(named).items()}
    except expected() as err:
        return fail(st, "Cannot read the concepts", err)
    key = (model.fingerprint, layer, str(sae_file), train, named, int(top), int(rank_images))
    rankings = st.session_state.setdefault("edit_ranked", {})
    if st.button("Rank units", key="edit_rank", type="primary",
                 disabled=not (train.strip() and len(concepts) >= 2)) or demo:
        rankings[key] = held_job(ctx.loaded, "Attributing the decision and probing the top units…", "Ranking failed",
                                 lambda _progress: rank(model, layer, sae_file, ws.source(train), concepts,
                                                        top=int(top), max_images=int(rank_images)))
    ranking = rankings.get(key)
    if ranking is None:
        st.caption("Not ranked yet for these settings.")
        return
    st.caption(f"Ticked: the units the concepts to ignore ({', '.join(ranking.ignore)}) drive more than the "
               "task's concepts do. Tick or untick before applying.")
    chosen = []
    for c in ranking.candidates:
        label = (f"{c.unit} · attribution {c.attribution:+.4f} · {c.verdict} ({', '.join(c.concepts) or '-'}) · z "
                 + ", ".join(f"{name} {z:+.2f}" for name, z in c.z.items()))
        if st.checkbox(label, value=c.proposed, key=f"edit_pick_{c.unit}"):
            chosen.append(c.unit)
    retrain = st.checkbox("Retrain the head on the training images with the edit in place", key="edit_retrain")
    if st.button(f"Apply the edit ({len(chosen)} units)", key="edit_apply", disabled=not test.strip()) or demo:
        def edit_and_score(progress):
            return apply(model, ranking, ws.source(train), accept=chosen, test=ws.source(test), retrain=retrain,
                         max_images=int(rank_images), on_progress=lambda name, done, total: progress(
                             done, total, f"{name}: {done:,} of {total:,} test images"))

        result = held_job(ctx.loaded, "holding the units at their mean, scoring…", "Edit failed", edit_and_score)
        if result is None:
            return
        kept = result.retrained or result.edited
        try:
            path = kept.save(ws.folder("edits") / f"edit-{kept.fingerprint[:12]}.json")
        except expected() as err:
            return fail(st, "Cannot save the edit", err)
        st.session_state.edit_applied = {"table": result.group_table(), "path": str(path), "units": len(chosen),
                                         "demo": demo}
    applied = st.session_state.get("edit_applied")
    if applied:
        st.dataframe(applied["table"], hide_index=True)
        st.caption(f"{applied['units']} units ablated (held at their mean over the training images); saved as "
                   f"{Path(applied['path']).name}.")
        if applied["demo"]:
            st.caption(DEMO_NOTE)
        st.button("Explore the edited model", key="edit_explore", on_click=explore_edit, args=(applied["path"],))
