"""Mining: stream a dataset through a model once, keep every unit's top and bottom images.

dataset -> DataLoader -> Model -> capture -> unit maps -> Tracker (top/bottom k, stats)
        -> checkpoint (SQLite transaction every few batches) -> examples with crops, heatmaps and
           thumbnails -> index.
A run killed at any moment and restarted with the same arguments resumes from its last checkpoint
and ends with exactly the result of an uninterrupted run; shards merge into the unsharded result.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..distributed import ActorPool, Job, RayEngine, as_engine
from ..errors import VizneuronError
from ..imageio import MAX_PIXELS, to_pil
from ..models.base import Model
from ..samples import SAMPLE_DIR, SAMPLE_K
from ..sources import ImageSource
from ..stream import ActivationStream, Batch, Workers, stream_batch
from ..units import SAEs, Unit, map_group, parse_units, unit_peaks
from ..version import __version__
from .fields import crop_box, effective_field, grid_of, heat_grid, heatmaps
from .index import (
    ExampleIndex,
    claim,
    connect,
    encode_image,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    write_results,
)
from .tracker import TIE_KEY, Tracker


@dataclass
class Group:
    """Units read together from one layer view; `columns` are their places in the unit order."""

    units: list[Unit]
    columns: slice
    grid: tuple[int, int] | None
    field: int | None = None


def mining_units(model: Model, spec: str | Sequence[str | Unit], saes: SAEs | None = None) -> list[Unit]:
    """`"layer2,layer3"` (all channels of each), unit specs (`"layer3:5; logit:tabby"`), or Units."""
    if isinstance(spec, str):
        spec = [part.strip() for part in spec.split(";") if part.strip()]
    units: list[Unit] = []
    for item in spec:
        if isinstance(item, Unit):
            units.append(item)
        elif ":" in item:
            units.extend(parse_units(item, model, saes))
        else:
            for layer in item.split(","):
                units.extend(parse_units(f"{layer.strip()}:*", model, saes))
    if not units:
        raise VizneuronError("nothing to mine: give layers (e.g. 'layer2,layer3') or unit specs")
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise VizneuronError(f"units repeat: {sorted({n for n in names if names.count(n) > 1})[:5]}")
    return units


def index_path(folder: str | Path, model: Model, data: str | Path, units: str, k: int, batch_size: int) -> Path:
    """Where a mining run's index goes when none is named: one file per model weights, data, units
    and settings, so the same run resumes into the same file and another run never mixes in."""
    key = repr((model.fingerprint, str(Path(data).resolve()), sorted(units.split(",")), k, batch_size))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    stem = "".join(ch if ch.isalnum() else "_" for ch in f"{model.name}_{Path(data).name}")[:60]
    return Path(folder) / f"{stem}_{digest}.sqlite"


SAMPLE_BATCH = 64  # the bundled sample's 300 images: the same batches (and index file) on every device


def sample_layers(model: Model) -> list[str]:
    """The layers the bundled sample is mined for by default: the model's top-level blocks."""
    return [name for name, info in model.layers.items() if "." not in name and info.channels]


def mine_sample(model: Model, units: str | Sequence[str | Unit] | None = None, folder: str | Path = "indexes", *,
                saes: SAEs | None = None, progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None) -> ExampleIndex:
    """The bundled image sample (300 CIFAR-10 test images) mined for `units` (default: every channel
    of the model's top-level layers) into an index under `folder`; a second call reuses it."""
    if units is None:
        units = ",".join(sample_layers(model))
    spec = units if isinstance(units, str) else ";".join(str(u) for u in units)
    path = index_path(folder, model, SAMPLE_DIR, spec, SAMPLE_K, SAMPLE_BATCH)
    return mine(model, units, SAMPLE_DIR, k=SAMPLE_K, index=path, batch_size=SAMPLE_BATCH, saes=saes,
                progress=progress, on_progress=on_progress)


def _groups(model: Model, units: list[Unit]) -> tuple[list[Unit], list[Group]]:
    """Units reordered so each map group is contiguous (first appearance order)."""
    by_key: dict[tuple, list[Unit]] = {}
    for unit in units:
        by_key.setdefault(map_group(unit), []).append(unit)
    ordered, groups = [], []
    for members in by_key.values():
        groups.append(Group(members, slice(len(ordered), len(ordered) + len(members)), grid_of(model, members[0])))
        ordered.extend(members)
    return ordered, groups


def mine(
    model: Model,
    units: str | Sequence[str | Unit],
    data: Any,
    *,
    k: int = 32,
    index: str | Path | None = None,
    batch_size: Batch = "auto",
    workers: Workers = "auto",
    shard: str | tuple[int, int] = (0, 1),
    reduce: str = "max",
    device: str | torch.device | None = None,
    autocast: bool = False,
    checkpoint_every: int = 8,
    max_pixels: int | None = MAX_PIXELS,
    saes: SAEs | None = None,
    engine: str | RayEngine | None = "local",
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExampleIndex:
    """Stream `data` through `model`; keep the top and bottom `k` images of every unit.

    `units`: layers (`"layer2,layer3"`: all their channels) and/or unit specs. `data`: a folder
    (class subfolders become labels), a text file of image paths, tar shards, or a torchvision dataset.
    `index`: SQLite file to write (and resume); None keeps it in memory. `reduce`: an image's value
    for a spatial unit is its maximum over positions ("max", as dataset examples usually are) or
    the mean ("mean", what `render` maximises). `batch_size` and `workers`: images per batch and
    decoding processes, "auto" from the device and its cores (`stream_batch`, `decode_workers`).
    `shard="I/N"` mines the I-th of N slices. `saes`:
    the SAEs `LAYER/NAME:F` unit specs name. `engine`: "local" (this process) or "ray" / a
    `RayEngine` (blocks of `checkpoint_every` batches spread over actors); both give the same index,
    and either resumes what the other left. `on_progress(done, total)`: images streamed so far.
    """
    if reduce not in ("max", "mean"):
        raise VizneuronError(f"reduce must be 'max' or 'mean', not {reduce!r}")
    if k < 1 or checkpoint_every < 1:
        raise VizneuronError("k and checkpoint_every must be positive")
    ray = as_engine(engine)
    if ray:
        ray.start()
    if device is not None:
        model.to(device)
    batch_size = stream_batch(model, batch_size)  # once, here: every engine's workers cut the same batches
    units_in_order, groups = _groups(model, mining_units(model, units, saes))
    grids = [group.grid for group in groups for _ in group.units]
    job = _MineBlock(model, units_in_order, data, batch_size, workers, shard, reduce, k, autocast, max_pixels, grids)
    stream = job.stream()
    source = stream.source
    part, parts = stream.shard
    meta = {
        "version": __version__, "model": model.name, "weights": model.fingerprint,
        "preprocessing": model.inputs.preprocessing(),
        "dataset": source.describe(), "units": [u.name for u in units_in_order], "k": k, "reduce": reduce,
        "shard": f"{part}/{parts}", "images": list(stream.span), "batch_size": stream.batch_size,
        "ties": TIE_KEY[reduce],
    }
    if index is not None and Path(index).is_file() and Path(index).stat().st_size:
        finished = connect(index)  # read-only: a finished index is checked and returned unchanged
        if read_meta(finished).get("complete"):
            claim(finished, meta, str(index))
            return ExampleIndex(finished, str(index))
        finished.close()
    db = connect(index if index is not None else ":memory:", write=True)
    pool = ray.pool() if ray else None  # one set of actors for both passes
    try:  # a failure (disk full, Ctrl-C, a killed driver) loses only the blocks not yet committed
        claim(db, meta, str(index))
        checkpoint = load_checkpoint(db)
        done, tracker = checkpoint if checkpoint else (set(), job.empty())
        every = (ray.block_batches if ray and ray.block_batches else checkpoint_every)
        blocks = [todo for start in range(0, len(stream), every)
                  if (todo := [i for i in range(start, min(start + every, len(stream))) if i not in done])]
        seen = sum(len(stream.batches[i]) for i in done)
        started = time.perf_counter()
        bar = tqdm(total=len(stream.ids), initial=seen, unit="img", disable=not progress,
                   desc=f"mining {len(units_in_order)} units" + (" on Ray" if ray else ""))
        results = (result for _, result in pool.run(job, blocks)) if pool else job.blocks(blocks)
        for block, block_tracker, notes in results:
            tracker = tracker.merge(block_tracker, k)
            done.update(block)
            save_checkpoint(db, done, tracker, notes)
            images = sum(len(stream.batches[i]) for i in block)
            seen += images
            bar.update(images)
            if on_progress is not None:
                on_progress(seen, len(stream.ids))
        bar.close()
        if not checkpoint and not blocks:
            save_checkpoint(db, [], tracker, [])
        streamed = time.perf_counter() - started
        _finalise(db, model, job, groups, tracker, pool, progress,
                  {"stream_seconds": round(streamed, 3), "stream_images": sum(len(stream.batches[i]) for b in blocks
                                                                             for i in b)})
        return ExampleIndex(db, None if index is None else str(index))
    except BaseException:
        db.close()
        raise
    finally:
        if pool:
            pool.close()


@dataclass
class _MineBlock(Job):
    """What one worker needs to mine any block of batches; the same object serves the local engine
    and is shipped to every Ray actor (its stream is opened where it runs)."""

    model: Model
    units: list[Unit]
    data: Any
    batch_size: Batch
    workers: Workers
    shard: str | tuple[int, int]
    reduce: str
    k: int
    autocast: bool
    max_pixels: int | None
    grids: list[tuple[int, int] | None]  # each unit's grid (None: a map of one value, no heatmap)
    _stream: ActivationStream | None = None

    @property
    def cells(self) -> int:
        """Heatmap cells kept per example: the largest of the units' pooled grids."""
        return max((math.prod(heat_grid(grid)) for grid in self.grids if grid is not None), default=0)

    def empty(self) -> Tracker:
        return Tracker.empty(len(self.units), self.cells)

    def stream(self) -> ActivationStream:
        if self._stream is None:
            self._stream = ActivationStream(self.model, sorted({u.layer for u in self.units}), self.data,
                                            batch_size=self.batch_size, workers=self.workers, shard=self.shard,
                                            autocast=self.autocast, max_pixels=self.max_pixels)
        return self._stream

    def __call__(self, block: list[int]) -> tuple[list[int], Tracker, list[tuple[int, str, str, str]]]:
        return next(self.blocks([block]))

    def blocks(self, blocks: list[list[int]]) -> Iterator[tuple[list[int], Tracker, list[tuple[int, str, str, str]]]]:
        """Each block's batches (one pass over them all) -> (block, its tracker, its file notes)."""
        for block, (tracker, notes) in self.stream().blocks(blocks, self._fold):
            yield block, tracker, notes

    def _fold(self, so_far: tuple[Tracker, list] | None, batch) -> tuple[Tracker, list[tuple[int, str, str, str]]]:
        tracker, notes = so_far or (self.empty(), [])
        if batch.activations:
            heat = torch.zeros(len(batch.ids), len(self.units), self.cells, dtype=torch.float16)
            tie = torch.zeros(len(batch.ids), len(self.units))

            def keep(columns: list[int], maps: torch.Tensor) -> None:
                """Each example's heatmap and second key (TIE_KEY), from the maps that rank it."""
                tie[:, columns] = (maps.mean(2) if self.reduce == "max" else maps.amax(2)).cpu()
                grid = self.grids[columns[0]]
                if grid is not None:
                    heat[:, columns, :math.prod(heat_grid(grid))] = heatmaps(maps, grid).half().cpu()

            values, where = unit_peaks(self.units, batch.activations, self.reduce, on_maps=keep)
            tracker = tracker.merge(Tracker.from_batch(values, where, batch.ids, heat, self.k, tie), self.k)
        source = self.stream().source
        return tracker, notes + [(i, source.key(i), action, reason) for i, action, reason in batch.notes]


DETAIL_BATCH = 64  # images per batch of the thumbnail pass, whichever engine runs it


def _finalise(db, model: Model, job: _MineBlock, groups: list[Group], tracker: Tracker, pool: ActorPool | None,
              progress: bool, timing: dict[str, float]) -> None:
    """Crops and heatmaps of every kept example from what the streaming pass kept (its position and
    pooled map), and thumbnails from one more read of those images only (no forward pass; spread
    over the actors on Ray)."""
    started = time.perf_counter()
    for group in groups:
        if group.grid is not None:
            with torch.enable_grad():
                group.field = effective_field(model, group.units[0], group.grid)
    group_of = {column: group for group in groups for column in range(group.columns.start, group.columns.stop)}
    details: dict[tuple[int, str, int], tuple] = {}
    for side in ("top", "bottom"):
        ids, where = getattr(tracker, f"{side}_id").tolist(), getattr(tracker, f"{side}_where").tolist()
        heat = getattr(tracker, f"{side}_heat")
        for column, (row, places) in enumerate(zip(ids, where)):
            group, unit = group_of[column], job.units[column]
            for rank, (image, flat) in enumerate(zip(row, places)):
                if group.grid is None:
                    details[(column, side, image)] = (*(unit.position or (None, None)), None, None, None)
                    continue
                position = divmod(flat, group.grid[1])
                box = crop_box(position, group.grid, group.field, model.input_size)
                cells = heat_grid(group.grid)
                details[(column, side, image)] = (*position, json.dumps(box),
                                                  heat[column, rank, :math.prod(cells)].numpy().tobytes(),
                                                  json.dumps(list(cells)))
    thumbnails = _Thumbnails(model, job.stream().source, sorted({image for _, _, image in details}))
    batches = len(thumbnails.stream())
    bar = tqdm(total=batches, unit="batch", disable=not progress, desc="thumbnails")
    images: dict[int, tuple[str, str | None, bytes]] = {}
    if pool:
        every = pool.engine.block_batches or 1
        blocks = [list(range(i, min(i + every, batches))) for i in range(0, batches, every)]
        results = (result for _, result in pool.run(thumbnails, blocks))
    else:
        results = (thumbnails([i]) for i in range(batches))
    for block_images, count in results:
        images.update(block_images)
        bar.update(count)
    bar.close()
    static = [(u.name, u.layer, u.kind, *(group_of[c].grid or (None, None)), group_of[c].field)
              for c, u in enumerate(job.units)]
    timing["finalise_seconds"] = round(time.perf_counter() - started, 3)
    write_results(db, static, tracker, details, images, {"timing": timing})


@dataclass
class _Thumbnails(Job):
    """The thumbnail pass over batches of the kept images: each read and prepared as the model
    takes it (the crop the boxes refer to), never run through the model."""

    model: Model
    source: ImageSource
    ids: list[int]
    _stream: ActivationStream | None = None

    def stream(self) -> ActivationStream:
        if self._stream is None:
            self._stream = ActivationStream(self.model, [], self.source, batch_size=DETAIL_BATCH, ids=self.ids)
        return self._stream

    def __call__(self, block: list[int]) -> tuple[dict[int, tuple[str, str | None, bytes]], int]:
        images = {}
        for ids, pictures, _, skips in self.stream().inputs(block):
            for image, picture, skipped in zip(ids.tolist(), pictures, skips):
                if not skipped:
                    images[image] = (self.source.key(image), self.source.label(image), encode_image(to_pil(picture)))
        return images, len(block)
