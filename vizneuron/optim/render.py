"""The step loop: parameterised images -> transforms -> model (via capture) -> objective -> Adam.

Weights are frozen (the `Model` never needs parameter gradients), the forward pass stops after the
deepest layer the objective reads, hooks go away on exit, and the loop never waits on the device
except at progress/threshold points, so a GPU stays busy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..capture import capture
from ..distributed import Job, RayEngine, as_engine
from ..errors import VizneuronError
from ..models.base import Model
from ..redirect import redirected_relus
from ..units import SAEs, Unit, parse_units
from . import objectives as obj
from .adam import Adam, step_size
from .config import RenderConfig
from .param import make_param
from .speedups import channels_last as channels_last_weights
from .speedups import folded_batchnorm
from .transforms import Transform, compose, standard_transforms

CHECK_EVERY = 32  # steps between finiteness checks / progress updates (each one is a host sync)


class RenderError(VizneuronError, RuntimeError):
    """The optimisation diverged (non-finite objective)."""


@dataclass
class RenderResult:
    """Images (N, 3, H, W) in [0, 1] on the CPU, the final activation of each slot's unit on its
    image (no transforms), the per-step objective of each slot, and any threshold snapshots."""

    images: torch.Tensor
    units: list[Unit]
    samples: int
    activations: torch.Tensor
    history: torch.Tensor  # (steps, N)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    seed_distance: torch.Tensor | None = None  # (N,) pixel RMS distance from the seed image, when accentuating
    seed_activation: torch.Tensor | None = None  # (N,) each slot's unit on the seed image itself

    def unit_of(self, slot: int) -> Unit:
        return self.units[slot // self.samples]

    @classmethod
    def concat(cls, results: Sequence[RenderResult]) -> RenderResult:
        """Join renders of consecutive unit batches (same samples per unit) into one result."""
        if len(results) == 1:
            return results[0]
        return cls(
            images=torch.cat([r.images for r in results]),
            units=[u for r in results for u in r.units],
            samples=results[0].samples,
            activations=torch.cat([r.activations for r in results]),
            history=torch.cat([r.history for r in results], 1),
            snapshots={step: torch.cat([r.snapshots[step] for r in results]) for step in results[0].snapshots},
            seed_distance=None if results[0].seed_distance is None else torch.cat([r.seed_distance for r in results]),
            seed_activation=None if results[0].seed_activation is None else torch.cat(
                [r.seed_activation for r in results]),
        )


def render(
    model: Model,
    units: str | Sequence[str | Unit] | Unit,
    config: RenderConfig | None = None,
    *,
    objective: obj.Objective | None = None,
    saes: SAEs | None = None,
    device: str | torch.device | None = None,
    channels_last: bool = True,
    thresholds: Sequence[int] = (),
    engine: str | RayEngine | None = "local",
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    **settings: Any,
) -> RenderResult:
    """Optimise `samples` images per unit so that each maximises its unit.

    `units`: unit specs or `Unit`s (each gets `samples` batch slots; `saes` names the SAEs that
    `LAYER/NAME:F` specs use). `config` and `settings` (any `RenderConfig` field, e.g. `steps=512,
    samples=4`) say how; see `RenderConfig`. Units are optimised `batch` at a time, batch i with
    seed `seed + i * batch`. `objective`: an extra objective added to the per-slot unit objective
    (or used alone when `units` is empty). `device`: where to run; the model is moved there.
    `channels_last`: convolutions run on channels-last weights during the render (1.2x faster on CPU
    for the bundled model). Eval-mode BatchNorms are folded into the convolutions that feed them
    while the steps run (see `speedups`); the model is put back as it was.
    `thresholds`: steps at which to keep snapshots.
    `engine`: "local", or "ray" / a `RayEngine`: the unit batches are spread over Ray actors (one GPU
    each with `gpus_per_actor=1`) and the result is bit-identical to the local one.
    `on_progress(step, steps)`: called after each step (on Ray: each finished batch), counted over all batches.
    """
    ray = as_engine(engine)
    if ray:
        ray.start()
    if device is not None:
        model.to(device)
    unit_list = parse_units(units, model, saes)
    if not unit_list and objective is None:
        raise VizneuronError("render needs units or an objective")
    cfg = (config or RenderConfig()).with_settings(**settings).normalised(model, len(unit_list))
    job = _RenderBatches(model, [unit_list[i : i + cfg.batch] for i in range(0, len(unit_list), cfg.batch)] or [[]],
                         cfg, objective, tuple(thresholds), channels_last)
    total_steps = cfg.steps * len(job.batches)
    results: list[RenderResult | None] = [None] * len(job.batches)
    if ray:
        bar = tqdm(total=len(job.batches), unit="batch", desc=f"render on Ray ({len(unit_list)} units)",
                   disable=not progress)
        with ray.pool() as pool:
            for finished, (number, result) in enumerate(pool.run(job, list(range(len(job.batches)))), start=1):
                results[number] = result
                bar.update(1)
                if on_progress is not None:
                    on_progress(finished * cfg.steps, total_steps)
        bar.close()
        return RenderResult.concat(results)
    batches = tqdm(range(len(job.batches)), unit="batch",
                   desc=f"render {len(unit_list)} units in batches of {cfg.batch}",
                   disable=not progress or len(job.batches) == 1)  # a whole layer: progress per batch too
    for number in batches:
        done = number * cfg.steps
        report = None if on_progress is None else \
            (lambda step, _steps, done=done: on_progress(done + step, total_steps))
        results[number] = job(number, progress, report)
    return RenderResult.concat(results)


@dataclass
class _RenderBatches(Job):
    """Batch `number` of a render's units, optimised with seed `seed + number * batch`: the same
    computation in this process or on a Ray actor (which receives this object once)."""

    model: Model
    batches: list[list[Unit]]
    cfg: RenderConfig
    objective: obj.Objective | None
    thresholds: tuple[int, ...]
    channels_last: bool = True

    def __call__(self, number: int, progress: bool = False,
                 on_progress: Callable[[int, int], None] | None = None) -> RenderResult:
        return _render_batch(self.model, self.batches[number], self.cfg, self.cfg.seed + number * self.cfg.batch,
                             self.objective, self.thresholds, progress, on_progress,
                             self.channels_last)


def _render_batch(model: Model, unit_list: list[Unit], cfg: RenderConfig, seed: int, objective: obj.Objective | None,
                  thresholds: Sequence[int], progress: bool,
                  on_progress: Callable[[int, int], None] | None, channels_last: bool = True) -> RenderResult:
    """One batch of units, optimised together (`cfg` normalised)."""
    device = model.device
    samples, steps, redirect_steps = cfg.samples, cfg.steps, cfg.redirect_steps
    n = max(1, len(unit_list)) * samples
    gen = torch.Generator(device=device).manual_seed(seed)

    total = obj.slots(unit_list, samples) if unit_list else None
    if cfg.diversity:
        layers = {u.layer for u in unit_list}
        if cfg.diversity_layer is None and len(layers) != 1:
            raise VizneuronError("diversity with units on several layers needs diversity_layer=")
        layer = cfg.diversity_layer or next(iter(layers))
        total = total - cfg.diversity * obj.diversity(layer, groups=max(1, len(unit_list)), tokens=model.inputs.tokens)
    if objective is not None:
        total = objective if total is None else total + objective
    layers = list(total.layers)

    seed_image = None if cfg.seed_image is None else cfg.seed_image.to(device)
    image_param = make_param(cfg.param, n, cfg.size, gen, init=seed_image, **cfg.param_options)
    stay_close = cfg.stay_close if seed_image is not None else 0.0
    pull: torch.Tensor | None = None  # per slot, the weight of drifting (set from step 1's push)
    transform = _as_transform(cfg.transforms, cfg.size)
    feed_size = cfg.model_input_size
    optimiser = Adam(image_param.params, lr=cfg.lr)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bfloat16" else nullcontext()
    history: list[torch.Tensor] = []
    snapshots: dict[int, torch.Tensor] = {}
    names = [u.name for u in unit_list] or [total.name]

    with ExitStack() as redirect, ExitStack() as hooks:
        if redirect_steps > 0:  # before capture, so a ReLU target itself is redirected too
            redirect.enter_context(redirected_relus(model.module,
                                                    {id(u.sae): u.sae for u in unit_list if u.sae}.values()))
        cap = hooks.enter_context(capture(model, layers))
        faster = hooks.enter_context(ExitStack())  # exact rewrites of the model, undone before the final measure
        faster.enter_context(folded_batchnorm(model.module, keep=layers))
        if channels_last:
            faster.enter_context(channels_last_weights(model.module))
        bar = tqdm(range(1, steps + 1), desc=f"render {_describe(names)}", disable=not progress, leave=False)
        for step in bar:
            optimiser.zero_grad()
            images = image_param.image()
            x = transform(images, gen)
            if feed_size is not None:
                x = F.interpolate(x, size=feed_size, mode="bilinear", align_corners=False)
            with amp:
                acts = cap.run(x)
            acts[obj.INPUT] = images
            values = total(acts)
            goal = values if pull is None else values - pull * image_param.drift()
            (-goal.sum()).backward()
            if stay_close and pull is None:  # step 1, at the seed: the unit's push alone
                pull = _balanced_pull(image_param, stay_close)
            optimiser.lr = step_size(cfg.lr, cfg.schedule, step, steps)
            optimiser.step()
            history.append(values.detach())
            if step % CHECK_EVERY == 0 or step == steps:
                _check_finite(history, names, samples)
                bar.set_postfix(objective=f"{values.detach().mean().item():.3f}")
            if on_progress is not None:
                on_progress(step, steps)
            if step in thresholds:
                snapshots[step] = image_param.image().detach().cpu()
            if step == redirect_steps:
                redirect.close()

        faster.close()
        with torch.no_grad():
            final = image_param.image().detach()
            per_slot = obj.slots(unit_list, samples) if unit_list else total
            measured = _measure(cap, per_slot, final, feed_size)
            on_seed = None if seed_image is None else _measure(cap, per_slot, seed_image.expand_as(final), feed_size)

    return RenderResult(
        images=final.float().cpu(),
        units=unit_list,
        samples=samples,
        activations=measured.float().cpu(),
        history=torch.stack(history).float().cpu(),
        snapshots=snapshots,
        seed_distance=None if seed_image is None else (final - seed_image).float().pow(2).mean((1, 2, 3)).sqrt().cpu(),
        seed_activation=None if on_seed is None else on_seed.float().cpu(),
    )


def _measure(cap, objective: obj.Objective, images: torch.Tensor, feed_size) -> torch.Tensor:
    """The objective on `images` as they are (no transforms), per slot."""
    x = F.interpolate(images, size=feed_size, mode="bilinear", align_corners=False) if feed_size else images
    acts = cap.run(x)
    acts[obj.INPUT] = images
    return objective(acts)


def _balanced_pull(image_param, stay_close: float) -> torch.Tensor:
    """Per slot, the weight on `drift()` that makes drifting by 1/stay_close of the seed's size (in
    the parameterisation) pull back as hard as the unit pushed at the seed: the unit's gradient
    norm there x the seed's norm / 2 x stay_close. Unit-free, whatever the unit's scale."""
    with torch.no_grad():
        push = sum(p.grad.flatten(1).pow(2).sum(1) for p in image_param.params).sqrt()
        return stay_close * push * image_param.origin_norm2.sqrt() / 2


def _as_transform(transforms, hw: tuple[int, int]) -> Transform:
    if transforms == "standard":
        return compose(standard_transforms(min(hw)))
    if transforms == "none":
        return lambda x, gen: x
    return compose(list(transforms))


def _check_finite(history: list[torch.Tensor], names: list[str], samples: int) -> None:
    recent = torch.stack(history[-CHECK_EVERY:])
    if bool(torch.isfinite(recent).all()):
        return
    first = len(history) - len(recent)
    bad_step, bad_slot = (~torch.isfinite(recent)).nonzero()[0].tolist()
    unit = names[min(bad_slot // samples, len(names) - 1)]
    raise RenderError(
        f"objective became non-finite at step {first + bad_step + 1} for {unit} (slot {bad_slot}); "
        "try a lower lr or another parameterisation"
    )


def _describe(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1} more"
