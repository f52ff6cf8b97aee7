"""`Model`: a frozen network plus what the rest of vizneuron needs to know about it.

Every source (bundled default, torchvision, timm, lucent, CIFAR ResNets, user code) returns one of
these, so the optimiser, miner and app never care where a network came from.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import VizneuronError
from ..imageio import to_model_input

#: The pseudo-layer naming the model's final output (used by `logit:K` units).
OUTPUT_LAYER = "logits"


class LayerError(VizneuronError):
    """A layer name that does not resolve, with the closest names in the message."""


@dataclass(frozen=True)
class LayerInfo:
    """One hookable layer: its dotted path, output shape (without batch) and call order."""

    name: str
    shape: tuple[int, ...] | None  # None when the output is not a tensor
    order: int  # position of the layer's last call in a forward pass
    calls: int  # how many times the module runs in one forward pass

    @property
    def layout(self) -> str:
        """How units read this layer: spatial (C, H, W), tokens (T, D) or a plain vector (C,)."""
        if self.shape is None:
            return "-"
        return {3: "spatial", 2: "tokens", 1: "vector"}.get(len(self.shape), "other")

    @property
    def summary(self) -> str:
        """`layer3 (128 channels, 4x4)`: what a layer picker shows."""
        grid = f", {self.shape[1]}x{self.shape[2]}" if self.layout == "spatial" else ""
        return f"{self.name} ({self.channels} channels{grid})"

    @property
    def channels(self) -> int | None:
        """Channel count: dim 1 of NCHW / (N, C) outputs, the last dim of token outputs (N, T, D)."""
        if self.shape is None or len(self.shape) == 0:
            return None
        return self.shape[-1] if len(self.shape) == 2 else self.shape[0]


@dataclass(frozen=True)
class TokenLayout:
    """How a token layer (N, T, D) is read: `prefix` tokens (CLS, registers) come before the
    patch tokens; `cls` reads the CLS token instead of averaging over patches. The one place
    these flags live: units, objectives and SAE rows all take it from the model's `InputConfig`."""

    prefix: int = 0
    cls: bool = False

    def channels_first(self, act: torch.Tensor) -> torch.Tensor:
        """View any layer output as (N, C, ...). Token outputs (N, T, D) become (N, D, T) over the
        patch tokens (prefix tokens left out), or (N, D) for the CLS token alone."""
        if act.ndim != 3:
            return act
        return act[:, 0] if self.cls else act[:, self.prefix:].transpose(1, 2)

    def rows(self, act: torch.Tensor, pool: bool = False) -> torch.Tensor:
        """A layer output as rows of width C (what SAEs read): one per position, or per image."""
        return positions_as_rows(self.channels_first(act), pool)

    def from_rows(self, rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The inverse of `rows` (per position), for splicing rows back into the layer output `like`;
        prefix tokens are kept as they were."""
        if like.ndim == 2:
            return rows
        if like.ndim == 3:  # tokens (N, T, D)
            n, t, d = like.shape
            if self.cls:
                return torch.cat([rows[:, None], like[:, 1:]], 1)
            return torch.cat([like[:, : self.prefix], rows.reshape(n, t - self.prefix, d)], 1)
        n, c = like.shape[:2]
        return rows.reshape(n, *like.shape[2:], c).movedim(-1, 1)


PLAIN = TokenLayout()


def prefix_tokens(module: nn.Module, size: tuple[int, int], patch: int | tuple[int, int] | None) -> int:
    """Tokens before the patch tokens (CLS, registers) of a ViT built elsewhere: the encoder's
    sequence length (the most common among token-shaped outputs of one forward) minus the patch grid."""
    if patch is None:
        return 0
    side = patch if isinstance(patch, int) else patch[0]
    lengths: Counter[int] = Counter()

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 3:
            lengths[output.shape[1]] += 1

    handles = [m.register_forward_hook(hook) for m in module.modules() if m is not module]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, *size))
    finally:
        for handle in handles:
            handle.remove()
    tokens = lengths.most_common(1)[0][0] if lengths else 0
    return max(tokens - (size[0] // side) * (size[1] // side), 0)


def positions_as_rows(view: torch.Tensor, pool: bool = False) -> torch.Tensor:
    """A channels-first view (N, C, ...) as rows of width C: one per position, or per image (mean)."""
    if view.ndim == 2:
        return view
    flat = view.flatten(2)  # (N, C, S)
    return flat.mean(2) if pool else flat.transpose(1, 2).reshape(-1, flat.shape[1])


@dataclass(frozen=True)
class InputConfig:
    """What a model expects of an image and how its outputs are laid out, in one value (as timm's
    pretrained config): input size, normalisation, the centre crop real images get, whether it only
    runs at its own size (ViTs, TFLite graphs), its token layout and its class labels."""

    size: tuple[int, int]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    crop_fraction: float = 1.0  # centre crop of the short side used on real images before resizing
    fixed_size: bool = False  # only runs at `size`
    tokens: TokenLayout = PLAIN
    labels: tuple[str, ...] | None = None
    #: the model's own image transform, (H, W, 3) uint8 -> (3, *size) in [0, 1], in place of the
    #: centre crop and resize (a library's processor, e.g. Hugging Face's, up to normalisation)
    transform: Callable[[np.ndarray], torch.Tensor] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:  # accept lists and ints from loaders, store tuples
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))

    def preprocessing(self) -> dict:
        """Everything that decides what the network sees of an image (recorded in example indexes)."""
        def as_stored(values) -> list:  # as indexes hold them
            return torch.tensor(values, dtype=torch.float32).tolist()

        kept = {"input_size": list(self.size), "mean": [round(v, 6) for v in as_stored(self.mean)],
                "std": [round(v, 6) for v in as_stored(self.std)], "crop_fraction": self.crop_fraction}
        return kept if self.transform is None else {**kept, "transform": str(self.transform)}

    def to_input(self, rgb: np.ndarray) -> torch.Tensor:
        """A decoded image (H, W, 3) uint8 as the model takes it, (3, *size) in [0, 1]."""
        if self.transform is not None:
            return self.transform(rgb)
        return to_model_input(rgb, self.size, self.crop_fraction)


def _label_key(text: str) -> str:
    """How class names are compared: case-insensitive, `_` as a space (folder names like `sports_car`)."""
    return text.lower().replace("_", " ").strip()


def weights_digest(module: nn.Module) -> str:
    """SHA-1 over a module's state dict (names and values)."""
    digest = hashlib.sha1()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Model:
    """A frozen, eval-mode network taking RGB images in [0, 1] shaped (N, 3, H, W)."""

    def __init__(self, module: nn.Module, *, name: str, inputs: InputConfig) -> None:
        self.module = module.eval().requires_grad_(False)
        self.name = name
        self.inputs = inputs
        self._mean = torch.tensor(inputs.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(inputs.std, dtype=torch.float32).view(1, 3, 1, 1)
        self._layers: dict[str, LayerInfo] | None = None
        self._fingerprint: str | None = None
        self._classes: dict[str, int] | None = None  # label and each synonym -> class index

    @property
    def input_size(self) -> tuple[int, int]:
        return self.inputs.size

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.inputs.labels

    def class_index(self, label: str | int | None) -> int | None:
        """The model's class index for a label: an index (as int or digits), a class name or one of
        its synonyms (case-insensitive; `sports_car` finds "sports car"); None when unknown."""
        if label is None:
            return None
        count = len(self.labels) if self.labels else self.layer(OUTPUT_LAYER).channels
        text = str(label).strip()
        if text.isdigit():
            return int(text) if int(text) < (count or 0) else None
        if self._classes is None:  # built once: datasets look up a label per image
            self._classes = {}
            for i, known in enumerate(self.labels or ()):
                for name in (known, *known.split(",")):
                    self._classes.setdefault(_label_key(name), i)
        return self._classes.get(_label_key(text))

    @property
    def fingerprint(self) -> str:
        """SHA-1 of the weights: tells two models with the same name apart (indexes, render caches)."""
        if self._fingerprint is None:  # weights are frozen, so computed once
            self._fingerprint = weights_digest(self.module)
        return self._fingerprint

    # -- running -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for t in self.module.parameters():
            return t.device
        for t in self.module.buffers():
            return t.device
        return self._mean.device

    @property
    def native_bfloat16(self) -> bool:
        """Whether the model's device multiplies bfloat16 in hardware (a CUDA card that supports it; a
        CPU with AVX512-BF16 or AMX), where bfloat16 autocast roughly halves a render's time."""
        device = self.device
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        if device.type == "cpu":
            return any(getattr(torch.cpu, check, lambda: False)()
                       for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return False

    @property
    def memory_bytes(self) -> int:
        """Memory of the model's device: the card's, or the machine's RAM."""
        device = self.device
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows): assume a small machine
            return 8 * 2**30

    def activation_bytes(self, size: tuple[int, int] | None = None) -> int:
        """Bytes of float32 output that one image leaves in a whole forward pass at `size` (default the
        input size), summed over the leaf modules: what a backward pass keeps per image."""
        modules = dict(self.module.named_modules())
        leaf_elements = sum(math.prod(info.shape) for name, info in self.layers.items()
                            if info.shape is not None and not any(modules.get(name, self.module).children()))
        height, width = size or self.input_size
        return int(4 * leaf_elements * height * width / (self.input_size[0] * self.input_size[1]))

    def to(self, device: str | torch.device) -> Model:
        self.module.to(device)
        self._mean = self._mean.to(device)
        self._std = self._std.to(device)
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] RGB to what the network was trained on."""
        return (images - self._mean.to(images.device)) / self._std.to(images.device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise VizneuronError(f"{self.name} expects RGB images shaped (N, 3, H, W), got {tuple(images.shape)}")
        if self.inputs.fixed_size and tuple(images.shape[2:]) != self.input_size:
            raise VizneuronError(f"{self.name} only runs at {self.input_size[0]}x{self.input_size[1]}; got "
                             f"{images.shape[2]}x{images.shape[3]} (resize first)")
        return self.module(self.preprocess(images))

    # -- layers ------------------------------------------------------------------------------
    @property
    def layers(self) -> dict[str, LayerInfo]:
        """Every hookable layer in execution order, measured by one forward at the native size."""
        if self._layers is None:
            self._layers = self._probe_layers()
        return self._layers

    def _probe_layers(self) -> dict[str, LayerInfo]:
        seen: dict[str, list] = {}
        tick = [0]

        def make_hook(name: str):
            def hook(_module, _inputs, output):
                tick[0] += 1
                shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
                calls = seen[name][2] + 1 if name in seen else 1
                seen[name] = [shape, tick[0], calls]

            return hook

        handles = [
            m.register_forward_hook(make_hook(n if n else OUTPUT_LAYER))
            for n, m in self.module.named_modules()
        ]
        try:
            with torch.no_grad():
                self(torch.full((1, 3, *self.input_size), 0.5, device=self.device))
        finally:
            for h in handles:
                h.remove()
        return {
            name: LayerInfo(name, shape, order, calls)
            for name, (shape, order, calls) in sorted(seen.items(), key=lambda kv: kv[1][1])
        }

    def resolve_layer(self, name: str) -> str:
        """Dotted module path for `name`; lucent-style `layer3_1` resolves to `layer3.1`."""
        table = self.layers
        for candidate in (name, name.replace("_", "."), name.replace(".", "_")):
            if candidate in table:
                return candidate
        close = difflib.get_close_matches(name, list(table), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise LayerError(
            f"unknown layer {name!r} in {self.name}{hint} (run `vizneuron layers {self.name}` for all)"
        )

    def layer(self, name: str) -> LayerInfo:
        """The `LayerInfo` of a layer, checking that its output is a tensor."""
        info = self.layers[self.resolve_layer(name)]
        if info.shape is None:
            raise LayerError(f"layer {info.name!r} of {self.name} does not output a tensor; pick a sub-layer")
        return info

    @property
    def default_layer(self) -> str:
        """The deepest layer that still has a spatial grid (where renders read best): the layer
        views open on (`vizneuron layers` marks it)."""
        names = [n for n, info in self.layers.items() if info.channels]
        spatial = [n for n in names if self.layers[n].layout == "spatial" and self.layers[n].shape[1] > 1]
        return (spatial or names)[-1]

    def module_for(self, layer: str) -> nn.Module:
        return self.module if layer == OUTPUT_LAYER else self.module.get_submodule(layer)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, input_size={self.input_size}, layers={len(self.layers)})"
