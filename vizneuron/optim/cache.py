"""Renders kept on disk, keyed by everything that decides their pixels.

The app and `vizneuron render --cache DIR` read a render back instead of optimising again. The key
covers the model's weights, the units (and the weights of any SAE they read), the render config
normalised against the model (so `size=None` and `size=32` on a 32 px model are one render, and
the CLI and the app hit each other's entries) and the vizneuron version.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..distributed import RayEngine
from ..errors import VizneuronError
from ..imageio import write_atomic
from ..models.base import Model, weights_digest
from ..units import SAEs, Unit, parse_units
from ..version import __version__
from .config import RenderConfig
from .render import RenderResult, render


class RenderCache:
    """A folder of renders, one safetensors file per (model, units, normalised config)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def key(self, model: Model, units: Sequence[Unit], config: RenderConfig) -> str:
        """The entry name of a render; `config` is normalised here."""
        payload = {
            "version": __version__, "model": model.name, "weights": model.fingerprint,
            "units": [u.name for u in units], "config": config.normalised(model, len(units)).key(),
            "saes": sorted({weights_digest(u.sae) for u in units if u.sae is not None}),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def _entry(self, model: Model, units: str | Sequence[str | Unit], config: RenderConfig | None,
               saes: SAEs | None, settings: dict[str, Any]) -> tuple[list[Unit], RenderConfig, Path]:
        if "objective" in settings:
            raise VizneuronError("cannot cache renders with objective= (custom objectives have no stable key)")
        unit_list = parse_units(units, model, saes)
        cfg = (config or RenderConfig()).with_settings(**settings).normalised(model, len(unit_list))
        return unit_list, cfg, self.folder / f"{self.key(model, unit_list, cfg)}.safetensors"

    def get(self, model: Model, units: str | Sequence[str | Unit], config: RenderConfig | None = None, *,
            saes: SAEs | None = None, **settings: Any) -> RenderResult | None:
        """The cached render, or None when it was never made."""
        unit_list, _, path = self._entry(model, units, config, saes, settings)
        return _load(path, unit_list)

    def render(self, model: Model, units: str | Sequence[str | Unit], config: RenderConfig | None = None, *,
               saes: SAEs | None = None, engine: str | RayEngine | None = "local", progress: bool = False,
               on_progress: Callable[[int, int], None] | None = None, **settings: Any) -> RenderResult:
        """`render(model, units, config, **settings)`, read from the cache when it was made before."""
        unit_list, cfg, path = self._entry(model, units, config, saes, settings)
        cached = _load(path, unit_list)
        if cached is not None:
            return cached
        result = render(model, unit_list, cfg, engine=engine, progress=progress, on_progress=on_progress)
        tensors = {name: getattr(result, name).contiguous() for name in _KEPT if getattr(result, name) is not None}
        metadata = {"units": json.dumps([u.name for u in unit_list]), "samples": json.dumps(result.samples),
                    "config": json.dumps(cfg.key(), sort_keys=True),
                    "model": model.name}
        write_atomic(path, save_tensors(tensors, metadata=metadata))
        return result


#: the tensors of a RenderResult a cache entry keeps (the seed ones only for accentuations)
_KEPT = ("images", "activations", "history", "seed_distance", "seed_activation")


def _load(path: Path, units: list[Unit]) -> RenderResult | None:
    """The entry at `path`; None when there is none, or when it is damaged (cut short, edited): then
    it is rendered again and overwritten, with a warning, rather than shown or failing."""
    if not path.exists():
        return None
    blob = path.read_bytes()
    try:
        tensors = load_tensors(blob)
        return RenderResult(units=units, samples=json.loads(_metadata(blob)["samples"]),
                            **{name: tensors.get(name) for name in _KEPT})
    except Exception as err:  # safetensors' own error class, JSON, a missing key: any damage
        warnings.warn(f"render cache entry {path} is damaged ({type(err).__name__}); rendering it again",
                      stacklevel=3)
        return None


def _metadata(blob: bytes) -> dict[str, str]:
    """The safetensors header's __metadata__ (the header is 8 bytes of length, then JSON)."""
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + size]).get("__metadata__", {})
