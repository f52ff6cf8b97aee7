"""Where models come from: `load_model(spec)` -> `Model`, one small loader per source."""

from __future__ import annotations

from typing import Callable
from urllib.parse import parse_qsl

from .base import OUTPUT_LAYER, LayerError, LayerInfo, Model
from .cifar_resnet import load_cifar_resnet
from .default import load_default
from .lucent_models import load_lucent
from .python_factory import load_python
from .tflite_models import load_tflite
from .timm_models import load_timm
from .torchvision_models import load_torchvision
from .weights import WeightsUnavailable

#: source name -> loader(name, options) -> Model; add a source by adding an entry.
SOURCES: dict[str, Callable[[str, dict[str, str]], Model]] = {
    "default": load_default,
    "torchvision": load_torchvision,
    "timm": load_timm,
    "lucent": load_lucent,
    "cifar-resnet": load_cifar_resnet,
    "python": load_python,
    "tflite": load_tflite,
}


#: sources whose name is a file (the model itself), and sources that run the user's own code.
FILE_SOURCES = ("cifar-resnet", "tflite")
CODE_SOURCES = ("python",)
_FILE_OPTIONS = ("weights", "labels")


def spec_files(spec: str) -> list[str]:
    """The files a spec makes `load_model` read (model file, weights, labels), as written in it;
    weights named like `IMAGENET1K_V2`, `default` or `none` are not files. Lets a server check
    a spec typed by a user before loading it."""
    base, _, query = spec.partition("?")
    source, _, name = base.partition(":")
    files = [name] if source in FILE_SOURCES and name else []
    for key, value in parse_qsl(query):
        if key in _FILE_OPTIONS and value not in ("default", "none") and not value.isupper():
            files.append(value)
    return files


def load_model(spec: "str | Model", device: str | None = None) -> Model:
    """Build a frozen model from a spec such as `default`, `torchvision:resnet18?weights=none`,
    `timm:vit_tiny_patch16_224`, `lucent:inceptionv1`, `cifar-resnet:PATH` or `python:mod:factory`."""
    if isinstance(spec, Model):
        return spec.to(device) if device else spec
    base, _, query = spec.partition("?")
    source, _, name = base.partition(":")
    if source not in SOURCES:
        raise ValueError(f"unknown model source {source!r} in {spec!r}; sources: {', '.join(SOURCES)}")
    model = SOURCES[source](name, dict(parse_qsl(query)))
    return model.to(device) if device else model


__all__ = ["Model", "LayerInfo", "LayerError", "OUTPUT_LAYER", "WeightsUnavailable", "SOURCES", "FILE_SOURCES", "CODE_SOURCES", "load_model",
           "spec_files"]
