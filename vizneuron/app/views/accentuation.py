"""Neuron view: feature accentuation of the unit's top examples (what in each image makes it fire)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vizneuron.imageio import enlarged
from vizneuron.optim.config import RenderConfig

from ..common import Context
from .renders import cached_render, rendered


def show(ctx: Context) -> None:
    index = ctx.unit_index
    if index is None:
        return
    st.subheader("What in these images makes it fire? (accentuation)")
    seeds = index.best_per_label(ctx.unit)
    left, right = st.columns(2)
    stay_close = left.slider("Stay close to the image", 0.0, 20.0, RenderConfig().stay_close, 0.5, key="stay_close",
                             help="how hard the image is pulled back towards the example (0: free to drift)")
    steps = right.number_input("Steps", 16, 2048, 128, 16, key="accent_steps")
    configs = [RenderConfig(seed_image=index.thumbnail(e.image), stay_close=float(stay_close), steps=int(steps))
               for e in seeds]
    results = []
    for config in configs:
        asked, result = rendered(ctx, ctx.target, config, "Cannot accentuate this unit")
        if not asked:
            return
        results.append(result)
    done = all(r is not None for r in results)
    if st.button("Accentuate", key="accentuate", disabled=done,
                 help="already made with these settings" if done else "start from each top example, push it "
                                                                      "towards the unit, stay close to it"):
        results = [r or cached_render(ctx, ctx.target, config, f"accentuating example {i + 1}…")
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
