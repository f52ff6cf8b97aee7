"""`Model`: a frozen network plus what the rest of vizneuron needs to know about it.

Every source (bundled default, torchvision, timm, lucent, CIFAR ResNets, user code) returns one of
these, so the optimiser, miner and app never care where a network came from.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

#: The pseudo-layer naming the model's final output (used by `logit:K` units).
OUTPUT_LAYER = "logits"


class LayerError(ValueError):
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
    def channels(self) -> int | None:
        """Channel count: dim 1 of NCHW / (N, C) outputs, the last dim of token outputs (N, T, D)."""
        if self.shape is None or len(self.shape) == 0:
            return None
        return self.shape[-1] if len(self.shape) == 2 else self.shape[0]


def channels_first(act: torch.Tensor, prefix_tokens: int = 0, cls_token: bool = False) -> torch.Tensor:
    """View any layer output as (N, C, ...). Token outputs (N, T, D) become (N, D, T) over the patch
    tokens (the first `prefix_tokens`, e.g. CLS, left out), or (N, D) for the CLS token alone."""
    if act.ndim != 3:
        return act
    return act[:, 0] if cls_token else act[:, prefix_tokens:].transpose(1, 2)


def positions_as_rows(view: torch.Tensor, pool: bool = False) -> torch.Tensor:
    """A channels-first view (N, C, ...) as rows of width C: one per position, or per image (mean)."""
    if view.ndim == 2:
        return view
    flat = view.flatten(2)  # (N, C, S)
    return flat.mean(2) if pool else flat.transpose(1, 2).reshape(-1, flat.shape[1])


def weights_digest(module: nn.Module) -> str:
    """SHA-1 over a module's state dict (names and values)."""
    digest = hashlib.sha1()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Model:
    """A frozen, eval-mode network taking RGB images in [0, 1] shaped (N, 3, H, W)."""

    def __init__(
        self,
        module: nn.Module,
        *,
        name: str,
        input_size: tuple[int, int],
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        labels: Sequence[str] | None = None,
        crop_fraction: float = 1.0,
        prefix_tokens: int = 0,
        cls_token: bool = False,
        fixed_input: bool = False,
    ) -> None:
        self.module = module.eval().requires_grad_(False)
        self.name = name
        self.input_size = tuple(input_size)
        self.labels = list(labels) if labels is not None else None
        self.crop_fraction = crop_fraction  # centre crop used on real images before resizing
        self.prefix_tokens = prefix_tokens  # CLS/register tokens ahead of the patch tokens
        self.cls_token = cls_token  # token-layer channels read the CLS token instead of patch means
        self.fixed_input = fixed_input  # only runs at input_size (ViTs, TFLite graphs)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._layers: dict[str, LayerInfo] | None = None
        self._fingerprint: str | None = None
        self.saes: dict[str, nn.Module] = {}  # SAEs known by name, for `LAYER/NAME:F` units

    def add_sae(self, name: str, sae: "nn.Module | str") -> None:
        """Register an SAE (object or file path) so units can say `LAYER/name:F`."""
        if not isinstance(sae, nn.Module):
            from ..sae.model import load_sae

            sae = load_sae(sae)
        self.saes[name] = sae.to(self.device)

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

    def to(self, device: str | torch.device) -> "Model":
        self.module.to(device)
        for sae in self.saes.values():
            sae.to(device)
        self._mean = self._mean.to(device)
        self._std = self._std.to(device)
        return self

    def preprocessing(self) -> dict:
        """Everything that decides what the network sees of an image (recorded in example indexes)."""
        return {"input_size": list(self.input_size), "mean": [round(v, 6) for v in self._mean.flatten().tolist()],
                "std": [round(v, 6) for v in self._std.flatten().tolist()], "crop_fraction": self.crop_fraction}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] RGB to what the network was trained on."""
        return (images - self._mean.to(images.device)) / self._std.to(images.device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name} expects RGB images shaped (N, 3, H, W), got {tuple(images.shape)}")
        if self.fixed_input and tuple(images.shape[2:]) != self.input_size:
            raise ValueError(f"{self.name} only runs at {self.input_size[0]}x{self.input_size[1]}; got "
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

    def module_for(self, layer: str) -> nn.Module:
        return self.module if layer == OUTPUT_LAYER else self.module.get_submodule(layer)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, input_size={self.input_size}, layers={len(self.layers)})"
