"""`hf:` and `open_clip:` models, built from configs with random weights (nothing downloaded): layers
listed, token layers read with the right prefix, preprocessing equal to the library's own on real
images, and renders, mining and an SAE on a token layer end to end."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vizneuron as vz
from vizneuron.errors import VizneuronError
from vizneuron.models.weights import WeightsUnavailable
from vizneuron.sae import layer_activations
from vizneuron.samples import SAMPLE_DIR
from vizneuron.sources import ModelInputs, as_source

from helpers import shared_path

pytestmark = pytest.mark.slow  # importing transformers and open_clip takes seconds
transformers = pytest.importorskip("transformers", reason="transformers is not installed (the `formats` extra)")

SIDE, PATCH, WIDTH = 64, 16, 32
TOWER = {"hidden_size": WIDTH, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "image_size": SIDE, "patch_size": PATCH}
MEAN, STD = [0.4, 0.45, 0.5], [0.25, 0.26, 0.27]


def _save(folder: Path, model, processor) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _vit(folder: Path) -> Path:
    config = transformers.ViTConfig(**TOWER, num_labels=3, id2label={0: "cat", 1: "dog", 2: "car"},
                                    label2id={"cat": 0, "dog": 1, "car": 2},
                                    architectures=["ViTForImageClassification"])
    processor = transformers.ViTImageProcessor(size={"height": SIDE, "width": SIDE}, image_mean=MEAN, image_std=STD)
    return _save(folder, transformers.ViTForImageClassification(config), processor)


def _clip(folder: Path) -> Path:
    config = transformers.CLIPConfig(vision_config=TOWER, text_config={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2})
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    return _save(folder, transformers.CLIPModel(config), processor)


def _dinov2(folder: Path) -> Path:
    config = transformers.Dinov2WithRegistersConfig(**TOWER, num_register_tokens=4)
    processor = transformers.BitImageProcessor(size={"shortest_edge": 73}, crop_size={"height": SIDE, "width": SIDE},
                                               do_center_crop=True, image_mean=MEAN, image_std=STD)
    return _save(folder, transformers.Dinov2WithRegistersModel(config), processor)


def _siglip(folder: Path) -> Path:
    config = transformers.SiglipConfig(vision_config=TOWER, text_config={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2})
    processor = transformers.SiglipImageProcessor(size={"height": SIDE, "width": SIDE})
    return _save(folder, transformers.SiglipModel(config), processor)


#: builder, and the tokens before the patch tokens (CLS, registers)
BUILDERS = {"vit": (_vit, 1), "clip": (_clip, 1), "dinov2": (_dinov2, 5), "siglip": (_siglip, 0)}


def last_block(model: vz.Model) -> str:
    """The second encoder block, whatever this transformers version calls the block list."""
    return [name for name in model.layers if re.fullmatch(r".*\.layers?\.1", name)][0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {name: build(root / name) for name, (build, _) in BUILDERS.items()}


def _real_images() -> list[Path]:
    """Real photographs of several sizes and aspect ratios (one greyscale), else the bundled sample."""
    try:
        folder = shared_path("data", "imagenet-sample")
    except pytest.skip.Exception:
        return sorted(SAMPLE_DIR.glob("*/*.jpg"))[:6]
    return sorted(folder.glob("*.JPEG"))[::167]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_layers_tokens_labels_and_weights(folders, name):
    prefix = BUILDERS[name][1]
    model = vz.load_model(f"hf:{folders[name]}")
    layer = last_block(model)
    assert model.input_size == (SIDE, SIDE) and model.inputs.fixed_size
    assert model.layer(layer).layout == "tokens" and model.layer(layer).channels == WIDTH
    assert model.inputs.tokens.prefix == prefix
    assert model.labels == (("cat", "dog", "car") if name == "vit" else None)
    # the weights are the saved ones (a vision tower read out of a whole image-text checkpoint too)
    reference = {"vit": transformers.ViTForImageClassification, "clip": transformers.CLIPVisionModel,
                 "dinov2": transformers.Dinov2WithRegistersModel,
                 "siglip": transformers.SiglipVisionModel}[name].from_pretrained(folders[name]).eval()
    pixels = torch.rand(2, 3, SIDE, SIDE)
    with torch.no_grad():
        out = reference(pixel_values=model.preprocess(pixels))
        expected = out.logits if name == "vit" else out.pooler_output
        torch.testing.assert_close(model(pixels), expected)
    random = vz.load_model(f"hf:{folders[name]}?weights=none")
    assert random.fingerprint != model.fingerprint and list(random.layers) == list(model.layers)


@pytest.mark.parametrize("name", ["vit", "clip", "dinov2"])
def test_preprocessing_equals_the_processor_on_real_images(folders, name):
    """What the network sees of a photo through vizneuron's data path equals `processor(images)`."""
    model = vz.load_model(f"hf:{folders[name]}?weights=none")
    processor = transformers.AutoImageProcessor.from_pretrained(folders[name])
    paths = _real_images()
    listing = folders[name].parent / f"{name}-images.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    inputs = ModelInputs(as_source(listing), model.inputs)
    ours = model.preprocess(torch.stack([inputs[i][1] for i in range(len(paths))]))
    theirs = processor(images=[np.asarray(Image.open(p).convert("RGB")) for p in paths], return_tensors="pt")
    torch.testing.assert_close(ours, theirs["pixel_values"].float(), rtol=1e-5, atol=1e-5)


def test_a_token_layer_renders_mines_and_trains_an_sae(folders, tmp_path):
    model = vz.load_model(f"hf:{folders['clip']}?weights=none")
    layer = last_block(model)
    result = vz.render(model, f"{layer}:3", vz.RenderConfig(steps=24), progress=False)
    assert result.images.shape[-2:] == (SIDE, SIDE) and result.history[-1, 0] > result.history[0, 0]
    index = vz.mine(model, f"{layer}:0-7", SAMPLE_DIR, k=4, index=tmp_path / "i.sqlite", progress=False, workers=0)
    top = index.examples(f"{layer}:0", k=1)[0]
    listing = tmp_path / "top.txt"
    listing.write_text(top.path + "\n")
    rows = torch.cat(list(layer_activations(model, layer, listing, workers=0)))  # one per patch token
    torch.testing.assert_close(torch.tensor(top.value), rows[:, 0].max(), rtol=1e-4, atol=1e-5)
    sae = vz.train_layer_sae(model, layer, SAMPLE_DIR, vz.SAETrainConfig(expansion=4, k=4, epochs=2),
                             progress=False, max_images=120)
    assert sae.config.d_in == WIDTH and sae.config.layer == layer
    sae_index = vz.mine(model, f"{layer}/x:0-3", SAMPLE_DIR, k=4, saes={"x": sae}, progress=False, workers=0)
    assert len(sae_index.units()) == 4


def test_offline_says_what_could_not_be_fetched(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match="Hugging Face no-such-org/no-such-model"):
        vz.load_model("hf:no-such-org/no-such-model")
    with pytest.raises(VizneuronError, match="model folder .*missing not found"):
        vz.load_model(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VizneuronError, match="not a transformers vision model"):
        vz.load_model(f"hf:{tmp_path / 'empty'}")


@pytest.fixture(scope="module")
def open_clip():
    return pytest.importorskip("open_clip", reason="open-clip-torch is not installed (the `formats` extra)")


def test_open_clip_vision_tower(open_clip, tmp_path):
    """OpenCLIP's ViT-S-32 with random weights: its layers and tokens, its own evaluation transform on
    real photos, a checkpoint file loaded as the same weights, and mining a token layer."""
    model = vz.load_model("open_clip:ViT-S-32?pretrained=none")
    layer = "transformer.resblocks.11"
    assert model.input_size == (224, 224) and model.layer(layer).layout == "tokens"
    assert model.inputs.tokens.prefix == 1
    reference, _, preprocess = open_clip.create_model_and_transforms("ViT-S-32", pretrained=None)
    paths = _real_images()
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    inputs = ModelInputs(as_source(listing), model.inputs)
    ours = model.preprocess(torch.stack([inputs[i][1] for i in range(len(paths))]))
    theirs = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    checkpoint = tmp_path / "clip.pt"
    torch.save(reference.state_dict(), checkpoint)
    loaded = vz.load_model(f"open_clip:ViT-S-32?pretrained={checkpoint}")
    with torch.no_grad():
        torch.testing.assert_close(loaded(ours.new_zeros(1, 3, 224, 224) + 0.5),
                                   reference.encode_image(model.preprocess(ours.new_zeros(1, 3, 224, 224) + 0.5)))
    index = vz.mine(model, f"{layer}:0-3", listing, k=2, progress=False, workers=0)
    assert index.summary()["mined"] == len(paths)
    with pytest.raises(VizneuronError, match="needs \\?pretrained=TAG"):
        vz.load_model("open_clip:ViT-S-32")
    with pytest.raises(VizneuronError, match="closest: ViT-S-32"):
        vz.load_model("open_clip:ViT-S-3?pretrained=none")
