"""Feature accentuation: renders that start from a real image and stay close to it."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vizneuron import RenderConfig, load_model, render
from vizneuron.cli import main
from vizneuron.optim.cache import RenderCache
from vizneuron.optim.param import make_param
from vizneuron.samples import SAMPLE_DIR


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_a_seeded_parameterisation_starts_exactly_at_the_seed(param):
    seed = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    image = make_param(param, 2, (24, 20), torch.Generator().manual_seed(0), init=seed)
    assert torch.allclose(image.image(), seed, atol=1e-5)
    assert torch.equal(image.drift(), torch.zeros(2))
    with torch.no_grad():
        image.params[0].add_(image.params[0] * 0.5)  # every parameter 1.5x: relative drift 0.25
    assert torch.allclose(image.drift(), torch.full((2,), 0.25))
    with pytest.raises(ValueError, match="seed images must be"):
        make_param(param, 2, (24, 20), torch.Generator(), init=torch.rand(3, 8, 8))


def _horse() -> Image.Image:
    return Image.open(sorted((SAMPLE_DIR / "horse").glob("*.jpg"))[0]).convert("RGB")


@pytest.mark.slow
def test_accentuation_raises_the_unit_and_stay_close_keeps_the_image_near_its_seed():
    """The bundled model's layer3:10 on a real horse: its value grows several-fold; a higher price
    for drifting keeps the result nearer the seed, and a very high one keeps it the seed."""
    model = load_model("default")
    on_seed = render(model, "layer3:10", seed_image=_horse(), steps=1, lr=1e-9, redirect_steps=0,
                     progress=False).activations[0]
    runs = {close: render(model, "layer3:10", seed_image=_horse(), stay_close=close, steps=96, progress=False)
            for close in (0.0, 4.0, 1e5)}
    gained = {close: float(r.activations[0] - on_seed) for close, r in runs.items()}
    distance = {close: float(r.seed_distance[0]) for close, r in runs.items()}
    assert gained[0.0] > gained[4.0] > 2 * abs(on_seed) and distance[0.0] > distance[4.0] > distance[1e5]
    assert distance[1e5] < 0.02 and abs(gained[1e5]) < gained[4.0] / 4
    from_noise = render(model, "layer3:10", steps=96, progress=False)
    assert from_noise.seed_distance is None


def test_seed_images_come_from_files_pil_or_tensors_and_key_the_cache(tmp_path, tiny):
    path = sorted((SAMPLE_DIR / "horse").glob("*.jpg"))[0]
    size = (16, 16)
    from_file = RenderConfig(seed_image=str(path)).normalised(tiny)
    from_pil = RenderConfig(seed_image=_horse()).normalised(tiny)
    assert from_file.seed_image.shape == (3, *size) and torch.equal(from_file.seed_image, from_pil.seed_image)
    assert from_file.key() == from_pil.key() != RenderConfig().normalised(tiny).key()
    assert from_file.key()["seed_image"].startswith("tensor:")
    other = RenderConfig(seed_image=torch.rand(3, 40, 40)).normalised(tiny)
    assert other.seed_image.shape == (3, *size) and other.key() != from_file.key()
    cache = RenderCache(tmp_path / "cache")
    first = cache.render(tiny, "conv2:1", seed_image=str(path), steps=4)
    assert torch.equal(cache.get(tiny, "conv2:1", seed_image=_horse(), steps=4).images, first.images)
    assert cache.get(tiny, "conv2:1", steps=4) is None  # from noise is another render
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="seed image .*text.png: not an image"):
        RenderConfig(seed_image=str(tmp_path / "text.png")).normalised(tiny)
    with pytest.raises(ValueError, match="seed_image must be"):
        RenderConfig(seed_image=torch.rand(8, 8)).normalised(tiny)
    with pytest.raises(ValueError, match="stay_close"):
        RenderConfig(stay_close=-1)


def test_cli_accentuates_an_image_and_says_why_it_cannot(tmp_path, capsys):
    image = sorted((SAMPLE_DIR / "horse").glob("*.jpg"))[0]
    assert main(["render", "default", "--units", "layer3:10,11", "--from", str(image), "--stay-close", "5",
                 "--steps", "8", "--quiet", "--out", str(tmp_path / "g")]) == 0
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["settings"]["from"] == str(image) and manifest["settings"]["stay_close"] == 5.0
    assert [len(u["seed_distance"]) for u in manifest["units"]] == [1, 1]
    capsys.readouterr()
    assert main(["render", "default", "--units", "layer3:10", "--from", str(tmp_path / "missing.png"),
                 "--out", str(tmp_path / "h")]) == 2
    assert "missing.png" in capsys.readouterr().err
