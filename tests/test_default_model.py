"""The bundled default model: shipped weights, card, accuracy, and renders that beat real images."""

from __future__ import annotations

import json

import pytest
import torch

from vizneuron import load_model
from vizneuron.models.default import WEIGHTS_DIR, WEIGHTS_FILE


def test_weights_ship_small_with_a_model_card():
    assert WEIGHTS_FILE.exists() and WEIGHTS_FILE.stat().st_size < 5 * 2**20
    card = (WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    for fact in ("seed", "scripts/train_default_model.py", "top-1", "CIFAR-10"):
        assert fact in card
    model = load_model("default")
    assert model.layers["layer3"].shape[0] >= 64 and model.labels[3] == "cat"


@pytest.mark.slow
def test_default_model_accuracy_on_jpeg_test_split(cifar_test):
    images, labels = cifar_test
    model = load_model("default")
    with torch.no_grad():
        predictions = torch.cat([model(images[i : i + 1000]).argmax(1) for i in range(0, len(images), 1000)])
    accuracy = (predictions == labels).float().mean().item()
    assert accuracy >= 0.85, accuracy
    recorded = float(json.loads((WEIGHTS_DIR / "default_cifar.json").read_text())["test_top1"])
    assert abs(accuracy - recorded) < 0.002, (accuracy, recorded)
    card = (WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    assert f"{100 * recorded:.1f} %" in card


@pytest.mark.slow
def test_default_diversity_weight_keeps_samples_alive():
    """The docs' claim (docs/index.md): lucid's 1e2 diversity weight kills most samples of the bundled model,
    while the default weight 1 pushed apart on layer2 keeps every sample near full strength."""
    from vizneuron import render

    model = load_model("default")

    def run(**kw):
        return render(model, "layer3:0-7", samples=2, steps=128, seed=0, progress=False, **kw).activations

    alone = run()
    lucid = run(diversity=1e2)
    ours = run(diversity=1.0, diversity_layer="layer2")
    assert lucid.mean() < 0.35 * alone.mean() and (lucid < 0.1).sum() >= 4, lucid
    assert (ours > 0.3 * alone).all() and ours.mean() > 0.8 * alone.mean(), (ours, alone)
