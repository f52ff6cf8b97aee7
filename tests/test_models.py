"""Model sources: specs, layer tables, safe weight loading and offline errors."""

from __future__ import annotations

import importlib.util
import urllib.error

import pytest
import torch

from vizneuron import load_model
from vizneuron.models import MODEL_PRESETS, ModelSpec, WeightsUnavailable
from vizneuron.models.weights import load_state_dict

from helpers import shared_path


def test_torchvision_random_init_has_labels_size_and_layers():
    model = load_model("torchvision:resnet18?weights=none")
    assert model.input_size == (224, 224) and len(model.labels) == 1000 and model.labels[281] == "tabby"
    assert model.layers["layer4"].shape == (512, 7, 7)
    assert model.layers["layer4.1.relu"].calls == 2  # the reused ReLU is flagged
    assert not any(p.requires_grad for p in model.module.parameters()) and not model.module.training
    out = model(torch.rand(2, 3, 224, 224))
    assert out.shape == (2, 1000)


def test_timm_random_init():
    model = load_model("timm:resnet18?pretrained=false")
    assert model.layers["layer4"].channels == 512 and model.input_size == (224, 224)
    assert model.labels[281] == "tabby"


def test_python_factory_spec():
    model = load_model("python:helpers:Tiny?size=16&mean=0.5,0.5,0.5&std=0.25,0.25,0.25")
    assert model.input_size == (16, 16)
    assert torch.allclose(model.preprocess(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))
    with pytest.raises(ValueError, match="has no Nope"):
        load_model("python:helpers:Nope")


def test_offline_download_says_what_failed_and_how_to_pass_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailable, match=r"torchvision resnet18.*weights=/path/to/resnet18.pth"):
        load_model("torchvision:resnet18")
    if importlib.util.find_spec("lucent") is not None:
        with pytest.raises(WeightsUnavailable, match=r"lucent inceptionv1.*weights=/path/to/inception5h.pth"):
            load_model("lucent:inceptionv1")


def test_local_weights_file_and_refusal_to_unpickle(tmp_path):
    reference = load_model("torchvision:resnet18?weights=none").module
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    model = load_model(f"torchvision:resnet18?weights={path}")
    assert torch.equal(model.module.fc.weight, reference.fc.weight)

    class Payload:
        def __reduce__(self):
            return (print, ("this would run arbitrary code",))

    evil = tmp_path / "evil.pth"
    torch.save({"w": Payload()}, evil)
    with pytest.raises(WeightsUnavailable, match="weights_only=True"):
        load_state_dict(evil)
    with pytest.raises(WeightsUnavailable, match="not found"):
        load_state_dict(tmp_path / "missing.safetensors")


def test_every_named_model_is_a_real_architecture_with_its_inputs():
    """The presets' specs name models their libraries build (weights left out: no download), and
    each opens on a layer with a spatial grid or tokens."""
    pytest.importorskip("lucent")
    for preset in MODEL_PRESETS:
        spec = ModelSpec.parse(preset.spec)
        model = load_model(spec.with_option("weights", "none"))
        assert model.layers[model.default_layer].channels, preset
        if spec.source in ("torchvision", "timm"):
            assert model.input_size == (224, 224) and len(model.labels) == 1000, preset


def test_bad_specs():
    with pytest.raises(ValueError, match="unknown model source 'tf'.*default, torchvision"):
        load_model("tf:whatever")
    with pytest.raises(ValueError, match="closest: resnet18"):
        load_model("torchvision:resnet81?weights=none")


def test_lucent_inceptionv1_random_init():
    pytest.importorskip("lucent", reason="needs the 'lucent' extra (torch-lucent)")
    model = load_model("lucent:inceptionv1?weights=none")
    assert model.layers["mixed4e"].shape == (832, 14, 14)
    assert model.resolve_layer("mixed4e") == "mixed4e"


@pytest.mark.slow
@pytest.mark.parametrize("depth, blocks, floor", [(20, 3, 0.78), (56, 9, 0.80)])
def test_cifar_resnet_checkpoints(cifar_test, depth, blocks, floor):
    path = next(shared_path("models", "cifar-resnet").glob(f"resnet{depth}-*.th"))
    model = load_model(f"cifar-resnet:{path}")
    assert len(model.module.layer1) == blocks
    images, labels = cifar_test
    with torch.no_grad():
        predictions = torch.cat([model(images[i : i + 1000]).argmax(1) for i in range(0, 10000, 1000)])
    accuracy = (predictions == labels).float().mean().item()
    assert accuracy > floor, accuracy  # published: ~81.0 / 83.2 % on this JPEG split
