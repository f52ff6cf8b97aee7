"""Concepts: named sets of images (folders, path lists, or label groups of a labelled dataset).

Ready-made groups of ImageNet classes (ILSVRC indices, as the model's labels) cover the classic
questions: are cat faces and car fronts one concept? do snakes and ferrets share "sleekness"?
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VizneuronError
from ..models.base import Model
from ..sources import ImageSource, as_source

IMAGENET_GROUPS: dict[str, list[int]] = {
    "domestic cat": list(range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "big cat": list(range(286, 294)),  # cougar, lynx, leopard, snow leopard, jaguar, lion, tiger, cheetah
    "car": [407, 436, 468, 511, 609, 627, 656, 661, 717, 734, 751, 817],  # ambulance ... sports car
    "snake": list(range(52, 69)),  # thunder snake ... sidewinder
    "ferret-like": list(range(356, 361)),  # weasel, mink, polecat, black-footed ferret, otter
    "dog": list(range(151, 181)),  # Chihuahua ... (30 breeds)
    "bird": list(range(7, 25)),  # cock ... great grey owl
    "fish": list(range(0, 7)),  # tench ... stingray
    "boat": [472, 484, 510, 554, 576, 625, 724, 780, 814, 833, 871, 914],  # canoe ... yawl
}


class ConceptImages(ImageSource):
    """Some images of another source, under the source's own ids."""

    def __init__(self, source: ImageSource, ids: list[int], name: str) -> None:
        self.source, self.ids, self.name = source, ids, name

    def __len__(self) -> int:
        return len(self.ids)

    def key(self, i: int) -> str:
        return self.source.key(self.ids[i])

    def label(self, i: int) -> str | None:
        return self.source.label(self.ids[i])

    def read(self, i: int) -> tuple[np.ndarray, str | None]:
        return self.source.read(self.ids[i])

    def describe(self) -> dict[str, Any]:
        return {"kind": "concept", "name": self.name, "images": len(self), "of": self.source.describe()}


def label_groups(data: Any, groups: dict[str, list[str | int]], model: Model | None = None,
                 per_concept: int | None = None) -> dict[str, ConceptImages]:
    """Concepts from a labelled dataset: each concept is the images whose label is in its group.

    A group lists labels as the dataset has them (class folder names), or class indices /
    names of the `model`'s labels (for datasets labelled by index, e.g. ImageNet lists).
    `per_concept` keeps the first N images of each concept (in dataset order).
    """
    source = as_source(data)

    def canonical(value: str | int) -> str:
        """A label as an index string when it names one of the model's classes."""
        index = model.class_index(value) if model is not None and model.labels else None
        return str(index) if index is not None else str(value).strip().lower()

    wanted = {name: {canonical(v) for v in members} for name, members in groups.items()}
    image_labels = [None if label is None else canonical(label) for label in map(source.label, range(len(source)))]
    concepts = {}
    for name, members in wanted.items():
        ids = [i for i, label in enumerate(image_labels) if label in members][:per_concept]
        if not ids:
            raise VizneuronError(f"concept {name!r}: no image of {sorted(members)[:5]} in {source.describe()['root']}")
        concepts[name] = ConceptImages(source, ids, name)
    return concepts


def imagenet_concepts(data: Any, model: Model, names: list[str] | None = None) -> dict[str, ConceptImages]:
    """Ready-made ImageNet concept groups (`IMAGENET_GROUPS`) from a dataset labelled by class."""
    chosen = names or list(IMAGENET_GROUPS)
    unknown = [n for n in chosen if n not in IMAGENET_GROUPS]
    if unknown:
        raise VizneuronError(f"unknown concept groups {unknown}; ready-made: {', '.join(IMAGENET_GROUPS)}")
    return label_groups(data, {n: IMAGENET_GROUPS[n] for n in chosen}, model)


def parse_label_groups(spec: str, labels: Sequence[str] | None = None) -> dict[str, list[str | int]]:
    """`"cat, pets=cat+dog, snake"` -> groups: a label, NAME=LABEL+LABEL, or a ready-made ImageNet
    group name (`IMAGENET_GROUPS`, used when the model has the 1,000 ImageNet labels)."""
    groups: dict[str, list[str | int]] = {}
    for item in spec.replace("\n", ",").split(","):
        name, _, members = item.strip().partition("=")
        name = name.strip()
        if not name:
            continue
        if members:
            groups[name] = [m.strip() for m in members.split("+") if m.strip()]
        elif name in IMAGENET_GROUPS and labels and len(labels) == 1000:
            groups[name] = list(IMAGENET_GROUPS[name])
        else:
            groups[name] = [name]
    return groups


def parse_named_paths(lines: str | Sequence[str]) -> dict[str, str]:
    """`NAME=FOLDER_OR_LIST` items (a list, or one per line) -> {name: path}."""
    items = lines.splitlines() if isinstance(lines, str) else list(lines)
    named = {}
    for item in filter(str.strip, items):
        name, _, path = item.partition("=")
        if not name.strip() or not path.strip():
            raise VizneuronError(f"concept {item.strip()!r} must look like NAME=FOLDER_OR_LIST")
        named[name.strip()] = path.strip()
    return named


def default_groups(model: Model) -> str:
    """The label groups a probe starts from: each of a small label set (CIFAR-10), else the
    ready-made ImageNet groups."""
    if model.labels and len(model.labels) <= 20:
        return ", ".join(model.labels)
    return ", ".join(IMAGENET_GROUPS)


def build_concepts(model: Model, *, data: Any = None, groups: str | None = None, folders: dict[str, Any] | None = None,
                   per_concept: int | None = None) -> dict[str, ImageSource]:
    """The probe's concepts as the CLI and the app take them: label groups of a labelled dataset
    (`groups` as `parse_label_groups` reads it; with `data` and no groups, `default_groups`) and
    named folders, list files or datasets."""
    concepts: dict[str, ImageSource] = {}
    groups = default_groups(model) if groups is None and data is not None else (groups or "")
    if groups.strip():
        if data is None:
            raise VizneuronError("label-group concepts need a labelled dataset (class folders or a list file): "
                                 "give --data "
                             "(data= in the library)")
        concepts.update(label_groups(data, parse_label_groups(groups, model.labels), model, per_concept))
    concepts.update(as_concepts(folders or {}))
    return concepts


def as_concepts(concepts: dict[str, Any]) -> dict[str, ImageSource]:
    """Name -> folder, list file, dataset or ImageSource, as image sources."""
    out = {}
    for name, data in concepts.items():
        source = as_source(data)
        if len(source) == 0:
            raise VizneuronError(f"concept {name!r} has no images")
        out[name] = source
    return out


def concepts_key(concepts: dict[str, Any]) -> tuple:
    """What identifies a set of concepts: names and their images (paths as given, or each image's
    key), e.g. to keep a probe report while its inputs stay the same."""
    return tuple((name, str(data) if isinstance(data, (str, Path)) else tuple(data.key(i) for i in range(len(data))))
                 for name, data in sorted(concepts.items()))
