"""Data view: mine a folder (or the CIFAR-10 test set) for dataset examples; the index it writes is
then the one the sidebar picks."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vizneuron.errors import expected
from vizneuron.mine import index_path, mine
from vizneuron.sources import fetch_cifar10

from ..common import Context, fail, held_job
from ..sidebar import index_state


def show(ctx: Context) -> None:
    model, ws = ctx.model, ctx.ws
    st.subheader("Mine a folder for dataset examples")
    st.caption("Streams every image through the model and keeps each unit's top and bottom k, with crops and "
               "heatmaps. Interrupted? Press Mine again with the same settings: it resumes where it stopped.")
    what = st.radio("Images", ["a folder or list file", "CIFAR-10 test set (10,000 images; downloads 170 MB once)"],
                    key="mine_what", horizontal=True)
    fetch = what.startswith("CIFAR")
    folder = "" if fetch else st.text_input("Image folder (class subfolders become labels), list file, or "
                                            "hf-dataset:PATH (a Hub dataset on disk)", key="mine_folder")
    names = [n for n, info in model.layers.items() if info.channels]
    layers = st.multiselect("Layers (all their channels)", names, default=[ctx.layer], key=f"mine_layers_{model.name}")
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
                data, where = ws.source(folder), ws.data_path(folder)
            path = index_path(ws.folder("indexes"), model, where, ",".join(layers), int(k), int(batch))
        except expected() as err:
            return fail(st, "Mining failed", err)

        def progress_text(done: int, total: int) -> str:
            return f"{done:,} of {total:,} images" + ("; now crops and heatmaps…" if done >= total else "")

        index = held_job(ctx.loaded, "mining…", "Mining failed", lambda progress: mine(
            model, ",".join(layers), data, k=int(k), index=path, batch_size=int(batch), progress=False,
            on_progress=lambda done, total: progress(done, total, progress_text(done, total))))
        if index is None:
            return
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
