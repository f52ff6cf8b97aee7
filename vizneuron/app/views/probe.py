"""Neuron view: is it polysemantic? The probe's verdict with its evidence, renders classified by the
model, and the unit split into SAE features."""

from __future__ import annotations

import streamlit as st

from vizneuron.errors import expected
from vizneuron.imageio import enlarged
from vizneuron.probe import ProbeReport, concepts_key, probe

from ..common import Context, fail, held_job
from ..concepts import concept_inputs

NO_SAE = "(no SAE)"


def show(ctx: Context) -> None:
    st.subheader("Is it polysemantic?")
    try:
        concepts = concept_inputs(ctx.ws, ctx.loaded)
    except expected() as err:
        return fail(st, "Cannot build the concepts", err)
    c1, c2, c3 = st.columns(3)
    renders = c1.number_input("Renders to classify", 0, 16, 4, key="probe_renders")
    steps = c2.number_input("Render steps", 16, 2048, 128, step=16, key="probe_steps")
    feature = ctx.target.kind == "sae"
    sae_name = c3.selectbox("Split into SAE features", [NO_SAE, *ctx.sae_files], key="probe_sae",
                            disabled=feature or not ctx.sae_files)
    key = (ctx.model.name, ctx.model.fingerprint, ctx.unit, concepts_key(concepts),
           ctx.index.path if ctx.index else None, sae_name, int(renders), int(steps))
    reports = st.session_state.setdefault("probes", {})
    if st.button("Probe", key="probe", type="primary", disabled=len(concepts) < 2):
        sae = ctx.sae_files[sae_name] if sae_name != NO_SAE and not feature else None
        report = held_job(ctx.loaded, f"Measuring {len(concepts)} concepts, rendering and classifying…",
                          "Probe failed", lambda _progress: probe(
                              ctx.model, ctx.target, concepts, sae=sae, index=ctx.unit_index,
                              renders=int(renders), render_steps=int(steps)))
        if report is None:
            return
        reports[key] = report
    if len(concepts) < 2:
        st.caption(f"{len(concepts)} concept(s) defined; the probe needs two or more.")
    if key in reports:
        show_report(reports[key])


def show_report(report: ProbeReport) -> None:
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
