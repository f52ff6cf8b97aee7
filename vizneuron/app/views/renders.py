"""Neuron view: renders of the unit, cached, with the render settings."""

from __future__ import annotations

import streamlit as st

from vizneuron.choices import PARAMETERISATIONS
from vizneuron.errors import expected
from vizneuron.imageio import enlarged
from vizneuron.models import Model
from vizneuron.optim.cache import RenderCache
from vizneuron.optim.config import PRESETS, RenderConfig
from vizneuron.optim.render import RenderResult

from ..common import Context, fail, held_job


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


def cached_render(ctx: Context, units, config: RenderConfig, text: str) -> RenderResult | None:
    """A render through the app's render cache (shared with `vizneuron render --cache`), with a
    progress bar; None (and a message) when it fails."""
    cache = RenderCache(ctx.ws.folder("renders"))
    return held_job(ctx.loaded, text, "Render failed", lambda progress: cache.render(
        ctx.model, units, config, saes=ctx.saes, on_progress=lambda s, n: progress(s, n, f"step {s} of {n}")))


def rendered(ctx: Context, units, config: RenderConfig, failure: str) -> tuple[bool, RenderResult | None]:
    """(whether the cache could be asked, the cached render or None)."""
    try:
        return True, RenderCache(ctx.ws.folder("renders")).get(ctx.model, units, config, saes=ctx.saes)
    except expected() as err:
        fail(st, failure, err)
        return False, None


def show(ctx: Context) -> None:
    st.subheader("Renders")
    config = render_settings(ctx.model)
    asked, result = rendered(ctx, ctx.target, config, "Cannot render this unit")
    if not asked:
        return
    if st.button("Render", key="render", type="primary", disabled=result is not None,
                 help="already rendered with these settings" if result is not None else None):
        result = cached_render(ctx, ctx.target, config, "rendering…")
    if result is None:
        st.caption("Not rendered with these settings yet.")
        return
    index = ctx.unit_index
    best_real = index.stats(ctx.unit).max if index is not None else None
    st.image([enlarged(img, 160) for img in result.images],
             caption=[f"activation {a:.3f}" + (f" ({a / best_real:.1f}x best example)" if best_real else "")
                      for a in result.activations.tolist()])
