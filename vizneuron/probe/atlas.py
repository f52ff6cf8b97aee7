"""The layer atlas: every unit of a layer (its channels, or an SAE's features) put through the
probe with the same concepts, from one pass over the concept images.

Each unit gets the probe's verdict, score and driving concepts. A unit that fires (peak above
zero) on fewer than `MIN_FIRING` of the concept images gets the verdict "rare" instead: the probe
cannot judge it, and it is counted on its own rather than dropped. An atlas is saved as JSON under
a key made of everything it depends on (model weights, layer, SAE file, concepts and their
images), so asking again with the same inputs reads it back instead of measuring again.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..choices import VERDICTS
from ..errors import VizneuronError
from ..imageio import write_atomic
from ..models.base import Model, weights_digest
from ..sae.model import SAE
from ..samples import SAMPLE_CLASSES, SAMPLE_DIR
from ..units import parse_units
from .concepts import as_concepts, concepts_key, label_groups
from .run import probe_units

ATLAS_VERSION = 2  # bump when the probe's measure changes, so old atlases are not reused
MIN_FIRING = 10  # concept images a unit must fire on for the probe to judge it


@dataclass
class AtlasEntry:
    unit: str
    verdict: str  # one of VERDICTS
    score: float  # the probe's: 0 one group of concepts carries the unit, ~0.5 two equal unrelated groups
    concepts: list[str]  # driving concepts, strongest group first
    groups: list[list[str]]
    firing: int  # concept images on which the unit fires
    z: dict[str, float] = field(default_factory=dict)  # each concept's z-score (the probe's evidence)


@dataclass
class Atlas:
    model: str
    layer: str
    sae: str | None  # the SAE whose features these are (its file name), None for the layer's channels
    concepts: list[str]
    images: int
    entries: list[AtlasEntry]
    key: str = ""
    version: int = ATLAS_VERSION
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many units got each verdict."""
        return {verdict: sum(e.verdict == verdict for e in self.entries) for verdict in VERDICTS}

    def fractions(self) -> dict[str, float]:
        """Share of each verdict among the units the probe could judge (all but "rare"), and the
        share of rare units among all."""
        counts = self.counts()
        judged = max(1, len(self.entries) - counts["rare"])
        shares = {verdict: counts[verdict] / judged for verdict in VERDICTS[:3]}
        return shares | {"rare": counts["rare"] / max(1, len(self.entries))}

    def select(self, driven_by: Sequence[str] = (), verdicts: Sequence[str] = ()) -> list[AtlasEntry]:
        """Units driven by every concept in `driven_by` (e.g. cat and automobile) and with one of
        `verdicts` (all when empty), most polysemantic first."""
        unknown = sorted(set(driven_by) - set(self.concepts))
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, self.concepts, n=2)]
            raise VizneuronError(f"no concept named {', '.join(map(repr, unknown))} in this atlas"
                             + (f" (closest: {', '.join(close)})" if close else "")
                             + f"; its concepts: {', '.join(self.concepts)}")
        unknown = sorted(set(verdicts) - set(VERDICTS))
        if unknown:
            raise VizneuronError(f"no verdict {', '.join(map(repr, unknown))}; verdicts: {', '.join(VERDICTS)}")
        wanted = set(driven_by)
        chosen = (e for e in self.entries if wanted <= set(e.concepts) and (not verdicts or e.verdict in verdicts))
        return sorted(chosen, key=lambda e: (-e.score, e.unit))

    def rows(self, entries: Sequence[AtlasEntry] | None = None) -> list[dict[str, Any]]:
        """Table rows (what the CLI writes and the app shows)."""
        return [{"unit": e.unit, "verdict": e.verdict, "score": round(e.score, 3),
                 "concepts": " + ".join("/".join(g) for g in e.groups) or "-", "fires on": e.firing}
                for e in (self.select() if entries is None else entries)]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        write_atomic(path, (json.dumps(asdict(self), indent=1) + "\n").encode())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Atlas:
        data = json.loads(Path(path).read_text())
        return cls(**{**data, "entries": [AtlasEntry(**e) for e in data["entries"]]})


def atlas_key(model: Model, layer: str, concepts: dict[str, Any], sae: SAE | None) -> str:
    """Everything an atlas depends on, hashed: a change to any of them makes a new atlas."""
    parts = [ATLAS_VERSION, MIN_FIRING, model.name, model.fingerprint, layer, repr(concepts_key(concepts)),
             None if sae is None else [weights_digest(sae), sae.config.kind, sae.config.k, sae.config.scale]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def layer_atlas(model: Model, layer: str, concepts: dict[str, Any], *, sae: SAE | None = None,
                sae_name: str | None = None, folder: str | Path | None = None, batch_size: int = 128,
                progress: bool = True, on_progress: Callable[[int, int], None] | None = None) -> Atlas:
    """The probe's verdict on every channel of `layer` (or, with `sae`, every feature of that SAE
    of the layer) over the same `concepts` (name -> images, as `probe` takes them). `folder`:
    where atlases are kept; one made from the same inputs is read back from there."""
    layer = model.resolve_layer(layer)
    sources = as_concepts(concepts)
    key = atlas_key(model, layer, sources, sae)
    found = cached_atlas(key, folder)
    if found is not None:
        return found
    name = sae_name or "sae"
    units = parse_units(f"{layer}/{name}:*" if sae is not None else f"{layer}:*", model,
                        {name: sae} if sae is not None else None)
    reports = probe_units(model, units, sources, examples=0, batch_size=batch_size, progress=progress,
                          on_progress=on_progress)
    images = sum(len(s) for s in sources.values())
    entries = []
    for report in reports:
        firing = sum(e.firing for e in report.evidence)
        verdict = "rare" if firing < MIN_FIRING else report.verdict
        entries.append(AtlasEntry(report.unit, verdict, round(report.score, 4), report.concepts, report.groups, firing,
                                  {e.name: round(e.z, 3) for e in report.evidence}))
    notes = sorted({w for r in reports for w in r.warnings})
    atlas = Atlas(model.name, layer, sae_name if sae is not None else None, list(sources), images, entries, key,
                  notes=notes)
    if folder is not None:
        atlas.save(Path(folder) / f"atlas_{key}.json")
    return atlas


def cached_atlas(key: str, folder: str | Path | None) -> Atlas | None:
    """The atlas saved under `key` (see `atlas_key`) in `folder`, if there is a readable one."""
    path = Path(folder) / f"atlas_{key}.json" if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        return Atlas.load(path)
    except (ValueError, TypeError, KeyError, OSError):  # damaged: the caller measures again and overwrites it
        return None


def sample_atlas(model: Model, layer: str, folder: str | Path | None = None) -> Atlas | None:
    """The atlas of `layer` over the bundled sample, its classes as the concepts, for a model that
    has those classes (the bundled CIFAR-10 models); None for any other. What a first look at a
    model starts from: the app opens on the unit it calls most polysemantic."""
    if not set(SAMPLE_CLASSES) <= set(model.labels or ()):
        return None
    concepts = label_groups(SAMPLE_DIR, {name: [name] for name in SAMPLE_CLASSES}, model)
    return layer_atlas(model, layer, concepts, folder=folder, progress=False)


def most_polysemantic(atlas: Atlas) -> list[AtlasEntry]:
    """The atlas's polysemantic units, highest score (most evenly split) first."""
    return sorted((e for e in atlas.entries if e.verdict == "polysemantic"), key=lambda e: -e.score)
