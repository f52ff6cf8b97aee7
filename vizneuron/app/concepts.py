"""The concept inputs the probe and the atlas share: label groups of a labelled folder (the bundled
sample by default, where its labels are the model's), folders, and uploaded images."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vizneuron.errors import expected
from vizneuron.probe import build_concepts, default_groups, parse_named_paths
from vizneuron.samples import SAMPLE_CLASSES, SAMPLE_DIR

from .common import Loaded, fail, keep_upload, labelled_concepts


def concept_inputs(ws, loaded: Loaded) -> dict:
    """Concepts from a labelled folder's label groups, from folders, and from uploaded images."""
    model = loaded.model
    st.markdown("Concepts: label groups of a labelled folder, folders, and/or uploaded images (two or more).")
    c1, c2 = st.columns(2)
    sample_fits = set(SAMPLE_CLASSES) <= set(model.labels or ())  # the sample's labels are this model's
    mine = model.fingerprint[:12]  # the data and groups of one model are not another's: widgets of their own
    data = c1.text_input("Labelled folder (class subfolders)", key=f"concept_data_{mine}",
                         placeholder="the bundled sample (300 CIFAR-10 images)" if sample_fits else "")
    groups = c2.text_area("Label groups (a label, NAME=LABEL+LABEL, or an ImageNet group)", default_groups(model),
                          key=f"concept_groups_{mine}", height=80)
    per = c1.number_input("Images per concept", 8, 5000, 100, key="per_concept")
    folders = c2.text_area("Folder concepts, one NAME=FOLDER per line", key="concept_folders", height=80)
    concepts: dict = {}
    if data.strip() or sample_fits:
        data = data if data.strip() else SAMPLE_DIR
        concepts.update(labelled_concepts(model, ws, model.fingerprint, str(ws.resolve(data)), groups, int(per)))
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
                except expected() as err:
                    fail(st, "Image refused", err)
            if kept:
                st.session_state.setdefault("uploaded_concepts", {})[name.strip()] = str(kept[0].parent)
        for cname, folder in st.session_state.get("uploaded_concepts", {}).items():
            st.caption(f"{cname}: {len(list(Path(folder).iterdir()))} images")
    concepts.update(build_concepts(model, folders=st.session_state.get("uploaded_concepts", {})))
    return concepts
