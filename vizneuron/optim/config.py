"""`RenderConfig`: every setting that decides a render's pixels, with its default, in one place.

`render()`, the CLI's flags, the app's widgets, the benchmarks and the render cache all read their
defaults from here; `normalised(model, units)` resolves a config against a model (image size,
the size fed to the model, diversity off for one sample, the batch size and number format for the
model and its device, batches no larger than the units), so
two callers that ask for the same render in different words get the same config, and the same
cache entry. Named presets are defined once in `PRESETS`.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ..choices import PARAMETERISATIONS, PRECISIONS, SCHEDULES
from ..errors import VizneuronError

if TYPE_CHECKING:
    from ..models.base import Model
    from .transforms import Transform

Size = int | tuple[int, int]
TRANSFORM_NAMES = ("standard", "none")
#: batch="auto": at most this many units at once (progress stays per batch), and the images of a
#: batch may keep at most 1/AUTO_BATCH_MEMORY_SHARE of the device's memory (3x a forward's
#: activations per image: the outputs kept for backward, their gradients and workspace)
AUTO_BATCH_MAX = 64
AUTO_BATCH_MEMORY_SHARE = 16


@dataclass(frozen=True)
class RenderConfig:
    """What to optimise and how. `diversity` weighs lucid's diversity term between a unit's
    `samples` (pushed apart at the unit's layer, or at `diversity_layer`); it does nothing with one
    sample. lucid uses 1e2 on InceptionV1, but the term is a cosine in [0, 1] while activation
    scales differ by model, and 1e2 kills most samples of smaller models: the default is 1."""

    samples: int = 1  # images per unit
    diversity: float = 1.0  # weight of the diversity penalty between a unit's samples
    diversity_layer: str | None = None  # where samples are pushed apart (default: the units' layer)
    param: str = "fft"  # "fft" | "pixel" | "maco"
    param_options: dict[str, Any] | None = None  # e.g. {"amplitude": natural_amplitude(...)} for maco
    size: Size | None = None  # image size (default: the model's input size)
    model_input_size: Size | None = None  # resize before the model (fixed-size models: their own size)
    transforms: str | Sequence[Transform] = "standard"  # "standard", "none", or transform functions
    steps: int = 192
    lr: float = 0.2  # the peak step size of the cosine schedule (lucent's constant 0.05 is 4x smaller)
    schedule: str = "cosine"  # "cosine": warm-up over steps/8, then down to 0 | "constant": lr throughout
    seed: int = 0
    redirect_steps: int = 16  # first steps in which ReLU/ReLU6 pass gradient to clipped units (0: off)
    batch: int | str | None = "auto"  # units optimised together ("auto": from the model's memory, None: all);
    # batch i uses seed + i * batch
    precision: str = "auto"  # "auto" (bfloat16 where the device multiplies it in hardware) | "float32" | "bfloat16"
    seed_image: Any = None  # feature accentuation: start here (a path, PIL image or (3, H, W) tensor) ...
    stay_close: float = 4.0  # ... pulled back as hard as the unit pushes when 1/stay_close of the seed away

    def __post_init__(self) -> None:
        if self.transforms is None:  # "no transforms", as lucent says it
            object.__setattr__(self, "transforms", "none")
        checks = [("samples", self.samples >= 1, "at least 1"), ("steps", self.steps >= 1, "at least 1"),
                  ("diversity", self.diversity >= 0, "0 or more"), ("lr", self.lr > 0, "positive"),
                  ("redirect_steps", self.redirect_steps >= 0, "0 or more"),
                  ("stay_close", self.stay_close >= 0, "0 or more"),
                  ("seed", 0 <= self.seed < 2**63, "between 0 and 2**63 - 1"),
                  ("batch", self.batch in (None, "auto") or (isinstance(self.batch, int) and self.batch >= 1),
                   "at least 1, 'auto', or None / 'all' (every unit at once)")]
        for size_name in ("size", "model_input_size"):
            value = getattr(self, size_name)
            if value is not None:
                checks.append((size_name, 8 <= min(_pair(value)) and max(_pair(value)) <= 4096,
                               "between 8 and 4096 pixels"))
        for name, ok, wanted in checks:
            if not ok:
                raise VizneuronError(f"render setting {name}={getattr(self, name)!r}: must be {wanted}")
        if self.param not in PARAMETERISATIONS:
            raise VizneuronError(f"unknown parameterisation {self.param!r}; choose from {', '.join(PARAMETERISATIONS)}")
        if self.precision not in PRECISIONS:
            raise VizneuronError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.schedule not in SCHEDULES:
            raise VizneuronError(f"unknown step-size schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if isinstance(self.transforms, str) and self.transforms not in TRANSFORM_NAMES:
            raise VizneuronError(f"transforms={self.transforms!r}: give {' or '.join(TRANSFORM_NAMES)}, or a list "
                             "of transform functions")

    def with_settings(self, **settings: Any) -> RenderConfig:
        """A copy with some settings changed; unknown names get the closest setting names."""
        names = [f.name for f in fields(self)]
        for name in settings:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else f" (settings: {', '.join(names)})"
                raise VizneuronError(f"unknown render setting {name!r}{hint}")
        return replace(self, **settings)

    def normalised(self, model: Model, units: int = 1) -> RenderConfig:
        """This config resolved against `model` for `units` units: sizes as (H, W) pairs, the model's
        own size for fixed-size models, diversity off for one sample, the diversity layer's real name,
        "auto" batch and precision decided for the model on its device, and a batch no larger than the
        units. Equal renders have equal normalised configs."""
        diverse = self.samples > 1 and self.diversity > 0
        feed = self.model_input_size
        if feed is None and model.inputs.fixed_size:  # ViTs and TFLite graphs only run at their own size
            feed = model.input_size
        size = _pair(self.size) if self.size is not None else tuple(model.input_size)
        batch = self.batch if self.batch != "auto" else _auto_batch(model, self.samples, _pair(feed) if feed else size)
        return replace(
            self,
            size=size,
            model_input_size=_pair(feed) if feed is not None else None,
            diversity=float(self.diversity) if diverse else 0.0,
            diversity_layer=model.resolve_layer(self.diversity_layer) if diverse and self.diversity_layer else None,
            param_options=dict(self.param_options or {}),
            batch=max(1, units) if batch is None else min(batch, max(1, units)),
            precision=self.precision if self.precision != "auto" else (
                "bfloat16" if model.native_bfloat16 else "float32"),
            lr=float(self.lr),
            seed_image=self._seed(size),
            stay_close=float(self.stay_close),
        )

    def key(self) -> dict[str, Any]:
        """The settings as plain JSON values (for cache keys and manifests); tensors in the
        parameterisation's options are named by their digest. Custom transforms cannot be keyed."""
        if not isinstance(self.transforms, str):
            raise VizneuronError("cannot cache renders with custom transforms (give 'standard' or 'none')")
        values = asdict(replace(self, param_options=None, transforms=self.transforms, seed_image=None))
        values["param_options"] = {k: _plain(v) for k, v in sorted((self.param_options or {}).items())}
        values["seed_image"] = _plain(self.seed_image)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    def _seed(self, size: tuple[int, int]) -> Any:
        if self.seed_image is None:
            return None
        from ..imageio import seed_tensor  # late: the config stays torch-free for the CLI's parser
        return seed_tensor(self.seed_image, size)


def _auto_batch(model: Model, samples: int, fed: tuple[int, int]) -> int:
    """Units per batch: as many as fit a share of the device's memory, a power of 2, at most
    AUTO_BATCH_MAX (64 on the bundled model, 16 on resnet18 at 224 px with 24 GiB of RAM)."""
    images = model.memory_bytes // AUTO_BATCH_MEMORY_SHARE // (3 * max(1, model.activation_bytes(fed)))
    units = max(1, images // samples)
    return min(AUTO_BATCH_MAX, 2 ** (units.bit_length() - 1))


def _plain(value: Any) -> Any:
    if hasattr(value, "detach"):  # a tensor (duck-typed: this module does not load torch)
        tensor = value.detach().cpu().contiguous()
        return f"tensor:{hashlib.sha1(tensor.numpy().tobytes()).hexdigest()}:{list(tensor.shape)}"
    return value


def _pair(size: Size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


#: Named starting points, defined once: the app's neuron view and layer grid, and the README's
#: quick start on the bundled model (its `layer2` is where samples are pushed apart).
PRESETS: dict[str, RenderConfig] = {
    "default": RenderConfig(),
    "neuron-view": RenderConfig(samples=4),
    "layer-grid": RenderConfig(steps=64),
    "quick-start": RenderConfig(samples=2, diversity_layer="layer2"),
}


def preset(name: str) -> RenderConfig:
    """A named preset; unknown names get the closest ones."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3)
        raise VizneuronError(f"unknown render preset {name!r}; presets: {', '.join(close or PRESETS)}")
    return PRESETS[name]
