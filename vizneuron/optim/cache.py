"""Renders kept on disk, keyed by everything that decides their pixels.

The app and `vizneuron render --cache DIR` read a render back instead of optimising again. The key
covers the model's weights, the units (and the weights of any SAE they read), every render setting
and the vizneuron version, so a changed seed, step count or parameterisation is a new render.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..models.base import Model, weights_digest
from ..units import Unit
from .render import RenderResult, _as_units, render

#: render() keywords a cached render may set (all JSON-able; custom objectives are not cached).
SETTINGS = ("samples", "diversity", "diversity_layer", "param", "param_options", "size", "model_input_size",
            "transforms", "steps", "lr", "seed", "redirect_steps")


class RenderCache:
    """A folder of renders, one safetensors file per (model, units, settings)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def key(self, model: Model, units: Sequence[Unit], settings: dict[str, Any]) -> str:
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise ValueError(f"cannot cache renders with {', '.join(sorted(unknown))}; cacheable: {', '.join(SETTINGS)}")
        from .. import __version__

        payload = {
            "version": __version__, "model": model.name, "weights": model.fingerprint,
            "units": [u.name for u in units], "settings": settings,
            "saes": sorted({weights_digest(u.sae) for u in units if u.sae is not None}),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def _path(self, model: Model, units: Sequence[Unit], settings: dict[str, Any]) -> Path:
        return self.folder / f"{self.key(model, units, settings)}.safetensors"

    def get(self, model: Model, units: str | Sequence[str | Unit], **settings: Any) -> RenderResult | None:
        """The cached render, or None when it was never made."""
        unit_list = _as_units(model, units)
        return _load(self._path(model, unit_list, settings), unit_list)

    def render(self, model: Model, units: str | Sequence[str | Unit], *, progress: bool = False,
               on_progress: Callable[[int, int], None] | None = None, **settings: Any) -> RenderResult:
        """`render(model, units, **settings)`, read from the cache when it was made before."""
        unit_list = _as_units(model, units)
        path = self._path(model, unit_list, settings)  # the key hashes SAE weights: computed once
        cached = _load(path, unit_list)
        if cached is not None:
            return cached
        result = render(model, unit_list, progress=progress, on_progress=on_progress, **settings)
        from ..gallery import write_atomic

        tensors = {"images": result.images.contiguous(), "activations": result.activations.contiguous(),
                   "history": result.history.contiguous()}
        metadata = {"units": json.dumps([u.name for u in unit_list]), "samples": json.dumps(result.samples),
                    "settings": json.dumps(settings, sort_keys=True, default=str), "model": model.name}
        write_atomic(path, save_tensors(tensors, metadata=metadata))
        return result


def _load(path: Path, units: list[Unit]) -> RenderResult | None:
    if not path.exists():
        return None
    blob = path.read_bytes()
    tensors = load_tensors(blob)
    return RenderResult(images=tensors["images"], units=units, samples=json.loads(_metadata(blob)["samples"]),
                        activations=tensors["activations"], history=tensors["history"])


def _metadata(blob: bytes) -> dict[str, str]:
    """The safetensors header's __metadata__ (the header is 8 bytes of length, then JSON)."""
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + size]).get("__metadata__", {})
