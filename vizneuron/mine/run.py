"""Mining: stream a dataset through a model once, keep every unit's top and bottom images.

dataset -> DataLoader -> Model -> capture -> unit maps -> Tracker (top/bottom k, stats)
        -> checkpoint (SQLite transaction every few batches) -> examples with crops, heatmaps and
           thumbnails -> index.
A run killed at any moment and restarted with the same arguments resumes from its last checkpoint
and ends with exactly the result of an uninterrupted run; shards merge into the unsharded result.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..capture import capture
from ..gallery import to_pil
from ..imageio import MAX_PIXELS
from ..models.base import Model
from ..units import Unit, map_group, parse_units, unit_maps, unit_peaks
from .fields import crop_box, effective_field, grid_of, heatmap
from .index import (ExampleIndex, IndexMismatch, claim, connect, encode_image, load_checkpoint, read_meta,
                    save_checkpoint, transaction)
from .sources import ImageSource, ModelInputs, as_source
from .tracker import Tracker


@dataclass
class Group:
    """Units read together from one layer view; `columns` are their places in the unit order."""

    units: list[Unit]
    columns: slice
    grid: tuple[int, int] | None
    field: int | None = None


def mining_units(model: Model, spec: str | Sequence[str | Unit]) -> list[Unit]:
    """`"layer2,layer3"` (all channels of each), unit specs (`"layer3:5; logit:tabby"`), or Units."""
    if isinstance(spec, str):
        spec = [part.strip() for part in spec.split(";") if part.strip()]
    units: list[Unit] = []
    for item in spec:
        if isinstance(item, Unit):
            units.append(item)
        elif ":" in item:
            units.extend(parse_units(item, model))
        else:
            for layer in item.split(","):
                units.extend(parse_units(f"{layer.strip()}:*", model))
    if not units:
        raise ValueError("nothing to mine: give layers (e.g. 'layer2,layer3') or unit specs")
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ValueError(f"units repeat: {sorted({n for n in names if names.count(n) > 1})[:5]}")
    return units


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


def _parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(shard, str):
        try:
            i, n = (int(v) for v in shard.split("/"))
        except ValueError:
            raise ValueError(f"shard {shard!r} must look like I/N, e.g. 0/4") from None
    else:
        i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: I must be in 0..{n - 1}")
    return i, n


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    ids, images, notes, skips = zip(*batch)
    return torch.tensor(ids), torch.stack(images), list(notes), list(skips)


def mine(
    model: Model,
    units: str | Sequence[str | Unit],
    data: Any,
    *,
    k: int = 32,
    index: str | Path | None = None,
    batch_size: int = 64,
    workers: int = 0,
    shard: str | tuple[int, int] = (0, 1),
    reduce: str = "max",
    device: str | torch.device | None = None,
    autocast: bool = False,
    checkpoint_every: int = 8,
    max_pixels: int | None = MAX_PIXELS,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExampleIndex:
    """Stream `data` through `model`; keep the top and bottom `k` images of every unit.

    `units`: layers (`"layer2,layer3"`: all their channels) and/or unit specs. `data`: a folder
    (class subfolders become labels), a text file of image paths, or a torchvision dataset.
    `index`: SQLite file to write (and resume); None keeps it in memory. `reduce`: an image's value
    for a spatial unit is its maximum over positions ("max", as dataset examples usually are) or
    the mean ("mean", what `render` maximises). `shard="I/N"` mines the I-th of N slices.
    `on_progress(done, total)`: called after each batch with the images streamed so far.
    """
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', not {reduce!r}")
    if k < 1 or batch_size < 1 or checkpoint_every < 1:
        raise ValueError("k, batch_size and checkpoint_every must be positive")
    if device is not None:
        model.to(device)
    units_in_order, groups = _groups(model, mining_units(model, units))
    source = as_source(data, max_pixels)
    part, parts = _parse_shard(shard)
    start, stop = part * len(source) // parts, (part + 1) * len(source) // parts
    db = connect(index if index is not None else ":memory:")
    meta = {
        "version": __version__, "model": model.name, "weights": model.fingerprint,
        "preprocessing": model.preprocessing(),
        "dataset": source.describe(), "units": [u.name for u in units_in_order], "k": k, "reduce": reduce,
        "shard": f"{part}/{parts}", "images": [start, stop], "batch_size": batch_size,
    }
    claim(db, meta, str(index))
    if read_meta(db).get("complete"):
        return ExampleIndex(db, None if index is None else str(index))

    checkpoint = load_checkpoint(db)
    done, tracker = checkpoint if checkpoint else (0, Tracker.empty(len(units_in_order)))
    ids = list(range(start, stop))
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    inputs = ModelInputs(source, model.input_size, model.crop_fraction)
    loader = torch.utils.data.DataLoader(inputs, batch_sampler=batches[done:], num_workers=workers,
                                         collate_fn=_collate)
    amp = (torch.autocast("cuda", dtype=torch.float16) if autocast and model.device.type == "cuda"
           else contextlib.nullcontext())
    notes: list[tuple[int, str, str, str]] = []
    layers = sorted({u.layer for u in units_in_order})
    started = time.perf_counter()
    bar = tqdm(total=len(ids), initial=min(done * batch_size, len(ids)), unit="img", disable=not progress,
               desc=f"mining {len(units_in_order)} units")
    with capture(model, layers) as cap, torch.no_grad():
        for number, (batch_ids, images, batch_notes, skips) in enumerate(loader, start=done + 1):
            ok = torch.tensor([not reason for reason in skips])
            if ok.any():
                with amp:
                    values, where = unit_peaks(units_in_order, cap.run(images[ok].to(model.device)), reduce)
                tracker = tracker.merge(Tracker.from_batch(values, where, batch_ids[ok]), k)
            for i, note, reason in zip(batch_ids.tolist(), batch_notes, skips):
                if note or reason:
                    notes.append((i, source.key(i), "skipped" if reason else "converted", reason or note))
            if number % checkpoint_every == 0 or number == len(batches):
                save_checkpoint(db, number, tracker, notes)
                notes = []
            bar.update(len(batch_ids))
            if on_progress is not None:
                on_progress(min(number * batch_size, len(ids)), len(ids))
    bar.close()
    if not batches:
        save_checkpoint(db, 0, tracker, [])
    streamed = time.perf_counter() - started
    _finalise(db, model, source, units_in_order, groups, tracker, progress,
              {"stream_seconds": round(streamed, 3), "stream_images": len(ids) - min(done * batch_size, len(ids))})
    return ExampleIndex(db, None if index is None else str(index))


def _finalise(db, model: Model, source: ImageSource, units: list[Unit], groups: list[Group], tracker: Tracker,
              progress: bool, timing: dict[str, float]) -> None:
    """Crops, heatmaps and thumbnails for every kept example (one more pass over those images only)."""
    started = time.perf_counter()
    for group in groups:
        if group.grid is not None:
            with torch.enable_grad():
                group.field = effective_field(model, group.units[0], group.grid)
    wanted: dict[int, list[tuple[int, str, int]]] = {}  # image -> [(unit column, side, rank)]
    for side in ("top", "bottom"):
        for column, row in enumerate(getattr(tracker, f"{side}_id").tolist()):
            for rank, image in enumerate(row):
                wanted.setdefault(image, []).append((column, side, rank))
    group_of = {column: group for group in groups for column in range(group.columns.start, group.columns.stop)}
    details: dict[tuple[int, str, int], tuple] = {}
    images: dict[int, tuple[str, str | None, bytes]] = {}
    inputs = ModelInputs(source, model.input_size, model.crop_fraction)
    order = sorted(wanted)
    layers = sorted({u.layer for u in units})
    with capture(model, layers) as cap, torch.no_grad():
        for start in tqdm(range(0, len(order), 64), disable=not progress, desc="crops and heatmaps"):
            chunk = [inputs[i] for i in order[start : start + 64]]
            batch = torch.stack([item[1] for item in chunk])
            acts = cap.run(batch.to(model.device))
            maps = {id(g): unit_maps(g.units, acts[g.units[0].layer]).float().cpu() for g in groups if g.grid}
            for b, (image, picture, _, _) in enumerate(chunk):
                images[image] = (source.key(image), source.label(image), encode_image(to_pil(picture)))
                for column, side, rank in wanted[image]:
                    group = group_of[column]
                    unit = units[column]
                    if group.grid is None:
                        details[(column, side, image)] = (*(unit.position or (None, None)), None, None, None)
                        continue
                    flat = int(getattr(tracker, f"{side}_where")[column, rank])
                    position = divmod(flat, group.grid[1])
                    box = crop_box(position, group.grid, group.field, model.input_size)
                    heat = heatmap(maps[id(group)][b, column - group.columns.start], group.grid)
                    details[(column, side, image)] = (*position, json.dumps(box),
                                                      heat.half().numpy().tobytes(), json.dumps(list(heat.shape)))
    static = [(u.name, u.layer, u.kind, *(group_of[c].grid or (None, None)), group_of[c].field)
              for c, u in enumerate(units)]
    timing["finalise_seconds"] = round(time.perf_counter() - started, 3)
    write_results(db, static, tracker, details, images, {"timing": timing})


def write_results(db, static: list[tuple], tracker: Tracker, details: dict[tuple[int, str, int], tuple],
                  images: dict[int, tuple[str, str | None, bytes]], extra: dict[str, Any] | None = None) -> None:
    """Units, examples and images of a finished run (or merge), and the `complete` mark, atomically."""
    unit_rows = []
    for column, row in enumerate(static):
        unit_rows.append((column, *row, int(tracker.count[column]), float(tracker.mean[column]),
                          float(tracker.std[column]), float(tracker.minimum[column]), float(tracker.maximum[column]),
                          float(tracker.active[column]) / max(int(tracker.count[column]), 1),
                          tracker.histogram[column].numpy().astype(np.int64).tobytes()))
    example_rows = []
    for side in ("top", "bottom"):
        values, ids = getattr(tracker, f"{side}_value"), getattr(tracker, f"{side}_id")
        for column in range(len(static)):
            for rank, (value, image) in enumerate(zip(values[column].tolist(), ids[column].tolist())):
                example_rows.append((column, side, rank, image, value, *details[(column, side, image)]))
    used = {row[3] for row in example_rows}
    with transaction(db):
        for table in ("units", "examples", "images"):
            db.execute(f"DELETE FROM {table}")
        db.executemany("INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", unit_rows)
        db.executemany("INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", example_rows)
        db.executemany("INSERT INTO images VALUES (?, ?, ?, ?)", [(i, *images[i]) for i in sorted(used)])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('mined', ?)", (json.dumps(int(tracker.count.max()) if static else 0),))
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in (extra or {}).items()])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('complete', 'true')")


def merge(output: str | Path, shards: Sequence[str | Path]) -> ExampleIndex:
    """Combine the finished indexes of shards 0/N..N-1/N into the index one unsharded run makes."""
    metas, dbs = [], []
    for path in shards:
        if not Path(path).exists():
            raise FileNotFoundError(f"shard index {path} not found")
        db = connect(path)
        meta = read_meta(db)
        if not meta.get("complete"):
            raise ValueError(f"{path} is not finished (shard {meta.get('shard')}): resume it before merging")
        metas.append(meta)
        dbs.append(db)
    same = [key for key in ("model", "weights", "preprocessing", "dataset", "units", "k", "reduce")
            if any(m.get(key) != metas[0].get(key) for m in metas)]
    if same:
        raise IndexMismatch(f"shards differ in {', '.join(same)}: they are not parts of one run")
    parts = {int(m["shard"].split("/")[1]) for m in metas}
    seen = sorted(int(m["shard"].split("/")[0]) for m in metas)
    if len(parts) != 1 or seen != list(range(parts.pop())):
        raise ValueError(f"need every shard 0..N-1 exactly once; got {[m['shard'] for m in metas]}")
    k = metas[0]["k"]
    tracker = load_checkpoint(dbs[0])[1]
    for db in dbs[1:]:
        tracker = tracker.merge(load_checkpoint(db)[1], k)
    details, images, notes = {}, {}, []
    for db in dbs:
        for column, side, image, *rest in db.execute(
                "SELECT unit, side, image, y, x, box, heatmap, heatmap_shape FROM examples"):
            details[(column, side, image)] = tuple(rest)
        for image, *rest in db.execute("SELECT id, path, label, thumbnail FROM images"):
            images[image] = tuple(rest)
        notes.extend(db.execute("SELECT image, path, action, reason FROM notes"))
    static = [row for row in dbs[0].execute("SELECT name, layer, kind, grid_h, grid_w, field FROM units ORDER BY id")]
    out = connect(output)
    meta = dict(metas[0], shard="0/1", images=[0, metas[0]["dataset"]["images"]])
    meta.pop("complete", None)
    meta.pop("mined", None)
    claim(out, meta, str(output))
    with transaction(out):
        out.executemany("INSERT OR REPLACE INTO notes VALUES (?, ?, ?, ?)", notes)
    save_checkpoint(out, 0, tracker, [])
    write_results(out, static, tracker, details, images)
    return ExampleIndex(out, str(output))
