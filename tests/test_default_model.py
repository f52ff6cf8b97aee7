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
