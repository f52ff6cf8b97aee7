"""Token layouts (ViTs): channels average patch tokens, or read the CLS token; render works."""

from __future__ import annotations

import torch

from vizneuron import capture, load_model, parse_unit, render


def test_vit_tiny_token_layers_units_and_render():
    model = load_model("timm:vit_tiny_patch16_224?weights=none")
    info = model.layers["blocks.11"]
    assert info.layout == "tokens" and info.shape == (197, 192) and info.channels == 192
    unit = parse_unit("blocks.11:5", model)
    assert unit.prefix_tokens == 1 and not unit.cls_token
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad(), capture(model, ["blocks.11"]) as cap:
        tokens = cap.run(x)["blocks.11"]
    assert torch.allclose(unit.activation({"blocks.11": tokens}), tokens[:, 1:, 5].mean(1))
    result = render(model, "blocks.11:5", param="maco", steps=6, progress=False)
    assert result.images.shape == (1, 3, 224, 224) and torch.isfinite(result.history).all()
    assert result.history[-1, 0] > result.history[0, 0]

    cls_model = load_model("timm:vit_tiny_patch16_224?weights=none&tokens=cls")
    cls_unit = parse_unit("blocks.11:5", cls_model)
    assert torch.allclose(cls_unit.activation({"blocks.11": tokens}), tokens[:, 0, 5])
