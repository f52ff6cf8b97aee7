"""`hf:MODEL_ID_OR_FOLDER[?weights=default|none&tokens=patches|cls]`: a Hugging Face `transformers`
vision model: an image classifier (`AutoModelForImageClassification`: ViT, ConvNeXt, ...), a backbone
(`AutoModel`: DINOv2, ...) or the vision tower of an image-text model (CLIP, SigLIP).

Images go through the model's own image processor (resize, crop, rescale), and the model normalises
with the processor's mean and std, so what the network sees is what `processor(images)` gives.
Layers are the module paths of the transformers model (`vision_model.encoder.layers.8` for CLIP,
`encoder.layer.8` for DINOv2); the output is the logits, else the pooled output. `weights=none`
builds the architecture from its config with random weights. Offline, a model in the local Hugging
Face cache or a folder `save_pretrained` wrote loads without the network."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import MissingDependency, VizneuronError
from ..files import readable
from .base import InputConfig, Model, TokenLayout, prefix_tokens
from .weights import download_errors


class ProcessorTransform:
    """A transformers image processor up to normalisation: (H, W, 3) uint8 -> (3, H', W') in [0, 1]
    (the model divides by the processor's std after subtracting its mean, as the processor would)."""

    def __init__(self, processor) -> None:
        self.processor = processor
        settings = json.dumps(processor.to_dict(), sort_keys=True, default=str)
        self.name = f"{type(processor).__name__}:{hashlib.sha1(settings.encode()).hexdigest()[:12]}"

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        pixels = self.processor(images=np.ascontiguousarray(rgb), do_normalize=False, return_tensors="pt")
        return pixels["pixel_values"][0].float().clamp_(0, 1)

    def __repr__(self) -> str:  # what indexes record of it
        return self.name


class VisionOutput(nn.Module):
    """A transformers model as a module from pixel values to one tensor: the logits, else the pooled
    output, else the last hidden state. The model's children are this module's own, so layer
    names are the model's own paths."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if any(True for _ in model.parameters(recurse=False)) or any(True for _ in model.buffers(recurse=False)):
            raise VizneuronError(f"{type(model).__name__} keeps weights outside its submodules; not supported")
        for name, child in model.named_children():
            self.add_module(name, child)
        self._model = [model.eval()]  # a list: not registered a second time

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self._model[0](pixel_values=pixels)
        for key in ("logits", "pooler_output", "last_hidden_state"):
            value = getattr(out, key, None)
            if isinstance(value, torch.Tensor):
                return value
        raise VizneuronError(f"{type(self._model[0]).__name__} returned no logits, pooled output or hidden state")


def load_hf(name: str, options: dict[str, str]) -> Model:
    try:
        import transformers  # optional: the `formats` extra
    except ImportError:
        raise MissingDependency("hf: models need transformers: pip install 'vizneuron[formats]'") from None
    if not name:
        raise VizneuronError("hf: needs a model id or folder, e.g. hf:facebook/dinov2-small")
    choice = options.get("weights", "default")
    if choice not in ("default", "none"):
        raise VizneuronError(f"hf:{name}: weights must be default or none, not {choice!r} (a local model is "
                             "given as its folder: hf:/path/to/folder)")
    if name.startswith(("/", ".", "~")) or Path(name).expanduser().exists():  # a local folder, not a Hub id
        folder = readable(name, "model folder")
        if not folder.is_dir():
            raise VizneuronError(f"hf: model folder {folder} not found (a folder save_pretrained wrote, or a Hub id)")
        name = str(folder)
    hint = "hf:/path/to/a/folder/that/save_pretrained/wrote (or run once online to fill the cache)"
    with download_errors(f"Hugging Face {name}", hint):
        try:
            config = transformers.AutoConfig.from_pretrained(name)
            processor = transformers.AutoImageProcessor.from_pretrained(name)
        except (OSError, ValueError) as err:
            if _offline(err):
                raise
            raise VizneuronError(f"hf:{name}: not a transformers vision model with an image processor "
                                 f"({err})") from None
        vision_config = getattr(config, "vision_config", None)
        if vision_config is not None:  # an image-text model: its vision tower
            model_class = transformers.AutoModel._model_mapping[type(vision_config)]
            built_from = vision_config
        else:
            classifies = any(a.endswith("ForImageClassification") for a in config.architectures or ())
            model_class = (transformers.AutoModelForImageClassification if classifies else transformers.AutoModel)
            built_from = config
        if choice == "none":
            module = (model_class.from_config(built_from) if hasattr(model_class, "from_config")
                      else model_class(built_from))
        else:
            module = model_class.from_pretrained(name)
    module = module.float().eval()
    transform = ProcessorTransform(processor)
    probe = transform(np.full((256, 320, 3), 128, np.uint8))
    size = tuple(probe.shape[1:])
    wrapped = VisionOutput(module)
    patch = getattr(built_from, "patch_size", None)
    labels = _labels(config) if vision_config is None else None
    return Model(wrapped, name=f"hf:{name}", inputs=InputConfig(
        size, processor.image_mean, processor.image_std, crop_fraction=_crop_fraction(processor),
        fixed_size=patch is not None, tokens=TokenLayout(prefix_tokens(wrapped, size, patch),
                                                         options.get("tokens", "patches") == "cls"),
        labels=labels, transform=transform))


def _offline(err: BaseException) -> bool:
    """Whether loading failed for want of the network (not for a folder that is no model): the Hub
    client's own errors, or transformers' OSError saying it could not connect."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectionError", "HfHubHTTPError"}:
        return True
    text = str(err).lower()
    return isinstance(err, OSError) and any(word in text for word in ("offline", "couldn't connect", "connection"))


def _labels(config) -> list[str] | None:
    """Class names from `id2label`, unless they are transformers' placeholders (LABEL_0, ...)."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def _crop_fraction(processor) -> float:
    """The crop's share of the resized short side, for the record (the processor does the work)."""
    size, crop = getattr(processor, "size", None) or {}, getattr(processor, "crop_size", None) or {}
    if getattr(processor, "do_center_crop", False) and size.get("shortest_edge") and crop.get("height"):
        return float(crop["height"]) / float(size["shortest_edge"])
    return 1.0
