"""The polysemanticity probe: which concepts drive a unit, and are they one concept or several?

Measure (documented in the README, tested on planted units):
1. An image's value is the unit's peak (max over positions, as the miner ranks). A concept's
   *excess* is its mean value minus a baseline (the unit's mean over a mined dataset when an
   index is given, else the median over all concept images); its *top share* is the fraction of
   its images in the unit's top range (the highest 5 % of values, or the index's top-k).
2. A concept *drives* the unit by its mean (excess >= half the strongest concept's, and the
   strongest at least one standard deviation) or by its top range (top share >= twice the base
   rate, and its share above the base rate >= half the largest): the second catches units that
   fire hard on part of a concept.
3. Driving concepts are *related* when their mean penultimate features (the model's own
   representation just before the classifier, centred on all concept images) have cosine
   similarity >= 0.2; related concepts join one group.
4. A concept's weight is its excess relative to the strongest plus its top-range lift relative to
   the largest; score = 1 - (weight of the strongest group) / (weight of all driving concepts):
   0 when one group carries the unit, about 0.5 for two equal unrelated groups.
   Verdict: no driving concept -> unclear; one group -> monosemantic; several -> polysemantic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..capture import capture
from ..circuit.run import circuit
from ..errors import VizneuronError
from ..imageio import to_model_input
from ..models.base import OUTPUT_LAYER, Model
from ..optim.render import render
from ..sae.model import SAE, load_sae
from ..sources import ImageSource, JoinedSource
from ..stream import ActivationStream
from ..units import Unit, parse_unit, parse_units, unit_peaks
from .concepts import as_concepts

DRIVE_Z = 1.0
DRIVE_SHARE = 0.5
TOP_RANGE = 0.05  # the unit's top range: its highest 5 % of values
TOP_LIFT = 2.0  # a concept with at least twice the base rate of its images there drives the unit
RELATED_COSINE = 0.2
MIN_CONCEPT_IMAGES = 8  # fewer readable images than this: too few to judge a concept by


@dataclass
class ConceptEvidence:
    name: str
    images: int
    mean: float
    std: float
    z: float  # (mean - background mean) / background std
    top_fraction: float  # images above the background's top range (95th percentile or index top-k)
    drives: bool
    top_examples: list[tuple[str, float]]  # (image, value), best first
    firing: int = 0  # images on which the unit fired (value above zero)
    judged: bool = True  # False: fewer than MIN_CONCEPT_IMAGES images, left out of the verdict


@dataclass
class ProbeReport:
    unit: str
    verdict: str  # "monosemantic" | "polysemantic" | "unclear"
    score: float
    concepts: list[str]  # the concepts that drive the unit
    groups: list[list[str]]  # driving concepts, grouped by relatedness, strongest first
    evidence: list[ConceptEvidence]
    relatedness: dict[str, dict[str, float]]  # cosine similarity between concept means
    background: dict[str, float]
    renders: dict[str, Any] = field(default_factory=dict)
    sae_split: list[dict[str, Any]] = field(default_factory=list)
    example_clusters: list[dict[str, Any]] = field(default_factory=list)  # top examples grouped, no labels needed
    warnings: list[str] = field(default_factory=list)  # what makes the verdict less sure (e.g. tiny concepts)
    paths: dict[str, Any] = field(default_factory=dict)  # upstream layer, each driving concept's input path, agreement

    @property
    def summary(self) -> str:
        if self.verdict == "polysemantic":
            return f"polysemantic ({' + '.join('/'.join(g) for g in self.groups)})"
        if self.verdict == "monosemantic":
            return f"monosemantic ({'/'.join(self.groups[0])})"
        return "unclear (no concept drives it)" if not self.concepts else "unclear"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"summary": self.summary}

    def evidence_table(self) -> list[dict[str, Any]]:
        """One row per concept, most driving first (what the CLI prints and the app tabulates)."""
        return [{"concept": e.name, "images": e.images, "mean": round(e.mean, 4), "z": round(e.z, 2),
                 "top range": f"{e.top_fraction:.0%}", "drives": e.drives if e.judged else "too few images to judge"}
                for e in sorted(self.evidence, key=lambda e: -e.z)]

    def split_table(self) -> list[dict[str, Any]]:
        """One row per SAE feature of the split: its share of the unit, verdict and concepts."""
        return [{"feature": f["feature"], "share": f"{f['share']:.0%}", "verdict": f["verdict"],
                 "concepts": ", ".join(f["concepts"]) or "-"} for f in self.sae_split]

    def clusters_summary(self) -> str:
        """The top examples' groups in one line, with their labels when known."""
        def labels(group: dict[str, Any]) -> str:
            named = sorted(set(filter(None, group.get("labels", []))))
            return f" ({', '.join(named)})" if group.get("labels") else ""

        return "; ".join(f"group {i + 1}: {len(g['members'])} images{labels(g)}"
                         for i, g in enumerate(self.example_clusters))


def penultimate_layer(model: Model) -> str:
    """The representation the classifier reads: the last layer before the logits whose width is
    not the number of classes (e.g. `pool` of the bundled model, `avgpool` of a ResNet)."""
    classes = model.layer(OUTPUT_LAYER).channels
    candidates = [info for info in model.layers.values()
                  if info.shape is not None and info.name != OUTPUT_LAYER
                  and info.channels not in (classes, classes + 1)]
    if not candidates:
        raise VizneuronError(f"{model.name}: no layer before the logits to read penultimate features from")
    return max(candidates, key=lambda info: info.order).name


def measure(model: Model, units: Sequence[Unit], source: ImageSource, penultimate: str,
            batch_size: int = 128, on_batch: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's value for each unit (N, U) (peak over positions) and its penultimate vector.
    `on_batch(images)` is told each batch's size (for progress bars)."""
    values, features = [], []
    stream = ActivationStream(model, sorted({u.layer for u in units} | {penultimate}), source, batch_size=batch_size)
    for batch in stream:
        if batch.activations:
            values.append(unit_peaks(units, batch.activations)[0].cpu())
            features.append(_pooled(model, batch.activations[penultimate]))
        if on_batch is not None:
            on_batch(len(batch.ids))
    if not values:
        raise VizneuronError(f"no readable images in {source.describe().get('root', source)}")
    return torch.cat(values), torch.cat(features)


def _pooled(model: Model, act: torch.Tensor) -> torch.Tensor:
    """One vector per image: the layer's mean over positions (or its CLS token)."""
    return model.inputs.tokens.rows(act, pool=True).float().cpu()


def relatedness(features: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Cosine similarity between concepts' mean penultimate features (n_c, D), centred on all of them."""
    centre = torch.cat(list(features.values())).mean(0)
    names = list(features)
    means = torch.nn.functional.normalize(torch.stack([features[c].mean(0) - centre for c in names]), dim=1)
    table = (means @ means.T).tolist()
    return {a: {b: table[i][j] for j, b in enumerate(names)} for i, a in enumerate(names)}


def verdict_of(responses: dict[str, torch.Tensor], features: dict[str, torch.Tensor],
               background: tuple[float, float, float, float] | None = None,
               cosine: dict[str, dict[str, float]] | None = None) -> tuple[str, float, list[list[str]],
                                                                          list[ConceptEvidence], dict]:
    """The measure above, on per-concept values (n_c,) and penultimate features (n_c, D);
    `cosine`: their `relatedness`, when already computed (the same for every unit). A concept of
    fewer than MIN_CONCEPT_IMAGES images is measured and listed (`judged=False`) but cannot drive
    the unit, nor set the bar the others are held to."""
    pooled = torch.cat(list(responses.values()))
    if background is None:  # the median: robust to the few concepts that do drive the unit
        top = torch.quantile(pooled, 1 - TOP_RANGE).item()
        background = (pooled.median().item(), pooled.std().item(), top, (pooled > top).float().mean().item())
    mean, std, top, base = background
    std, base = max(std, 1e-8), max(base, 1e-8)
    excess = {c: max(v.mean().item() - mean, 0.0) for c, v in responses.items()}
    top_share = {c: (v > top).float().mean().item() for c, v in responses.items()}
    lift = {c: max(f - base, 0.0) for c, f in top_share.items()}  # top-range share above the base rate
    judged = {c for c, v in responses.items() if len(v) >= MIN_CONCEPT_IMAGES}
    strongest = max((excess[c] for c in judged), default=0.0)
    most_lifted = max((lift[c] for c in judged), default=0.0)
    evidence, driving, mass = [], [], {}
    for c, v in responses.items():
        z = (v.mean().item() - mean) / std
        by_mean = strongest / std >= DRIVE_Z and excess[c] > 0 and excess[c] >= DRIVE_SHARE * strongest
        by_top = top_share[c] >= TOP_LIFT * base and lift[c] >= DRIVE_SHARE * most_lifted
        drives = (by_mean or by_top) and c in judged
        if drives:
            driving.append(c)
        mass[c] = (excess[c] / strongest if strongest else 0.0) + (lift[c] / most_lifted if most_lifted else 0.0)
        evidence.append(ConceptEvidence(c, len(v), v.mean().item(), v.std().item() if len(v) > 1 else 0.0, z,
                                        top_share[c], drives, [], int((v > 0).sum()), c in judged))
    cosine = cosine if cosine is not None else relatedness(features)
    groups: list[list[str]] = []
    for c in sorted(driving, key=lambda c: -mass[c]):  # strongest first; join the first related group
        home = next((g for g in groups if any(cosine[c][m] >= RELATED_COSINE for m in g)), None)
        if home is None:
            groups.append([c])
        else:
            home.append(c)
    groups = _merge_linked(groups, cosine)
    masses = [sum(mass[c] for c in g) for g in groups]
    score = 1 - max(masses) / sum(masses) if groups and sum(masses) > 0 else 0.0
    verdict = "unclear" if not groups else "monosemantic" if len(groups) == 1 else "polysemantic"
    order = sorted(range(len(groups)), key=lambda i: -masses[i])
    return verdict, score, [groups[i] for i in order], evidence, cosine


def _merge_linked(groups: list[list[str]], cosine: dict) -> list[list[str]]:
    """Join groups that any related pair links (relatedness is transitive within a verdict)."""
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if any(cosine[a][b] >= RELATED_COSINE for a in groups[i] for b in groups[j]):
                    groups[i] += groups.pop(j)
                    merged = True
                    break
            if merged:
                break
    return groups


def probe_units(model: Model, units: str | Sequence[str | Unit], concepts: dict[str, Any], *, index=None,
                examples: int = 4, batch_size: int = 128, progress: bool = False,
                on_progress: Callable[[int, int], None] | None = None) -> list[ProbeReport]:
    """Verdicts for many units from one pass over the concept images (e.g. `"layer3:*"`), with a
    tqdm bar (`progress`) and/or `on_progress(images done, images in all)`."""
    unit_list = parse_units(units, model)
    if not unit_list:
        raise VizneuronError("no units to probe: name at least one")
    sources = _concept_sources(concepts)
    penultimate = penultimate_layer(model)
    total, done = sum(len(s) for s in sources.values()), 0
    bar = tqdm(total=total, unit="img", desc=f"probing {len(unit_list)} units", disable=not progress)

    def advance(images: int) -> None:
        nonlocal done
        done += images
        bar.update(images)
        if on_progress is not None:
            on_progress(done, total)

    measured = {c: measure(model, unit_list, s, penultimate, batch_size, advance) for c, s in sources.items()}
    bar.close()
    return _reports(unit_list, measured, sources, index, examples)


def _concept_sources(concepts: dict[str, Any]) -> dict[str, ImageSource]:
    if len(concepts) < 2:
        raise VizneuronError(f"the probe needs at least two concepts; got {len(concepts)} "
                             f"({', '.join(concepts) or 'none'})")
    sources = as_concepts(concepts)
    seen: dict[frozenset, str] = {}
    for name, source in sources.items():
        images = frozenset(source.key(i) for i in range(len(source)))
        if images in seen:
            raise VizneuronError(f"concepts {seen[images]!r} and {name!r} are the same {len(images)} images: give each "
                             "concept images of its own")
        seen[images] = name
    return sources


def _reports(unit_list: list[Unit], measured: dict, sources: dict[str, ImageSource], index,
             examples: int) -> list[ProbeReport]:
    features = {c: f for c, (_, f) in measured.items()}
    cosine = relatedness(features)
    reports = []
    for column, unit in enumerate(unit_list):
        responses = {c: v[:, column] for c, (v, _) in measured.items()}
        background = None
        if index is not None:
            stats = index.stats(unit.name)
            kept = index.examples(unit.name)
            background = (stats.mean, stats.std, kept[-1].value if kept else stats.max,
                          len(kept) / max(stats.count, 1))
        verdict, score, groups, evidence, _ = verdict_of(responses, features, background, cosine)
        for item in evidence if examples else ():  # the atlas asks for none: no sorting per unit
            values = responses[item.name]
            best = values.argsort(descending=True)[:examples].tolist()
            item.top_examples = [(sources[item.name].key(i), round(values[i].item(), 6)) for i in best]
        pooled = torch.cat(list(responses.values()))
        small = [f"concept {e.name!r} has {e.images} readable image{'s' if e.images != 1 else ''}: too few to judge "
                 f"(give it at least {MIN_CONCEPT_IMAGES}); left out of the verdict, its figures listed apart"
                 for e in evidence if not e.judged]
        reports.append(ProbeReport(
            unit.name, verdict, score, [c for g in groups for c in g], groups, evidence, cosine,
            {"mean": background[0] if background else pooled.median().item(),
             "std": background[1] if background else pooled.std().item(),
             "source": "index" if index is not None else "concept images (median)"}, warnings=small))
    return reports


def probe(model: Model, unit: str | Unit, concepts: dict[str, Any], *, index=None, sae: SAE | str | None = None,
          renders: int = 0, render_steps: int = 128, split_features: int = 3, examples: int = 4,
          batch_size: int = 128, seed: int = 0, upstream: str | None = None) -> ProbeReport:
    """Does `unit` fire on unrelated concepts? `concepts`: name -> folder, list file, dataset or
    image source (see `label_groups` / `imagenet_concepts`). `index`: an `ExampleIndex` of the
    unit, whose distribution becomes the baseline. `renders`: also render that many diverse images
    and say which concept each reads as. `sae`: an SAE (or its file) of the unit's layer: which
    features carry the unit on its driving images, each with its own verdict."""
    unit = parse_unit(unit, model) if isinstance(unit, str) else unit
    sources = _concept_sources(concepts)
    penultimate = penultimate_layer(model)
    measured = {c: measure(model, [unit], s, penultimate, batch_size) for c, s in sources.items()}
    (report,) = _reports([unit], measured, sources, index, examples)
    features = {c: f for c, (_, f) in measured.items()}
    if index is not None:
        report.example_clusters = cluster_examples(model, index, unit, penultimate)
    if renders:
        report.renders = _render_evidence(model, unit, features, renders, render_steps, penultimate, seed)
    if upstream is not None and report.concepts:
        found = circuit(model, unit, upstream=upstream, data=JoinedSource(list(sources.values())),
                        batch_size=batch_size,
                        concepts={c: sources[c] for c in report.concepts})
        data = found.to_dict()
        report.paths = {"upstream": found.layer, "by_concept": data["paths"], "agreement": data["path_agreement"]}
    if sae is not None:
        report.sae_split = _sae_split(model, unit, sae, sources, report.groups, features, penultimate,
                                      split_features, batch_size, render_steps if renders else 0)
    return report


def cluster_examples(model: Model, index, unit: Unit, penultimate: str, max_groups: int = 4) -> list[dict[str, Any]]:
    """The unit's top dataset examples grouped by the model's own penultimate features (k-means,
    k from 1 to `max_groups` chosen by silhouette): what the unit responds to, without labels."""
    examples = index.examples(unit.name)
    if len(examples) < 4:
        return [{"members": [e.path for e in examples], "mean_value": 0.0}] if examples else []
    images = torch.stack([to_model_input(np.asarray(index.thumbnail(e.image)), model.input_size) for e in examples])
    with capture(model, [penultimate]) as cap, torch.no_grad():
        points = torch.nn.functional.normalize(_pooled(model, cap.run(images.to(model.device))[penultimate]), dim=1)
    best, best_quality = torch.zeros(len(points), dtype=torch.long), 0.0
    for k in range(2, min(max_groups, len(points) - 1) + 1):
        labels = _kmeans(points, k)
        quality = _silhouette(points, labels)
        if quality > max(best_quality, 0.1):  # below 0.1 the split is noise: keep one group
            best, best_quality = labels, quality
    groups = []
    for g in best.unique().tolist():
        members = [e for e, label in zip(examples, best.tolist()) if label == g]
        groups.append({"members": [e.path for e in members], "labels": [e.label for e in members],
                       "mean_value": sum(e.value for e in members) / len(members)})
    return sorted(groups, key=lambda g: -g["mean_value"])


def _kmeans(points: torch.Tensor, k: int, iterations: int = 50) -> torch.Tensor:
    """Deterministic k-means (farthest-point start) on unit vectors."""
    centres = [points[0]]
    for _ in range(1, k):
        distance = torch.cdist(points, torch.stack(centres)).amin(1)
        centres.append(points[distance.argmax()])
    centres = torch.stack(centres)
    for _ in range(iterations):
        labels = torch.cdist(points, centres).argmin(1)
        centres = torch.stack([points[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
    return torch.cdist(points, centres).argmin(1)


def _silhouette(points: torch.Tensor, labels: torch.Tensor) -> float:
    distance = torch.cdist(points, points)
    scores = []
    for i in range(len(points)):
        same = labels == labels[i]
        if same.sum() < 2:
            scores.append(0.0)
            continue
        a = distance[i, same].sum() / (same.sum() - 1)
        b = min(distance[i, labels == j].mean() for j in labels.unique() if j != labels[i])
        scores.append(((b - a) / max(a, b)).item())
    return sum(scores) / len(scores)


def _render_evidence(model: Model, unit: Unit, features: dict[str, torch.Tensor], count: int, steps: int,
                     penultimate: str, seed: int) -> dict[str, Any]:
    """The classic test: diverse renders, each classified by the model and matched to a concept."""
    result = render(model, [unit], samples=count, steps=steps, seed=seed, progress=False)
    images = result.images.to(model.device)
    if model.inputs.fixed_size:
        images = torch.nn.functional.interpolate(images, size=model.input_size, mode="bilinear")
    with capture(model, [penultimate], stop_early=False) as cap, torch.no_grad():
        acts = cap.run(images)
        logits = cap.output.float().cpu()
        vectors = _pooled(model, acts[penultimate])
    centre = torch.cat(list(features.values())).mean(0)
    names = list(features)
    means = torch.stack([features[c].mean(0) - centre for c in names])
    nearest = torch.nn.functional.cosine_similarity((vectors - centre)[:, None], means[None], dim=2).argmax(1)
    labels = [model.labels[i] if model.labels else str(i) for i in logits.argmax(1).tolist()]
    reads = {}
    for c in nearest.tolist():
        reads[names[c]] = reads.get(names[c], 0) + 1
    text = ", ".join(f"{n} of {count} renders read as {c}" for c, n in sorted(reads.items(), key=lambda kv: -kv[1]))
    return {"images": result.images, "classified_as": labels, "nearest_concept": [names[c] for c in nearest.tolist()],
            "summary": text, "activations": result.activations.tolist()}


def _sae_split(model: Model, unit: Unit, sae, sources: dict[str, ImageSource], groups: list[list[str]],
               features_of: dict[str, torch.Tensor], penultimate: str, top: int, batch_size: int,
               render_steps: int) -> list[dict[str, Any]]:
    """Which SAE features carry the unit on its driving concepts' images, and what each responds to."""
    if unit.kind not in ("channel", "direction"):
        raise VizneuronError(f"the SAE split needs a channel or direction unit, not {unit.kind}")
    sae_module = load_sae(sae, d_in=model.layer(unit.layer).channels) if isinstance(sae, (str, Path)) else sae
    name = Path(sae).stem if isinstance(sae, (str, Path)) else "sae"
    weight = sae_module.W_dec[:, unit.index] if unit.kind == "channel" else sae_module.W_dec @ unit.direction.to(
        sae_module.W_dec)
    weight = weight / sae_module.config.scale
    features = parse_units(f"{unit.layer}/{name}:*", model, {name: sae_module})
    values = {c: measure(model, features, s, penultimate, batch_size)[0] for c, s in sources.items()}  # one pass
    driving = [c for g in groups for c in g] or list(sources)
    # feature value x its decoder weight into the unit, summed over the driving concepts' images
    contribution = sum((values[c] * weight.cpu()).clamp(min=0).sum(0) for c in driving)
    shares = contribution / contribution.sum().clamp(min=1e-12)
    chosen = shares.argsort(descending=True)[:top].tolist()
    units = [features[f] for f in chosen]
    measured = {c: (values[c][:, chosen], features_of[c]) for c in sources}
    pictures = None
    if render_steps:  # one render per feature, to show beside its verdict
        pictures = render(model, units, steps=render_steps, progress=False).images
    split = []
    for column, (f, report) in enumerate(zip(chosen, _reports(units, measured, sources, None, 4))):
        best = sorted((e for item in report.evidence for e in item.top_examples), key=lambda e: -e[1])[:4]
        split.append({"feature": report.unit, "share": round(shares[f].item(), 4), "verdict": report.verdict,
                      "score": round(report.score, 4), "concepts": report.concepts, "top_examples": best,
                      "render": None if pictures is None else pictures[column]})
    return split
