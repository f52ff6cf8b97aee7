"""Model specs and the sources they name: `ModelSpec` is the one parser of `SOURCE:NAME?OPTIONS`
strings (the library, the CLI, the app's sandbox and its upload path all use it), and `SOURCES`
the registry of loaders, as timm's `list_models` lists architectures. Every source is listed here,
its loader named as `module:function` and imported when a spec of that source is loaded: no source
depends on some other module having been imported first."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import VizneuronError
from .base import Model


@dataclass(frozen=True)
class Source:
    """A place models come from: its loader, `module:function` with function(name, options) -> Model,
    and what it takes."""

    loader: str
    summary: str
    example: str
    name_is_file: bool = False  # the NAME part is the model file itself
    runs_code: bool = False  # imports and runs the user's own code

    def load(self, name: str, options: dict[str, str]) -> Model:
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(module), function)(name, options)


#: source name -> Source; add a source by adding an entry.
SOURCES: dict[str, Source] = {
    "default": Source("vizneuron.models.default:load_default",
                      "the bundled CIFAR-10 classifier (weights inside the package)", "default"),
    "torchvision": Source("vizneuron.models.torchvision_models:load_torchvision", "torchvision's model registry",
                          "torchvision:resnet18?weights=none"),
    "timm": Source("vizneuron.models.timm_models:load_timm", "timm.create_model", "timm:vit_tiny_patch16_224"),
    "lucent": Source("vizneuron.models.lucent_models:load_lucent", "lucid's InceptionV1 (the `lucent` extra)",
                     "lucent:inceptionv1"),
    "hf": Source("vizneuron.models.hf_models:load_hf",
                 "a Hugging Face transformers vision model, CLIP/SigLIP vision towers included (the `formats` extra)",
                 "hf:facebook/dinov2-small"),
    "open_clip": Source("vizneuron.models.open_clip_models:load_open_clip",
                        "an OpenCLIP model's vision tower (the `formats` extra)",
                        "open_clip:ViT-B-32?pretrained=openai"),
    "cifar-resnet": Source("vizneuron.models.cifar_resnet:load_cifar_resnet", "CIFAR ResNet-20/32/56 checkpoints",
                           "cifar-resnet:PATH.th", name_is_file=True),
    "tflite": Source("vizneuron.models.tflite_models:load_tflite", "a TFLite image classifier, rebuilt in float torch",
                     "tflite:PATH.tflite?labels=PATH.txt", name_is_file=True),
    "python": Source("vizneuron.models.python_factory:load_python", "your own code returning an nn.Module or a Model",
                     "python:MODULE:FACTORY?size=224", runs_code=True),
    "edit": Source("vizneuron.edit:load_edit", "a model with units ablated, saved by EditedModel.save",
                   "edit:PATH.json", name_is_file=True),
}
FILE_OPTIONS = ("weights", "labels")  # options whose value may name a file
KEYWORD_WEIGHTS = ("default", "none")


@dataclass(frozen=True)
class ModelSpec:
    """`SOURCE[:NAME][?KEY=VALUE&...]`, parsed once. `str(spec)` gives the text back."""

    source: str
    name: str = ""
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str | ModelSpec) -> ModelSpec:
        if isinstance(text, ModelSpec):
            return text
        text = text.strip()
        base, _, query = text.partition("?")
        source, _, name = base.partition(":")
        if source not in SOURCES:
            close = difflib.get_close_matches(source, list(SOURCES), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise VizneuronError(f"unknown model source {source!r} in {text!r}{hint} (sources: {', '.join(SOURCES)}; "
                             "`vizneuron models` describes them)")
        options = []
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise VizneuronError(f"model option {item!r} in {text!r} must look like KEY=VALUE")
            options.append((key, value))
        return cls(source, name, tuple(options))

    @classmethod
    def for_file(cls, path: str | Path, architecture: str = "cifar-resnet") -> ModelSpec:
        """The spec that loads a model file: a `.tflite` graph, or weights for `architecture`
        (`cifar-resnet`, `default`, or a spec such as `torchvision:resnet18`)."""
        path = str(path)
        if path.endswith(".tflite"):
            return cls("tflite", path)
        arch = cls.parse(architecture)
        if SOURCES[arch.source].name_is_file:
            return cls(arch.source, path, arch.options)
        return arch.with_option("weights", path)

    def __str__(self) -> str:
        text = self.source + (f":{self.name}" if self.name else "")
        return text + ("?" + "&".join(f"{k}={v}" for k, v in self.options) if self.options else "")

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def with_option(self, key: str, value: str) -> ModelSpec:
        kept = tuple((k, v) for k, v in self.options if k != key)
        return ModelSpec(self.source, self.name, kept + ((key, value),))

    @property
    def runs_code(self) -> bool:
        return SOURCES[self.source].runs_code

    def files(self) -> list[str]:
        """The files loading this spec reads (model file, weights, labels), as written in it.
        Weights named `default`, `none` or after one of torchvision's weight enums are not files;
        anything else is, whatever its case (a server checks every one before loading)."""
        files = [self.name] if SOURCES[self.source].name_is_file and self.name else []
        for key, value in self.options:
            if key in FILE_OPTIONS and not (key == "weights" and is_named_weights(self, value)):
                files.append(value)
        return files

    def with_files(self, resolve: Callable[[str], str | Path]) -> ModelSpec:
        """The same spec with every file replaced by `resolve(file)` (e.g. a sandbox's real path)."""
        name = str(resolve(self.name)) if SOURCES[self.source].name_is_file and self.name else self.name
        options = tuple((k, str(resolve(v)) if k in FILE_OPTIONS and v in self.files() else v) for k, v in self.options)
        return ModelSpec(self.source, name, options)

    def load(self, device: str | None = None) -> Model:
        model = SOURCES[self.source].load(self.name, dict(self.options))
        return model.to(device) if device else model


def is_named_weights(spec: ModelSpec, value: str) -> bool:
    """`weights=` values that name weights rather than a file: `default`, `none`, and the real enum
    names of a torchvision model (e.g. IMAGENET1K_V2)."""
    if value in KEYWORD_WEIGHTS:
        return True
    if spec.source != "torchvision":
        return False
    import torchvision  # heavy (about 2 s to import); only torchvision: specs need it

    try:
        return value in torchvision.models.get_model_weights(spec.name).__members__
    except ValueError:  # unknown model: the loader says so
        return False


def load_model(spec: str | ModelSpec | Model, device: str | None = None) -> Model:
    """Build a frozen model from a spec such as `default`, `torchvision:resnet18?weights=none`,
    `timm:vit_tiny_patch16_224`, `lucent:inceptionv1`, `cifar-resnet:PATH` or `python:mod:factory`."""
    if isinstance(spec, Model):
        return spec.to(device) if device else spec
    return ModelSpec.parse(spec).load(device)


@dataclass(frozen=True)
class ModelPreset:
    """A model a newcomer can pick by name, without spec syntax: its spec, why one would look at it,
    and where its weights come from on first use (None: nothing is downloaded, it works offline).
    Downloaded weights are kept (`download_dir()`), so later loads work offline; offline before the
    first download, loading stops with `WeightsUnavailable`, which names the file to pass instead."""

    title: str
    spec: str
    about: str
    downloads: str | None = None


#: the app's model picker and `vizneuron models` list these, in this order
MODEL_PRESETS: tuple[ModelPreset, ...] = (
    ModelPreset("Bundled CIFAR-10 classifier", "default",
                "the small residual network inside the package (32 px, 10 classes)"),
    ModelPreset("InceptionV1 (lucid / lucent)", "lucent:inceptionv1",
                "the network of the Distill circuits articles and the cat/car neuron mixed4e:55",
                "lucent's weights file (inception5h.pth) from GitHub"),
    ModelPreset("ResNet-50 (torchvision, ImageNet)", "torchvision:resnet50?weights=IMAGENET1K_V2",
                "the most studied ImageNet CNN", "torchvision's IMAGENET1K_V2 weights from download.pytorch.org"),
    ModelPreset("MobileNet-v3 large (torchvision, ImageNet)", "torchvision:mobilenet_v3_large?weights=IMAGENET1K_V2",
                "a small ImageNet CNN: renders and mining are fast on a CPU",
                "torchvision's IMAGENET1K_V2 weights from download.pytorch.org"),
    ModelPreset("ViT-B/16 (timm, ImageNet)", "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k",
                "a vision transformer: token layers, patch tokens averaged per channel",
                "timm's weights from the Hugging Face Hub"),
)


def list_sources() -> list[tuple[str, str, str]]:
    """(source, what it is, an example spec) for every model source."""
    return [(name, source.summary, source.example) for name, source in SOURCES.items()]
