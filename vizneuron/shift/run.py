"""SHIFT for vision (after Marks et al. 2024, "Sparse Feature Circuits"): rank a layer's SAE features
(or its channels) by how much the classifier leans on them to get its training labels right,
judge each against concept sets with the probe, ablate the ones explained by a cue the classifier
should ignore, optionally retrain only the head with the edit in place, and measure the fix on
test images grouped by class x cue.

    result = vz.shift(model, "layer3", sae, "task/train-biased", concepts={"cue": ..., "cat": ..., "dog": ...},
                      test="task/test-balanced", cuefree="task/test-cuefree")
    result.table()        # balanced, worst-group and cue-free accuracy; how well the cue can still be read

Groups: an image's group is its class (the folder it sits in) plus, when its file name starts with
`WORD-`, that word (`cat/cue`, `dog/plain`); balanced accuracy is the mean over groups.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture
from ..edit import EditedModel, edit
from ..errors import VizneuronError
from ..models.base import OUTPUT_LAYER, Model
from ..probe.run import penultimate_layer, probe_units
from ..sae.model import SAE, load_sae
from ..sources import as_source
from ..stream import ActivationStream
from ..units import Unit, parse_units, unit_maps

SAE_NAME = "sae"  # the name the edit gives the SAE (`LAYER/sae:F`)
PROPOSE_Z = 0.5  # a unit is proposed when a concept to ignore moves it (up or down) by this many background stds
PROPOSE_MARGIN = 0.3  # from the task concepts' mean, and by this much more than the task concepts spread


class ShiftError(VizneuronError):
    """A SHIFT run that cannot start (no labels, no concept to ignore, an SAE of another layer)."""


@dataclass
class Candidate:
    """One unit the classifier leans on, with the evidence a person judges it by."""

    unit: str
    attribution: float  # mean over the training images of value x gradient of the label's margin
    verdict: str  # the probe's verdict against the concept sets
    concepts: list[str]  # the concepts that drive it
    z: dict[str, float]  # each concept's z-score in the probe
    top_examples: list[tuple[str, float]]  # its strongest concept images
    proposed: bool  # explained by a concept to ignore rather than by the task's concepts (`cue_driven`)
    chosen: bool = False  # ablated (proposed, or as a person accepted, dropped or added)


@dataclass
class Scores:
    """How a classifier does on the test groups."""

    groups: dict[str, float]  # group -> accuracy
    balanced: float  # mean over groups
    worst: float  # the worst group's accuracy
    cuefree: float | None  # accuracy on the cue-free split
    cue_readable: float | None  # held-out accuracy of a linear probe reading the cue from the penultimate features

    def row(self) -> dict[str, str]:
        def shown(v: float | None) -> str:
            return "-" if v is None else f"{v:.1%}"

        return {"balanced": shown(self.balanced), "worst group": shown(self.worst), "cue-free": shown(self.cuefree),
                "cue readable": shown(self.cue_readable)}


@dataclass
class ShiftResult:
    """What `shift` found and did: the ranked units with their evidence, what was ablated, the
    edited (and retrained) models and their scores."""

    layer: str
    units: str  # "SAE features" or "channels"
    ignore: list[str]
    candidates: list[Candidate]
    ablated: list[str]
    scores: dict[str, Scores]  # "original", "SHIFT", "SHIFT + retrain"
    edited: EditedModel
    retrained: EditedModel | None = None
    notes: list[str] = field(default_factory=list)

    def table(self) -> list[dict[str, str]]:
        return [{"model": name, **scores.row()} for name, scores in self.scores.items()]

    def group_table(self) -> list[dict[str, str]]:
        """`table` with each test group's accuracy beside it: what the CLI's page and the app show."""
        groups = sorted({g for s in self.scores.values() for g in s.groups})
        return [{**row, **{g: f"{scores.groups[g]:.1%}" if g in scores.groups else "-" for g in groups}}
                for row, scores in zip(self.table(), self.scores.values())]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "units": self.units, "ignore": self.ignore, "ablated": self.ablated,
                "candidates": [asdict(c) for c in self.candidates],
                "scores": {name: asdict(s) for name, s in self.scores.items()}, "notes": self.notes}


def group_of(key: str, label: str | None) -> str:
    """`cat/cue` for `.../cat/cue-00012.png`: the class, plus the file name's `WORD-` prefix if any."""
    stem = Path(key).name
    return f"{label}/{stem.split('-', 1)[0]}" if "-" in stem else str(label)


def _labels(model: Model, stream: ActivationStream) -> list[int | None]:
    return [model.class_index(stream.source.label(i)) for i in range(len(stream.source))]


def _margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The label's logit against all the others (log-odds of the right answer), per image."""
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return logits.gather(1, labels[:, None])[:, 0] - others.logsumexp(1)


def attributions(model: Model, units: Sequence[Unit], data: Any, *, batch_size: int = 64,
                 max_images: int | None = None) -> torch.Tensor:
    """Each unit's mean over labelled images of sum over positions of value x d(margin)/d(value):
    how much the unit helps the classifier to its labels (attribution patching to zero). Units are
    channels or SAE features of one layer."""
    layer = units[0].layer
    stream = ActivationStream(model, [layer], data, batch_size=batch_size, max_images=max_images)
    labels = _labels(model, stream)
    classes = {label for label in labels if label is not None}
    if len(classes) == 1:
        only = model.labels[classes.pop()] if model.labels else "one"
        raise ShiftError(f"every labelled image in {data} is of one class ({only}): SHIFT ranks units by how the "
                         "classifier separates classes; give training images of two or more")
    sae = units[0].sae
    if sae is not None:  # d(layer)/d(feature): each feature's decoded direction, (U, C)
        directions = sae.directions([u.index for u in units]).detach()
    total, count = torch.zeros(len(units), dtype=torch.float64), 0
    for ids, images, _, skips in stream.inputs():
        keep = [j for j, i in enumerate(ids.tolist()) if not skips[j] and labels[i] is not None]
        if not keep:
            continue
        target = torch.tensor([labels[i] for i in ids[keep].tolist()], device=model.device)
        held: dict[str, torch.Tensor] = {}

        def leaf(out: torch.Tensor, held: dict[str, torch.Tensor] = held) -> torch.Tensor:
            held["act"] = out.detach().requires_grad_()
            return held["act"]

        with capture(model, [layer], edits={layer: leaf}) as cap, torch.enable_grad():
            cap.run(images[keep].to(model.device))
            (grad,) = torch.autograd.grad(_margin(cap.output, target).sum(), held["act"])
        with torch.no_grad():
            act = held["act"].detach()
            values = unit_maps(units, act)  # (N, U, S)
            if sae is None:
                slopes = unit_maps(units, grad)
            else:
                rows = units[0].tokens.rows(grad)  # (N * S, C)
                slopes = (rows @ directions.T).reshape(len(keep), -1, len(units))
                slopes = (slopes.sum(1, keepdim=True) if sae.config.pool else slopes).transpose(1, 2)
            total += (values * slopes).sum(2).sum(0).double().cpu()
        count += len(keep)
    if count == 0:
        raise ShiftError(f"no image in {data} has a label {model.name} knows ({', '.join(model.labels or ())}): "
                         "put the images in folders named after the classes")
    return (total / count).float()


def evaluate(model: Model, test: Any, cuefree: Any = None, *, batch_size: int = 128,
             on_progress: Callable[[int, int], None] | None = None) -> Scores:
    """Accuracy per group of `test`, balanced and worst-group accuracy, accuracy on `cuefree`, and
    how well a linear probe reads the group's cue word (the file-name prefix) from the penultimate
    features (2-fold, on `test`). `on_progress(images done, images in all)` after each batch."""
    streams = [ActivationStream(model, [penultimate_layer(model)], data, batch_size=batch_size, full_pass=True)
               for data in ([test] if cuefree is None else [test, cuefree])]
    total, done = sum(len(s.ids) for s in streams), [0]

    def advance(images: int) -> None:
        done[0] += images
        if on_progress is not None:
            on_progress(done[0], total)

    groups, features, words = _predict(model, streams[0], advance)
    accuracy = {g: sum(v) / len(v) for g, v in sorted(groups.items())}
    free = None
    if cuefree is not None:
        free_groups, _, _ = _predict(model, streams[1], advance)
        hits = [h for v in free_groups.values() for h in v]
        free = sum(hits) / max(len(hits), 1)
    return Scores(accuracy, sum(accuracy.values()) / len(accuracy), min(accuracy.values()), free,
                  _readable(features, words))


def _predict(model: Model, stream: ActivationStream, advance: Callable[[int], None]):
    """Per group, whether each image's prediction is right; each image's penultimate features and cue word."""
    penultimate = stream.layers[0]
    labels = _labels(model, stream)
    groups: dict[str, list[bool]] = {}
    features, words = [], []
    for batch in stream:
        advance(batch.size)
        ids, logits, pooled = batch.ids.tolist(), batch.output, batch.activations.get(penultimate)
        for row, i in enumerate(ids):
            if labels[i] is None:
                continue
            key = stream.source.key(i)
            group = group_of(key, model.labels[labels[i]] if model.labels else str(labels[i]))
            groups.setdefault(group, []).append(bool(logits[row].argmax() == labels[i]))
            features.append(pooled[row].flatten())
            words.append(group.split("/", 1)[1] if "/" in group else "")
    if not groups:
        raise ShiftError(f"no image in {stream.source.describe().get('root', 'the test images')} has a label "
                         f"{model.name} knows: put them in folders named after the classes")
    return groups, features, words


def _readable(features: list[torch.Tensor], words: list[str]) -> float | None:
    """2-fold accuracy of a logistic probe reading the cue word from the features (None without two words)."""
    kinds = sorted(set(words))
    if len(kinds) != 2:
        return None
    x = torch.stack(features).float()
    y = torch.tensor([kinds.index(w) for w in words])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    folds = (order[: len(y) // 2], order[len(y) // 2:])
    hits = 0
    for train, held in (folds, folds[::-1]):
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        probe = fit_linear((x[train] - mean) / std, y[train], 2)
        hits += int((probe((x[held] - mean) / std).argmax(1) == y[held]).sum())
    return hits / len(y)


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, start: nn.Linear | None = None,
               weight_decay: float = 1e-3, steps: int = 200) -> nn.Linear:
    """A linear classifier fitted by L-BFGS on cross-entropy (+ L2), from `start` when given."""
    layer = copy.deepcopy(start).cpu() if start is not None else nn.Linear(x.shape[1], classes)
    layer = layer.float().requires_grad_(True)
    optimiser = torch.optim.LBFGS(layer.parameters(), lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = F.cross_entropy(layer(x), y) + weight_decay * layer.weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimiser.step(loss)
    return layer.requires_grad_(False)


def head_of(model: Model) -> str:
    """The module computing the logits from the penultimate features: the last `nn.Linear` whose
    output is the logits' width."""
    width = model.layer(OUTPUT_LAYER).channels
    heads = [name for name, module in model.module.named_modules()
             if isinstance(module, nn.Linear) and module.out_features == width]
    if not heads:
        raise ShiftError(f"{model.name} has no linear head to retrain (no nn.Linear with {width} outputs)")
    return heads[-1]


def retrain_head(edited: EditedModel, data: Any, *, batch_size: int = 128) -> EditedModel:
    """The edited model with only its head refitted on `data` (labelled by folder), the edit in place."""
    penultimate = penultimate_layer(edited)
    stream = ActivationStream(edited, [penultimate], data, batch_size=batch_size)
    labels = _labels(edited, stream)
    xs, ys = [], []
    for batch in stream:
        for row, i in enumerate(batch.ids.tolist()):
            if labels[i] is not None:
                xs.append(batch.activations[penultimate][row].flatten())
                ys.append(labels[i])
    name = head_of(edited)
    head = fit_linear(torch.stack(xs).float(), torch.tensor(ys), len(edited.labels or ()) or 2,
                      start=edited.module.get_submodule(name))
    return edited.with_weights({name: {k: v.detach().clone() for k, v in head.state_dict().items()}})


def cue_driven(z: dict[str, float], ignore: Sequence[str], *, z_min: float = PROPOSE_Z,
               margin: float = PROPOSE_MARGIN, up_only: bool = False) -> bool:
    """Whether a unit is explained by a concept to ignore rather than by the task's: that concept
    moves it away from the task concepts' mean z (up: the cue switches it on; down, unless
    `up_only`: it fires only where the cue is absent) by at least `z_min`, and by `margin` more
    than the task concepts differ among themselves (a class feature's spread)."""
    task = [v for c, v in z.items() if c not in ignore] or [0.0]
    centre, spread = sum(task) / len(task), max(task) - min(task)
    effect = max((z[c] - centre) if up_only else abs(z[c] - centre) for c in ignore)
    return effect >= z_min and effect >= spread + margin


@dataclass
class Ranking:
    """The units of a layer the classifier leans on, best first, each judged against the concepts:
    what a person reviews before an edit is made (`apply` makes it)."""

    layer: str
    units: str  # "SAE features" or "channels"
    ignore: list[str]  # the concepts the classifier should not use
    candidates: list[Candidate]
    sae: SAE | None  # whose features were ranked (None: the layer's channels)
    sae_file: str | None = None  # where that SAE was read from, so a saved edit can name it

    @property
    def proposed(self) -> list[str]:
        return [c.unit for c in self.candidates if c.proposed]


def rank(model: Model, layer: str, sae: SAE | str | Path | None, data: Any, concepts: dict[str, Any], *,
         ignore: Sequence[str] | None = None, top: int | None = None, batch_size: int = 64,
         max_images: int | None = None) -> Ranking:
    """Rank the units of `layer` (SAE features, or channels when `sae` is None) by how much `model`
    leans on them for the labels of `data` (at most `max_images` of its images), keep the `top` ones
    (default: every unit that helps, i.e. with a positive attribution), judge each with the probe
    against `concepts`, and propose those a concept in `ignore` (by default the concepts that are
    not class names) moves more than the task's concepts do (`cue_driven`). Nothing is edited."""
    if top is not None and top < 1:
        raise ShiftError(f"top must be at least 1 (the units to judge, best first), not {top}")
    ignore = list(ignore) if ignore is not None else [c for c in concepts if model.class_index(c) is None]
    if not ignore or any(c not in concepts for c in ignore):
        raise ShiftError("name the concept(s) the classifier should ignore (ignore=...), among the concepts given "
                         f"({', '.join(concepts)}); concepts named after classes count as the task's")
    loaded = sae if isinstance(sae, SAE) or sae is None else load_sae(sae)
    spec = f"{layer}/{SAE_NAME}:*" if loaded is not None else f"{layer}:*"
    units = parse_units(spec, model, {SAE_NAME: loaded} if loaded is not None else None)
    scores = attributions(model, units, data, batch_size=batch_size, max_images=max_images)
    ranked = [i for i in scores.argsort(descending=True)[:top].tolist() if top is not None or scores[i] > 0]
    reports = probe_units(model, [units[i] for i in ranked], concepts, batch_size=batch_size) if ranked else []
    candidates = []
    for i, report in zip(ranked, reports):
        best = max(report.evidence, key=lambda e: e.z)
        z = {e.name: e.z for e in report.evidence}
        candidates.append(Candidate(units[i].name, float(scores[i]), report.verdict, report.concepts,
                                    {c: round(v, 3) for c, v in z.items()}, best.top_examples, cue_driven(z, ignore)))
    return Ranking(units[0].layer, "SAE features" if loaded is not None else "channels", ignore, candidates, loaded,
                   None if sae is None or isinstance(sae, SAE) else str(sae))


def apply(model: Model, ranking: Ranking, data: Any, *, accept: Sequence[str] | None = None, drop: Sequence[str] = (),
          add: Sequence[str] = (), mode: str = "mean", test: Any = None, cuefree: Any = None, retrain: bool = True,
          batch_size: int = 64, max_images: int | None = None,
          on_progress: Callable[[str, int, int], None] | None = None) -> ShiftResult:
    """Ablate the units `ranking` proposes -- or `accept` instead, minus `drop`, plus `add` -- holding
    them at their mean over `data` (`mode="mean"`, measured best on the cue task; or at zero), with
    `retrain` refit the head on `data` with the edit in place, and score the original, the edit and
    the retrained edit on `test` and `cuefree`. `on_progress(model, images done, images in all)`
    while scoring."""
    chosen = ranking.proposed if accept is None else list(accept)
    chosen = [u for u in dict.fromkeys(chosen + list(add)) if u not in set(drop)]
    candidates = [replace(c, chosen=c.unit in chosen) for c in ranking.candidates]
    notes = [] if chosen else ["no unit was proposed or accepted: the edit changes nothing"]
    sae = ranking.sae_file or ranking.sae
    edited = edit(model, chosen, mode=mode, saes={SAE_NAME: sae} if sae is not None else None,
                  data=data if mode == "mean" else None, max_images=max_images)
    result = ShiftResult(ranking.layer, ranking.units, ranking.ignore, candidates, chosen, {}, edited, notes=notes)
    if retrain:
        result.retrained = retrain_head(edited, data)
    if test is not None:
        scored = {"original": model, "SHIFT": edited, "SHIFT + retrain": result.retrained}
        for name, scoring in scored.items():
            if scoring is not None:
                report = None if on_progress is None else lambda done, total, name=name: on_progress(name, done, total)
                result.scores[name] = evaluate(scoring, test, cuefree, on_progress=report)
    return result


def shift(model: Model, layer: str, sae: SAE | str | Path | None, data: Any, concepts: dict[str, Any], *,
          ignore: Sequence[str] | None = None, top: int | None = None, accept: Sequence[str] | None = None,
          drop: Sequence[str] = (), add: Sequence[str] = (), mode: str = "mean", test: Any = None,
          cuefree: Any = None, retrain: bool = True, batch_size: int = 64,
          max_images: int | None = None) -> ShiftResult:
    """SHIFT in one call: `rank` the units of `layer`, then `apply` the edit they propose (or `accept`,
    minus `drop`, plus `add`) and score it; the arguments are theirs. The test images are checked
    before the ranking starts (an empty folder is refused at once, not after the work)."""
    for images in (test, cuefree):
        if images is not None:
            as_source(images)
    ranking = rank(model, layer, sae, data, concepts, ignore=ignore, top=top, batch_size=batch_size,
                   max_images=max_images)
    return apply(model, ranking, data, accept=accept, drop=drop, add=add, mode=mode, test=test, cuefree=cuefree,
                 retrain=retrain, batch_size=batch_size, max_images=max_images)
