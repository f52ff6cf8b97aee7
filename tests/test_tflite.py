"""TFLite classifiers rebuilt in torch, checked against Google's LiteRT reference outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vizneuron import load_model, parse_unit
from vizneuron.models.tflite_models import TFLiteError

from helpers import shared_path

MODELS = ["mobilenet_v2_1.0_224_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.25_128_quant"]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_agrees_with_litert_reference(name):
    model = load_model(f"tflite:{shared_path('models', 'coral', name + '.tflite')}")
    reference = np.load(shared_path("models", "coral", "reference", name + ".npz"))
    images = torch.from_numpy(reference["inputs"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        logits = model(images)
    ours = logits.argmax(1).numpy()
    theirs = reference["outputs"][:, 1:].argmax(1)  # reference index 0 is "background"
    assert (ours == theirs).mean() >= 0.95
    probabilities = torch.softmax(logits, 1).numpy()
    assert np.abs(probabilities - reference["outputs"][:, 1:]).max() < 0.1
    rho = _mean_rank_correlation(logits, reference["outputs"][:, 1:])
    print(f"{name}: top-1 agreement {(ours == theirs).mean():.1%}, mean Spearman rho {rho:.4f}")
    assert rho > 0.85


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties sharing their mean rank (as Spearman's rho needs)."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, groups = np.unique(x, return_inverse=True)
    return (np.bincount(groups, ranks) / np.bincount(groups))[groups]


def _mean_rank_correlation(ours: torch.Tensor, reference: np.ndarray) -> float:
    """Spearman's rho between our scores and LiteRT's over the classes LiteRT gives a non-zero
    (quantised) score, averaged over images: do we order the plausible classes the same way?"""
    rhos = []
    for mine, theirs in zip(ours.numpy(), reference):
        support = theirs > 0
        if support.sum() >= 3:
            a, b = _average_ranks(mine[support]), _average_ranks(theirs[support])
            rhos.append(np.corrcoef(a, b)[0, 1])
    return float(np.mean(rhos))


def test_layers_labels_and_units():
    model = load_model(f"tflite:{shared_path('models', 'coral', 'mobilenet_v2_1.0_224_quant.tflite')}")
    assert model.input_size == (224, 224) and len(model.labels) == 1000
    assert parse_unit("logit:tabby", model).index == 281  # ILSVRC index, background dropped
    assert model.layers["expanded_conv_1_depthwise"].shape == (96, 56, 56)
    assert parse_unit("expanded_conv_1.depthwise:5", model).layer == "expanded_conv_1_depthwise"
    assert torch.allclose(model.preprocess(torch.full((1, 3, 1, 1), 1.0)), torch.full((1, 3, 1, 1), 127 / 128))


def test_unsupported_op_lists_what_was_found(tmp_path, monkeypatch):
    from vizneuron.models import tflite_models

    monkeypatch.setattr(tflite_models, "SUPPORTED_OPS", tflite_models.SUPPORTED_OPS - {"ADD"})
    with pytest.raises(TFLiteError, match=r"does not support: ADD \(ops found: ADD, AVERAGE_POOL_2D, CONV_2D"):
        load_model(f"tflite:{shared_path('models', 'coral', 'mobilenet_v2_1.0_224_quant.tflite')}")


@pytest.mark.slow
def test_mobilenet_v2_top1_on_imagenet_sample():
    from vizneuron.imageio import image_files, load_images

    model = load_model(f"tflite:{shared_path('models', 'coral', 'mobilenet_v2_1.0_224_quant.tflite')}")
    files = image_files(shared_path("data", "imagenet-sample"))
    assert len(files) == 1000  # sorted order = ILSVRC class index
    correct = 0
    for start in range(0, len(files), 100):
        batch = load_images(files[start : start + 100], model.input_size, model.inputs.crop_fraction)
        assert not batch.skipped
        with torch.no_grad():
            correct += (model(batch.images).argmax(1) == torch.arange(start, start + 100)).sum().item()
    assert correct / len(files) >= 0.80, correct


SCHEMES = {"float": 1e-5, "float16": 1e-5, "uint8": 0.05, "int8": 0.05}  # max |probability difference|


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_storage_scheme_matches_litert(scheme, tmp_path):
    """float, fp16-weight, uint8 per-tensor and int8 per-channel files, checked against LiteRT itself."""
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (the dev extra)")
    from tflite_writer import calibrated_classifier

    images = np.random.default_rng(1).uniform(-1, 1, (64, 16, 16, 3)).astype(np.float32)
    file = tmp_path / f"small_{scheme}.tflite"
    file.write_bytes(calibrated_classifier(scheme, images[:16]))
    interpreter = litert.Interpreter(model_path=str(file))
    interpreter.allocate_tensors()
    (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
    reference = []
    for image in images[16:]:
        if entry["dtype"] == np.uint8:
            image = np.clip(np.round(image * 128 + 128), 0, 255).astype(np.uint8)
        interpreter.set_tensor(entry["index"], image[None])
        interpreter.invoke()
        out = interpreter.get_tensor(exit_["index"]).astype(np.float32)[0]
        scale, zero = exit_["quantization"]
        reference.append((out - zero) * scale if exit_["dtype"] == np.uint8 else out)
    reference = np.stack(reference)

    model = load_model(f"tflite:{file}")
    assert "block1_depthwise" in model.layers and not any("quantize" in name.lower() for name in model.layers)
    assert model.layers["block1_depthwise"].shape == (8, 8, 8) and model.layers["block3_concat"].shape == (16, 3, 3)
    with pytest.raises(ValueError, match="only runs at 16x16"):
        model(torch.rand(1, 3, 20, 20))
    with torch.no_grad():  # the model's own preprocessing maps [0, 1] pixels to the file's input range
        probabilities = torch.softmax(model(torch.from_numpy(images[16:]).permute(0, 3, 1, 2) / 2 + 0.5), 1)
    probabilities = probabilities.numpy()
    assert np.abs(probabilities - reference).max() < SCHEMES[scheme]
    assert (probabilities.argmax(1) == reference.argmax(1)).mean() >= 0.95
