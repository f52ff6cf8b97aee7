"""A browsable atlas of a whole model, after OpenAI Microscope and the Distill circuits thread: a
static site (plain HTML, one CSS file, thumbnails; it opens from disk) of chosen layers, with each
unit's renders, top and bottom examples, the probe's verdict against concepts, what feeds it from
the previous chosen layer (per concept, for the units that answer to several) and what it pushes
in the next one.

Every stage keeps its work in `OUT/cache` under keys made of what it depends on (the example
indexes, the render cache, the atlases, a file per unit's circuits), so a second run redoes only
what is new (a layer added, another SAE) and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..circuit.run import Circuit, CircuitError, circuit, reference
from ..errors import VizneuronError
from ..gallery import safe_name
from ..imageio import write_atomic
from ..mine.index import ExampleIndex, connect, read_meta
from ..mine.run import mine
from ..models.base import OUTPUT_LAYER, Model
from ..optim.cache import RenderCache
from ..optim.config import RenderConfig
from ..probe.atlas import Atlas, atlas_key, cached_atlas, layer_atlas
from ..probe.concepts import as_concepts, build_concepts
from ..sae.model import SAE, load_sae
from ..sources import as_source
from ..units import parse_units
from .pages import write_pages

RENDER_CHUNK = 32  # units per render cache entry: an interrupted run loses at most one chunk
CIRCUITS_VERSION = 2  # bump when what a unit's circuits file holds changes, so old files are measured again
EDGES = 8  # edges kept per circuit
SITE_RENDER = RenderConfig(samples=2)  # two diverse samples per unit


class SiteError(VizneuronError):
    """A site that cannot be built as asked (no layers, no concepts, an SAE of a layer not chosen)."""


@dataclass
class SiteLayer:
    """One chosen layer (or one SAE's features of a layer) as the site lays it out."""

    name: str  # the layer, or LAYER/SAE for an SAE's features
    spec: str  # the unit spec of all its units
    units: list[str]
    atlas: Atlas
    index: Path


@dataclass
class SiteResult:
    """What `site` built and what it had to compute: `work` counts the pieces made in this run
    (0 everywhere on a rerun with nothing changed), `seconds` the time per stage."""

    out: Path
    layers: list[str]
    units: int
    work: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    pages: int = 0  # pages of the site
    bytes: int = 0  # bytes written in this run

    @property
    def home(self) -> Path:
        return self.out / "index.html"


def site(model: Model, layers: str | Sequence[str], data: Any, *, out: str | Path,
         concepts: dict[str, Any] | None = None, saes: dict[str, str | Path] | None = None, k: int = 16,
         renders: RenderConfig | None = None, engine: Any = "local", progress: bool = True,
         on_stage: Callable[[str], None] | None = None) -> SiteResult:
    """Build the site of `model`'s `layers` (names, or a comma-separated string) over the images of
    `data` into `out`. `concepts` (name -> images, as the probe takes them; default: the classes
    of a labelled `data`) decide the verdicts; `saes` (layer -> SAE file) add each SAE's features
    as a layer of their own, linked from the channels they carry. `k`: examples kept per unit.
    `renders`: how units are rendered (default two diverse samples at the render defaults).
    `engine`: "local" or "ray" for mining and rendering. `on_stage(name)` as each stage starts."""
    names = [layer.strip() for layer in (layers.split(",") if isinstance(layers, str) else layers) if layer.strip()]
    if not names:
        raise SiteError("name at least one layer (e.g. layers='layer2,layer3')")
    chosen = [model.resolve_layer(name) for name in names]
    chosen.sort(key=lambda layer: model.layer(layer).order)
    loaded = _saes(model, chosen, saes or {})
    sources = as_concepts(concepts) if concepts else build_concepts(model, data=data)
    if not sources:
        raise SiteError("the verdicts need concepts: give concepts= (name -> images) or labelled data= "
                        "(class folders)")
    as_source(data)  # an empty or unreadable folder is refused before any work
    out = Path(out)
    cache = out / "cache"
    result = SiteResult(out, [], 0)

    def stage(name: str) -> float:
        if on_stage is not None:
            on_stage(name)
        return time.perf_counter()

    def done(name: str, started: float) -> None:
        result.seconds[name] = round(result.seconds.get(name, 0.0) + time.perf_counter() - started, 3)

    site_layers: list[SiteLayer] = []
    for layer in chosen:
        entries = [(layer, f"{layer}:*", None, None)] + [
            (f"{layer}/{name}", f"{layer}/{name}:*", name, sae) for name, sae in loaded.get(layer, {}).items()]
        for shown, spec, sae_name, sae in entries:
            named = {sae_name: sae} if sae is not None else None
            started = stage("mine")
            index_file = cache / "indexes" / f"{safe_name(shown)}.sqlite"
            if not _complete(index_file):
                result.work["mine"] = result.work.get("mine", 0) + 1
            mine(model, spec, data, k=k, index=index_file, saes=named, engine=engine, progress=progress).db.close()
            done("mine", started)
            started = stage("probe")
            atlas = cached_atlas(atlas_key(model, layer, sources, sae), cache / "atlases")
            if atlas is None:
                result.work["probe"] = result.work.get("probe", 0) + 1
                atlas = layer_atlas(model, layer, sources, sae=sae, sae_name=sae_name, folder=cache / "atlases",
                                    progress=False)
            done("probe", started)
            units = [u.name for u in parse_units(spec, model, named)]
            site_layers.append(SiteLayer(shown, spec, units, atlas, index_file))
    result.layers = [entry.name for entry in site_layers]
    result.units = sum(len(entry.units) for entry in site_layers)

    started = stage("render")
    pictures = _renders(model, site_layers, loaded, cache / "renders", renders or SITE_RENDER, engine, progress,
                        result.work)
    done("render", started)

    started = stage("circuit")
    circuits = _circuits(model, site_layers, chosen, data, sources, cache / "circuits", result.work)
    done("circuit", started)

    started = stage("pages")
    result.pages, result.bytes = write_pages(model, site_layers, pictures, circuits, loaded, out,
                                             _commands(model, chosen, data, saes or {}, k))
    done("pages", started)
    return result


def _saes(model: Model, chosen: list[str], saes: dict[str, str | Path]) -> dict[str, dict[str, SAE]]:
    """layer -> {name: SAE}, each SAE named after its file."""
    loaded: dict[str, dict[str, SAE]] = {}
    for layer, path in saes.items():
        resolved = model.resolve_layer(layer)
        if resolved not in chosen:
            raise SiteError(f"an SAE of {resolved} was given, but {resolved} is not one of the site's layers "
                            f"({', '.join(chosen)})")
        sae = load_sae(path, d_in=model.layer(resolved).channels).to(model.device)
        loaded.setdefault(resolved, {})[safe_name(Path(path).stem)] = sae
    return loaded


def _complete(index_file: Path) -> bool:
    if not index_file.is_file() or not index_file.stat().st_size:
        return False
    db = connect(index_file)
    try:
        return bool(read_meta(db).get("complete"))
    finally:
        db.close()


def _renders(model: Model, site_layers: list[SiteLayer], saes: dict[str, dict[str, SAE]], folder: Path,
             config: RenderConfig, engine: Any, progress: bool, work: dict[str, int]) -> dict[str, list]:
    """unit -> its rendered samples as (3, H, W) tensors, rendered RENDER_CHUNK units at a time
    through the render cache."""
    cache = RenderCache(folder)
    named = {name: sae for by_name in saes.values() for name, sae in by_name.items()}
    pictures: dict[str, list] = {}
    for entry in site_layers:
        for start in range(0, len(entry.units), RENDER_CHUNK):
            chunk = entry.units[start:start + RENDER_CHUNK]
            result = cache.get(model, chunk, config, saes=named)
            if result is None:
                work["render"] = work.get("render", 0) + len(chunk)
                result = cache.render(model, chunk, config, saes=named, engine=engine, progress=progress)
            for i, unit in enumerate(chunk):
                pictures[unit] = [result.images[i * result.samples + s] for s in range(result.samples)]
    return pictures


@dataclass
class UnitCircuits:
    """What feeds a unit from the previous chosen layer (overall, and per driving concept) and what
    it pushes in the next one (or the logits), as the pages show them."""

    upstream: str | None
    feeds: list[dict[str, Any]]
    paths: dict[str, list[dict[str, Any]]]
    downstream: str | None
    pushes: list[dict[str, Any]]
    classes: list[dict[str, Any]] = field(default_factory=list)  # the logits it pushes (also past a next layer)
    notes: list[str] = field(default_factory=list)


def _edges(found: Circuit) -> list[dict[str, Any]]:
    return [{"unit": e.unit, "contribution": round(e.contribution, 6), "share": round(e.share, 4)}
            for e in found.edges]


def _circuits(model: Model, site_layers: list[SiteLayer], chosen: list[str], data: Any,
              sources: dict[str, Any], folder: Path, work: dict[str, int]) -> dict[str, UnitCircuits]:
    """Each channel's circuits, one JSON file per unit under a key of what they depend on; one
    pass over `data` per layer end serves every unit of a layer."""
    found: dict[str, UnitCircuits] = {}
    description = json.dumps(as_source(data).describe(), sort_keys=True, default=str)
    for entry in site_layers:
        if "/" in entry.name:  # SAE features: their pages link the channels instead
            continue
        position = chosen.index(entry.name)
        upstream = chosen[position - 1] if position > 0 else None
        downstream = chosen[position + 1] if position + 1 < len(chosen) else OUTPUT_LAYER
        index = ExampleIndex(entry.index)
        shared: dict[str, Any] = {}
        judged = {e.unit: e for e in entry.atlas.entries}
        try:
            for unit in entry.units:
                atlas_entry = judged[unit]
                driving = atlas_entry.concepts if atlas_entry.verdict == "polysemantic" else []
                key = hashlib.sha256(json.dumps([CIRCUITS_VERSION, model.name, model.fingerprint, unit, upstream,
                                                 downstream, description, driving, EDGES]).encode()).hexdigest()[:24]
                path = folder / f"{key}.json"
                if path.is_file():
                    try:
                        found[unit] = UnitCircuits(**json.loads(path.read_text()))
                        continue
                    except (ValueError, TypeError):  # damaged: measured again below
                        pass
                work["circuit"] = work.get("circuit", 0) + 1
                found[unit] = _unit_circuits(model, unit, upstream, downstream, data, index, sources, driving, shared)
                write_atomic(path, json.dumps(asdict(found[unit])).encode())
        finally:
            index.db.close()
    return found


def _unit_circuits(model: Model, unit: str, upstream: str | None, downstream: str, data: Any, index: ExampleIndex,
                   sources: dict[str, Any], driving: list[str], shared: dict[str, Any]) -> UnitCircuits:
    parsed = parse_units(unit, model)[0]
    feeds, paths, pushes, classes, notes = [], {}, [], [], []
    ends = [("upstream", upstream), ("downstream", downstream)]
    if downstream != OUTPUT_LAYER:  # past the next chosen layer, the classes too
        ends.append(("downstream", OUTPUT_LAYER))
    for side, end in ends:
        if end is None:
            continue
        ref_layer = end if side == "upstream" else parsed.layer
        if ref_layer not in shared:  # one pass over the data per layer, shared by all its units
            shared[ref_layer] = reference(model, parsed, [ref_layer], data)
        try:
            measured = circuit(model, parsed, data=data, index=index, shared=shared[ref_layer], k=EDGES,
                               concepts={c: sources[c] for c in driving} if side == "upstream" else None,
                               **{side: end})
        except CircuitError as err:
            notes.append(f"{side}: {err}")
            continue
        if side == "upstream":
            feeds = _edges(measured)
            paths = {concept: [{"unit": e.unit, "contribution": round(e.contribution, 6)} for e in edges]
                     for concept, edges in measured.paths.items()}
        elif end == OUTPUT_LAYER:
            classes = _edges(measured)
        else:
            pushes = _edges(measured)
    if downstream == OUTPUT_LAYER:
        pushes = classes
    return UnitCircuits(upstream, feeds, paths, downstream, pushes, classes, notes)


def _commands(model: Model, chosen: list[str], data: Any, saes: dict[str, str | Path], k: int) -> dict[str, str]:
    """The commands that reproduce each part of a unit page (UNIT stands for the unit)."""
    spec, where = model.name, str(data)
    return {
        "site": f"vizneuron site {spec} --layers {','.join(chosen)} --data {where} --k {k}"
                + "".join(f" --sae {layer}={path}" for layer, path in saes.items()) + " --out SITE",
        "render": f"vizneuron render {spec} UNIT --samples 2",
        "mine": f"vizneuron mine {spec} UNIT --data {where} --k {k}",
        "probe": f"vizneuron probe {spec} UNIT --data {where}",
        "circuit": f"vizneuron circuit {spec} UNIT --upstream LAYER --data {where}",
    }


