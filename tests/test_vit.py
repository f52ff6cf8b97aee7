"""Token layouts (ViTs): channels average patch tokens, or read the CLS token; render works."""

from __future__ import annotations

import pytest
import torch

from vizneuron import capture, load_model, parse_unit, render


def test_vit_tiny_token_layers_units_and_render():
    torch.manual_seed(0)  # timm draws the random init from the global generator
    model = load_model("timm:vit_tiny_patch16_224?weights=none")
    info = model.layers["blocks.11"]
    assert info.layout == "tokens" and info.shape == (197, 192) and info.channels == 192
    unit = parse_unit("blocks.11:5", model)
    assert unit.tokens.prefix == 1 and not unit.tokens.cls
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad(), capture(model, ["blocks.11"]) as cap:
        tokens = cap.run(x)["blocks.11"]
    assert torch.allclose(unit.activation({"blocks.11": tokens}), tokens[:, 1:, 5].mean(1))
    result = render(model, "blocks.11:5", param="maco", lr=0.2, steps=8, progress=False)
    assert result.images.shape == (1, 3, 224, 224) and torch.isfinite(result.history).all()
    assert result.history[-1, 0] > result.history[0, 0]

    cls_model = load_model("timm:vit_tiny_patch16_224?weights=none&tokens=cls")
    cls_unit = parse_unit("blocks.11:5", cls_model)
    assert torch.allclose(cls_unit.activation({"blocks.11": tokens}), tokens[:, 0, 5])


def test_mining_a_vit_token_layer_finds_patches_on_the_grid(tmp_path):
    import numpy as np
    from PIL import Image

    from vizneuron import mine
    from vizneuron.imageio import load_image

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    model = load_model("timm:vit_tiny_patch16_224?weights=none")
    index = mine(model, "blocks.5:0-3", tmp_path, k=2, batch_size=3, progress=False)
    top = index.examples("blocks.5:2")[0]
    assert 0 <= top.position[0] < 14 and 0 <= top.position[1] < 14  # the 14x14 patch grid
    assert top.heatmap.shape == (14, 14) and index.thumbnail(top.image).size == (224, 224)
    x = load_image(tmp_path / f"{top.image}.png", model.input_size, model.inputs.crop_fraction)[None]
    with torch.no_grad(), capture(model, ["blocks.5"]) as cap:
        patches = cap.run(x)["blocks.5"][0, 1:, 2]
    assert divmod(int(patches.argmax()), 14) == top.position
    assert top.value == pytest.approx(float(patches.max()), rel=1e-4)


def test_render_pushes_vit_samples_apart_over_patch_tokens_only(monkeypatch):
    from vizneuron.models import TokenLayout
    from vizneuron.models.base import PLAIN
    from vizneuron.optim import objectives

    seen = []
    real = objectives.diversity
    monkeypatch.setattr(objectives, "diversity",
                        lambda layer, groups=1, tokens=PLAIN: seen.append(tokens) or real(layer, groups, tokens))
    torch.manual_seed(0)
    model = load_model("timm:vit_tiny_patch16_224?weights=none")
    result = render(model, "blocks.1:5", samples=2, steps=2, progress=False)
    assert seen == [TokenLayout(prefix=1)] and torch.isfinite(result.history).all()
