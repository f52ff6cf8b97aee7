"""`open_clip:ARCH?pretrained=TAG|none|PATH[&tokens=patches|cls]`: the vision tower of an OpenCLIP
model, with OpenCLIP's own evaluation transform (resize, centre crop) and normalisation.

`pretrained=none` builds the architecture with random weights; a TAG (`openai`, `laion2b_s34b_b79k`,
...) downloads on first use into vizneuron's download folder; a PATH loads a checkpoint with
`weights_only=True` (OpenCLIP's own loader). The layers are OpenCLIP's module paths
(`transformer.resblocks.8`); the output is the image embedding."""

from __future__ import annotations

import difflib
import hashlib

import numpy as np
import torch
from PIL import Image

from ..errors import MissingDependency, VizneuronError
from .base import InputConfig, Model, TokenLayout, prefix_tokens
from .weights import download_dir, download_errors


class TorchvisionTransform:
    """A torchvision evaluation transform up to its Normalize: (H, W, 3) uint8 -> (3, H', W') in [0, 1]."""

    def __init__(self, steps: list) -> None:
        self.steps = steps
        self.name = "torchvision:" + hashlib.sha1(repr(steps).encode()).hexdigest()[:12]

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        image = Image.fromarray(np.ascontiguousarray(rgb))
        for step in self.steps:
            image = step(image)
        return image.float().clamp_(0, 1)

    def __repr__(self) -> str:  # what indexes record of it
        return self.name


def load_open_clip(name: str, options: dict[str, str]) -> Model:
    try:
        import open_clip  # optional: the `formats` extra
        from torchvision.transforms import Normalize
    except ImportError:
        raise MissingDependency("open_clip: models need open-clip-torch: pip install 'vizneuron[formats]'") from None
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5)
        raise VizneuronError(f"unknown OpenCLIP architecture {name!r}; closest: {', '.join(close)}")
    tag = options.get("pretrained")
    if tag is None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise VizneuronError(f"open_clip:{name} needs ?pretrained=TAG (one of: {', '.join(tags) or 'none known'}), "
                             "a checkpoint PATH, or pretrained=none for random weights")
    hint = f"open_clip:{name}?pretrained=/path/to/checkpoint.bin"
    with download_errors(f"OpenCLIP {name} ({tag})", hint):
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None if tag == "none" else tag, cache_dir=str(download_dir() / "open_clip"))
    steps = list(preprocess.transforms)
    normalize = next(step for step in steps if isinstance(step, Normalize))
    transform = TorchvisionTransform([step for step in steps if step is not normalize])
    visual = model.visual.float().eval()
    size = tuple(transform(np.full((256, 320, 3), 128, np.uint8)).shape[1:])
    patch = getattr(visual, "patch_size", None)
    return Model(visual, name=f"open_clip:{name}", inputs=InputConfig(
        size, tuple(normalize.mean), tuple(normalize.std), fixed_size=True,
        tokens=TokenLayout(prefix_tokens(visual, size, patch), options.get("tokens", "patches") == "cls"),
        transform=transform))
