"""Circuits: which units of an earlier layer feed a unit, which units of a later layer (or which
classes) it feeds, and how its inputs differ concept by concept.

Upstream, a unit's value f is split over the units of the earlier layer by integrated gradients
from a reference (the earlier layer's mean over the data, position by position) to each image's
activation: contribution_c = (a_c - ref_c) x the mean gradient along that path, summed over
positions. The contributions add up to f(a) - f(ref) (completeness, up to the path's Riemann sum),
so f(ref) is the baseline node; with an SAE standing in for the earlier layer, the codes are the
units and the SAE's reconstruction error is a node of its own. Downstream, a unit's effect on each
later unit is the change when the unit is mean-ablated (set to its reference): one edited pass
gives every later unit at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..ablate import hold
from ..capture import capture
from ..errors import VizneuronError
from ..imageio import pil_to_tensor
from ..models.base import OUTPUT_LAYER, Model
from ..sources import ImageSource, ModelInputs, as_source
from ..stream import ActivationStream
from ..units import SAEs, Unit, parse_unit, parse_units, unit_peaks


class CircuitError(VizneuronError):
    """A circuit that cannot be asked for (layers in the wrong order, a unit kind with no inputs)."""


@dataclass(frozen=True)
class Edge:
    """One upstream or downstream unit and its signed contribution to (or effect on) the target."""

    unit: str
    contribution: float  # in the target's units (upstream) or the later unit's units (downstream)
    share: float  # |contribution| over the sum of all |contributions|


@dataclass
class Circuit:
    """The top `k` edges of one side of a unit, with everything needed to check them."""

    unit: str
    side: str  # "upstream" | "downstream"
    layer: str  # the other end: a layer name, "LAYER/SAE" or "logits"
    edges: list[Edge]
    names: list[str]  # every unit of the other end, in its own order
    contributions: torch.Tensor  # (U,) every unit's mean contribution, in `names` order
    value: float  # the unit's mean value on the images
    baseline: float | None  # upstream: the unit's mean value with the earlier layer at its reference
    error: float | None  # upstream through an SAE: the reconstruction error node's contribution
    images: list[str]  # the images the contributions are averaged over
    paths: dict[str, list[Edge]] = field(default_factory=dict)  # per concept: that concept's top edges
    path_contributions: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    path_images: dict[str, int] = field(default_factory=dict)
    gradient_norm: torch.Tensor | None = field(default=None, repr=False)  # (U,) upstream: the linearised weights
    reference_mean: torch.Tensor | None = field(default=None, repr=False)  # the reference layer's mean output
    inputs: torch.Tensor | None = field(default=None, repr=False)  # the images, as the model saw them
    target: Unit | None = field(default=None, repr=False)  # the unit, as parsed once
    others: list[Unit] = field(default_factory=list, repr=False)  # every unit of the other end, parsed
    reference_count: int = 0  # images whose mean is the reference (the contributions are relative to it)

    @property
    def completeness(self) -> float | None:
        """How far contributions + error + baseline miss the unit's value, relative to that value
        (upstream only; 0 is exact)."""
        if self.baseline is None:
            return None
        total = float(self.contributions.sum()) + (self.error or 0.0) + self.baseline
        return abs(total - self.value) / max(abs(self.value), 1e-12)

    def path_agreement(self) -> dict[tuple[str, str], float]:
        """Cosine between the contribution vectors of each pair of concepts: near 1 when the unit is
        fed the same way on both, low when each concept has its own path."""
        names = list(self.path_contributions)
        found = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                found[(a, b)] = float(torch.nn.functional.cosine_similarity(
                    self.path_contributions[a], self.path_contributions[b], dim=0))
        return found

    def to_dict(self) -> dict[str, Any]:
        def edge(e: Edge) -> dict[str, Any]:
            return {"unit": e.unit, "contribution": e.contribution, "share": e.share}

        return {"unit": self.unit, "side": self.side, "layer": self.layer, "edges": [edge(e) for e in self.edges],
                "value": self.value, "baseline": self.baseline, "error": self.error,
                "completeness": self.completeness, "images": self.images, "reference_images": self.reference_count,
                "paths": {c: [edge(e) for e in edges] for c, edges in self.paths.items()},
                "path_images": self.path_images,
                "path_agreement": {f"{a} | {b}": v for (a, b), v in self.path_agreement().items()}}


@dataclass
class Reference:
    """The mean activation of some layers over reference images (position by position), and the
    target unit's value on each of those images (to pick its top examples)."""

    means: dict[str, torch.Tensor]  # layer -> (1, ...) mean output
    values: torch.Tensor  # (N,) the unit's value per reference image
    ids: torch.Tensor  # (N,) their ids in the source
    source: ImageSource
    unit: str = ""  # the unit whose values these are


def reference(model: Model, unit: Unit, layers: Sequence[str], data: Any, max_images: int = 512,
              batch_size: int = 64) -> Reference:
    """One pass over (a seeded sample of) `data`: the layers' means and the unit's values."""
    stream = ActivationStream(model, sorted(set(layers) | {unit.layer}), data, batch_size=batch_size,
                              max_images=max_images)
    sums: dict[str, torch.Tensor] = {}
    values, ids, count = [], [], 0
    for batch in stream:
        if not batch.activations:
            continue
        for layer in layers:
            act = batch.activations[layer].double().sum(0, keepdim=True)
            sums[layer] = act if layer not in sums else sums[layer] + act
        values.append(unit.activation(batch.activations).float().cpu())
        ids.append(batch.ids)
        count += len(batch.ids)
    if not count:
        raise VizneuronError(f"no readable images in {stream.source.describe().get('root', data)}")
    return Reference({layer: (s / count).float() for layer, s in sums.items()}, torch.cat(values), torch.cat(ids),
                     stream.source, unit.name)


def _images(source: ImageSource, ids: Sequence[int], model: Model) -> torch.Tensor:
    inputs = ModelInputs(source, model.inputs)
    return torch.stack([inputs[int(i)][1] for i in ids])


def _index_images(index, unit: Unit, k: int) -> tuple[torch.Tensor, list[str]]:
    """The unit's top examples as the index stored them (the images as the model saw them)."""
    try:
        examples = index.examples(unit.name, k=k)
    except KeyError as err:
        raise CircuitError(str(err).strip("'\"")) from None
    if not examples:
        raise CircuitError(f"index {index.path} holds no examples of {unit.name}")
    return torch.stack([pil_to_tensor(index.thumbnail(e.image)) for e in examples]), [e.path for e in examples]


def _end_units(model: Model, end: str, saes: SAEs | None) -> list[Unit]:
    """Every unit of the other end: `LAYER` (channels), `LAYER/SAE` (features) or `logits`."""
    spec = "logit:*" if end in ("logits", "logit", OUTPUT_LAYER) else f"{end}:*"
    units = parse_units(spec, model, saes)
    if any(u.kind not in ("channel", "sae", "logit") for u in units):
        raise CircuitError(f"{end!r}: the other end of a circuit is a layer's channels or an SAE's features")
    return units


def circuit_ends(model: Model, layer: str, side: str) -> list[str]:
    """The layers a circuit of a unit in `layer` can reach, in model order: those with channels before
    it (`side="upstream"`), or after it and then the logits (`"downstream"`)."""
    here = model.layer(layer).order
    if side == "upstream":
        return [name for name, info in model.layers.items() if info.channels and info.order < here]
    if side == "downstream":
        return [name for name, info in model.layers.items() if info.channels and info.order > here
                and name != OUTPUT_LAYER] + ([OUTPUT_LAYER] if layer != OUTPUT_LAYER else [])
    raise CircuitError(f"side {side!r}: a circuit goes upstream (what feeds a unit) or downstream (what it feeds)")


def nearest_end(model: Model, layer: str, side: str) -> str | None:
    """The other end a circuit starts with: the block (a top-level layer) just before `layer`
    upstream, just after it downstream; None when there is none."""
    ends = circuit_ends(model, layer, side)
    blocks = [name for name in ends if "." not in name] or ends
    return (blocks[-1] if side == "upstream" else blocks[0]) if blocks else None


def circuit(model: Model, unit: str | Unit, *, upstream: str | None = None, downstream: str | None = None,
            data: Any, index=None, k: int = 8, examples: int = 32, steps: int = 8,
            concepts: dict[str, Any] | None = None,
            per_concept: int = 16, reference_images: int = 512, saes: SAEs | None = None,
            batch_size: int = 64, shared: Reference | None = None) -> Circuit:
    """The units of `upstream` (a layer before the unit's, or `LAYER/SAE` for an SAE's features)
    that feed `unit` most, or the units of `downstream` (a later layer, `LAYER/SAE`, or "logits")
    it pushes up or down most, each with a signed contribution, top `k` by size.

    `data`: images; their layer means are the reference, and unless `index` (an `ExampleIndex`
    holding the unit) is given, the unit's `examples` top images among them are the images the
    contributions are averaged over. `steps`: points on the integrated-gradients path (upstream).
    `concepts` (name -> images, as the probe takes): the same, restricted to each concept's
    `per_concept` images where the unit fires most: one path per concept. `shared`: a `reference`
    over `data` already measured for the other end's layer (upstream) or the unit's (downstream),
    so that many units of a layer pay for one pass over `data`; with it, give `index` (or make it
    for this unit), since the top examples are read from there.
    """
    if (upstream is None) == (downstream is None):
        raise CircuitError("give exactly one of upstream= (what feeds the unit) or downstream= (what it feeds)")
    if k < 1 or examples < 1 or steps < 1:
        raise CircuitError("k, examples and steps must each be at least 1")
    unit = parse_unit(unit, model, saes) if isinstance(unit, str) else unit
    end = upstream if upstream is not None else downstream
    others = _end_units(model, end, saes)
    other_layer = others[0].layer
    if upstream is not None and other_layer not in circuit_ends(model, unit.layer, "upstream"):
        raise CircuitError(f"upstream layer {other_layer} does not come before {unit.layer}: it cannot feed "
                           f"{unit.name}")
    if downstream is not None:
        if unit.kind == "logit":
            raise CircuitError(f"{unit.name} is an output: nothing comes after it")
        if other_layer not in circuit_ends(model, unit.layer, "downstream"):
            raise CircuitError(f"downstream layer {other_layer} does not come after {unit.layer}: {unit.name} "
                               "cannot feed it")
    ref_layer = other_layer if upstream is not None else unit.layer
    if shared is not None and (ref_layer not in shared.means or (index is None and shared.unit != unit.name)):
        raise CircuitError(f"the shared reference holds {', '.join(shared.means) or 'no layer'} for "
                           f"{shared.unit or 'no unit'}: it needs {ref_layer}, and an index= unless it was made for "
                           f"{unit.name}")
    ref = shared if shared is not None else reference(model, unit, [ref_layer], data, reference_images, batch_size)
    if index is None and min(examples, len(ref.ids)) > len(ref.ids) // 2:
        raise CircuitError(
            f"only {len(ref.ids)} readable images in data: the {min(examples, len(ref.ids))} top examples the "
            f"contributions are averaged over would be most of the images whose mean is the reference, so the "
            f"contributions would cancel towards zero and their ranking and signs would be noise; give at least "
            f"{2 * examples} images, fewer examples (examples={max(1, len(ref.ids) // 4)}), or an index= of the "
            "unit's top examples mined from a larger dataset")
    if index is not None:
        images, keys = _index_images(index, unit, examples)
    else:
        best = ref.values.argsort(descending=True)[:examples]
        ids = ref.ids[best].tolist()
        images, keys = _images(ref.source, ids, model), [ref.source.key(i) for i in ids]
    measure = _upstream(model, unit, others, ref, steps, batch_size) if upstream is not None else \
        _downstream(model, unit, others, ref, batch_size)
    result = measure(images)
    names = [u.name for u in others]
    found = Circuit(unit.name, "upstream" if upstream is not None else "downstream", end, _top(names, result.mean, k),
                    names, result.mean, result.value, result.baseline, result.error, keys,
                    gradient_norm=result.gradient_norm, reference_mean=ref.means[ref_layer], inputs=images,
                    target=unit, others=others, reference_count=len(ref.ids))
    for concept, source in (concepts or {}).items():
        concept_source = as_source(source)
        concept_ref = reference(model, unit, [], concept_source, None, batch_size)
        best = concept_ref.values.argsort(descending=True)[:per_concept]
        part = measure(_images(concept_source, concept_ref.ids[best].tolist(), model))
        found.paths[concept] = _top(names, part.mean, k)
        found.path_contributions[concept] = part.mean
        found.path_images[concept] = len(best)
    return found


def _top(names: list[str], contributions: torch.Tensor, k: int) -> list[Edge]:
    total = float(contributions.abs().sum()) or 1.0
    best = contributions.abs().argsort(descending=True)[:k].tolist()
    return [Edge(names[i], float(contributions[i]), float(contributions[i].abs()) / total) for i in best]


@dataclass
class _Measured:
    mean: torch.Tensor  # (U,) mean contribution per unit of the other end
    value: float
    baseline: float | None
    error: float | None
    gradient_norm: torch.Tensor | None = None  # (U,) upstream: mean size of the unit's gradient per unit


def _upstream(model: Model, unit: Unit, others: list[Unit], ref: Reference, steps: int,
              batch_size: int) -> Callable[[torch.Tensor], _Measured]:
    """Integrated gradients of the unit's value over the earlier layer's units, batch by batch."""
    layer = others[0].layer
    tokens, sae = others[0].tokens, others[0].sae
    if sae is not None and sae.config.pool:
        raise CircuitError(f"SAE {others[0].source} reads one pooled row per image; a circuit through it needs an "
                           "SAE trained on positions")
    mean = ref.means[layer].to(model.device)
    alphas = torch.cat([torch.zeros(1), (torch.arange(steps) + 0.5) / steps])  # the reference, then midpoints
    chunk = max(1, batch_size // len(alphas))

    def measure(images: torch.Tensor) -> _Measured:
        contributions, values, baselines, errors, grad_norms = [], [], [], [], []
        for part in images.split(chunk):
            part = part.to(model.device)
            with capture(model, [layer, unit.layer]) as cap, torch.no_grad():
                clean = cap.run(part)
            act = clean[layer]
            values.append(unit.activation(clean).float())
            n, a = len(part), alphas.to(act.device).view(-1, 1, 1)
            like = act.repeat(len(alphas), *([1] * (act.ndim - 1)))
            rows, start_rows = tokens.rows(act), tokens.rows(mean.expand_as(act))
            if sae is None:  # the path runs through the layer's own channels
                starts, deltas = [start_rows], [rows - start_rows]
            else:  # through the SAE's codes, and its reconstruction error as a node of its own
                codes, start_codes = sae.encode(rows), sae.encode(start_rows)
                starts = [start_codes, start_rows - sae.decode(start_codes)]
                deltas = [codes - start_codes, rows - sae.decode(codes) - starts[1]]
            leaves = [(s.unsqueeze(0) + a * d.unsqueeze(0)).reshape(-1, d.shape[-1]).requires_grad_()
                      for s, d in zip(starts, deltas)]

            def rows_of(path: list[torch.Tensor]) -> torch.Tensor:
                return path[0] if sae is None else sae.decode(path[0]) + path[1]

            def along_path(_out: torch.Tensor, leaves=leaves, like=like) -> torch.Tensor:
                return tokens.from_rows(rows_of(leaves), like)

            with capture(model, [unit.layer], edits={layer: along_path}) as cap, torch.enable_grad():
                value = unit.activation(cap.run(part.repeat(len(alphas), 1, 1, 1))).view(len(alphas), n)
                grads = torch.autograd.grad(value[1:].sum(), leaves)
            baselines.append(value[0].detach().float())
            per_step = [g.view(len(alphas), -1, g.shape[-1])[1:].mean(0) for g in grads]  # (n*S, width)
            attribution = [(d * g).view(n, -1, d.shape[-1]).sum(1) for d, g in zip(deltas, per_step)]
            contributions.append(attribution[0].float())
            grad_norms.append(per_step[0].view(n, -1, per_step[0].shape[-1]).norm(dim=1).float())
            if sae is not None:
                errors.append(attribution[1].sum(1).float())
        return _Measured(torch.cat(contributions).cpu().mean(0), float(torch.cat(values).mean()),
                         float(torch.cat(baselines).mean()), float(torch.cat(errors).mean()) if errors else None,
                         torch.cat(grad_norms).mean(0).cpu())

    return measure


def _downstream(model: Model, unit: Unit, others: list[Unit], ref: Reference,
                batch_size: int) -> Callable[[torch.Tensor], _Measured]:
    """Each later unit's value minus its value with `unit` mean-ablated, batch by batch."""
    mean = ref.means[unit.layer].to(model.device)

    def ablate(act: torch.Tensor) -> torch.Tensor:
        return hold(act, [unit], mean)

    layers = sorted({u.layer for u in others})

    def measure(images: torch.Tensor) -> _Measured:
        effects, values = [], []
        for part in images.split(batch_size):
            part = part.to(model.device)
            with torch.no_grad():
                with capture(model, layers + [unit.layer]) as cap:
                    acts = cap.run(part)
                clean = unit_peaks(others, acts, reduce="mean")[0]
                with capture(model, layers, edits={unit.layer: ablate}) as cap:
                    ablated = unit_peaks(others, cap.run(part), reduce="mean")[0]
            effects.append((clean - ablated).float().cpu())
            values.append(unit.activation(acts).float().cpu())
        return _Measured(torch.cat(effects).mean(0), float(torch.cat(values).mean()), None, None)

    return measure


def ablate_upstream(model: Model, unit: Unit, others: Sequence[Unit], mean: torch.Tensor,
                    images: torch.Tensor, batch_size: int = 64) -> float:
    """The unit's mean value on `images` with every unit of `others` (channels or SAE features of
    one earlier layer) set to its reference at once: what is left without them."""
    if not others:
        with capture(model, [unit.layer]) as cap, torch.no_grad():
            return float(torch.cat([unit.activation(cap.run(p.to(model.device))) for p in images.split(batch_size)]
                                   ).mean())
    layer = others[0].layer

    def edit(act: torch.Tensor) -> torch.Tensor:
        return hold(act, others, mean)

    values = []
    with capture(model, [unit.layer], edits={layer: edit}) as cap, torch.no_grad():
        for part in images.split(batch_size):
            values.append(unit.activation(cap.run(part.to(model.device))).float())
    return float(torch.cat(values).mean())


def expanded_weights(model: Model, unit: str | Unit, upstream: str, *, saes: SAEs | None = None,
                     tolerance: float = 1e-3) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Where `upstream` reaches `unit`'s layer through a linear path (conv, BN, linear, pooling; no
    nonlinearity), the expanded weights from each upstream channel to the unit's channel at the
    centre of its grid, as small spatial kernels ({upstream unit: (kh, kw)}); else None and why.
    Linearity is measured, not assumed: the map must add up (f(a+b) = f(a) + f(b) - f(0))."""
    unit = parse_unit(unit, model, saes) if isinstance(unit, str) else unit
    others = _end_units(model, upstream, saes)
    layer = others[0].layer
    if others[0].kind != "channel" or unit.kind not in ("channel", "neuron"):
        return None, "expanded weights join channels of two layers; SAE features, directions and logits have none"
    if not model.layer(layer).order < model.layer(unit.layer).order:
        return None, f"{layer} does not come before {unit.layer}"
    shape = model.layer(layer).shape
    if len(shape) != 3 or len(model.layer(unit.layer).shape) != 3:
        return None, "expanded weights are spatial kernels: both layers must be spatial"
    gen = torch.Generator().manual_seed(0)
    probe_image = torch.rand(1, 3, *model.input_size, generator=gen).to(model.device)
    tries = [torch.randn(1, *shape, generator=gen).to(model.device) for _ in range(2)]

    def through(a: torch.Tensor) -> torch.Tensor:
        with capture(model, [unit.layer], edits={layer: lambda _out: a}) as cap:
            return unit.view(cap.run(probe_image)[unit.layer])[:, unit.index]

    with torch.no_grad():
        zero = through(torch.zeros_like(tries[0]))
        gap = through(tries[0] + tries[1]) - through(tries[0]) - through(tries[1]) + zero
        scale = through(tries[0]).sub(zero).abs().max().clamp(min=1e-12)
    nonlinear = float(gap.abs().max() / scale)
    if nonlinear > tolerance:
        return None, (f"{layer} -> {unit.layer} is not linear (adding two inputs misses by {nonlinear:.0%} of the "
                      "response): a nonlinearity lies between; expanded weights need a linear path, e.g. the "
                      f"conv or batch norm right after {layer}")
    point = torch.zeros_like(tries[0]).requires_grad_()
    target = through(point)
    y, x = unit.position if unit.kind == "neuron" else (target.shape[-2] // 2, target.shape[-1] // 2)
    (jacobian,) = torch.autograd.grad(target[0, y, x], point)
    jacobian = jacobian[0].cpu()
    support = jacobian.abs().amax(0) > jacobian.abs().max() * 1e-6
    if not support.any():
        return None, f"{unit.name} does not depend on {layer}"
    rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    kernel = jacobian[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return {u.name: kernel[u.index] for u in others}, f"linear path {layer} -> {unit.layer}"


def ablation_curve(model: Model, found: Circuit, *, counts: Sequence[int] = (1, 2, 4, 8, 16),
                   random_draws: int = 5, batch_size: int = 64, seed: int = 0) -> dict[str, list[float]]:
    """Faithfulness of an upstream circuit: the share of the unit's mean value on the circuit's
    images kept when the top-m upstream units are mean-ablated, for m in `counts`, ranked three
    ways: by contribution, by the size of the unit's gradient per upstream unit (its linearised
    weight), and at random (mean of `random_draws`)."""
    if found.side != "upstream":
        raise CircuitError("ablation curves are for upstream circuits")
    unit, others = found.target, found.others
    images, mean = found.inputs, found.reference_mean

    def kept(chosen: list[int]) -> float:
        return ablate_upstream(model, unit, [others[i] for i in chosen], mean, images, batch_size)

    clean = kept([])
    rankings = {"contribution": found.contributions.argsort(descending=True).tolist(),
                "gradient norm": found.gradient_norm.argsort(descending=True).tolist()}
    gen = torch.Generator().manual_seed(seed)
    draws = [torch.randperm(len(others), generator=gen).tolist() for _ in range(random_draws)]
    curves: dict[str, list[float]] = {"count": list(counts), "clean": [clean]}
    for name, ranking in rankings.items():
        curves[name] = [kept(ranking[:m]) / clean for m in counts]
    curves["random"] = [sum(kept(draw[:m]) for draw in draws) / (len(draws) * clean) for m in counts]
    return curves
