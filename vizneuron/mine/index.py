"""The dataset-example index: one SQLite file (WAL) that the CLI, galleries, probe and app read.

Tables: `meta` (model, preprocessing, dataset, units and settings, as JSON), `units` (summary
statistics), `examples` (top and bottom k per unit: value, position, crop box, heatmap), `images`
(what the model saw, as a thumbnail, so the app needs no original files), `notes` (files skipped or
converted, with the reason) and `state` (the resumable checkpoint). Every write is a transaction.
"""

from __future__ import annotations

import difflib
import io
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ..errors import UnknownNameError, VizneuronError
from ..imageio import heatmap_overlay
from .tracker import HISTOGRAM_EDGES, Tracker

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS notes(image INTEGER PRIMARY KEY, path TEXT, action TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS units(id INTEGER PRIMARY KEY, name TEXT UNIQUE, layer TEXT, kind TEXT,
    grid_h INTEGER, grid_w INTEGER, field INTEGER, count INTEGER, mean REAL, std REAL, min REAL,
    max REAL, active REAL, histogram BLOB);
CREATE TABLE IF NOT EXISTS images(id INTEGER PRIMARY KEY, path TEXT, label TEXT, thumbnail BLOB);
CREATE TABLE IF NOT EXISTS examples(unit INTEGER, side TEXT, rank INTEGER, image INTEGER, value REAL,
    y INTEGER, x INTEGER, box TEXT, heatmap BLOB, heatmap_shape TEXT, PRIMARY KEY(unit, side, rank));
"""
TABLES = ("meta", "state", "notes", "units", "images", "examples")
IDENTITY_KEYS = ("model", "weights", "preprocessing", "dataset", "units", "k", "reduce", "shard", "batch_size")


class IndexMismatch(VizneuronError):
    """An index made by another model, dataset or setting than the current run's."""


@dataclass(frozen=True)
class Example:
    rank: int
    image: int  # the image's id in its source
    path: str
    label: str | None
    value: float
    position: tuple[int, int] | None  # (y, x) of the unit's maximum on the layer's grid
    box: tuple[int, int, int, int] | None  # (top, left, bottom, right) crop in model-input pixels
    heatmap: np.ndarray | None  # the unit's response over the grid (downsampled to <= 16x16)


@dataclass(frozen=True)
class UnitStats:
    name: str
    layer: str
    kind: str
    count: int
    mean: float
    std: float
    min: float
    max: float
    active: float  # fraction of images where the unit's value is > 0
    histogram: np.ndarray  # counts over `edges` (bin i: edges[i-1] <= v < edges[i])
    edges: np.ndarray


class NotAnIndex(VizneuronError):
    """A file that is not a vizneuron index: never read as one, never written to."""


def connect(path: str | Path, *, write: bool = False) -> sqlite3.Connection:
    """An index database: read-only (SQLite's `mode=ro`, nothing written, not even a journal) unless
    `write`. A file holding tables of another program, or no SQLite at all, is refused untouched;
    writing needs a new file, an empty one, or an index."""
    # transactions are explicit; the app reads one cached index from several session threads
    # (sqlite3 serialises calls on a connection itself)
    options = {"isolation_level": None, "check_same_thread": False}
    if str(path) == ":memory:":
        db = sqlite3.connect(":memory:", **options)
        db.executescript(SCHEMA)
        return db
    path = Path(path)
    if path.is_dir():
        raise NotAnIndex(f"{path} is a folder, not an index file")
    if not path.exists() or path.stat().st_size == 0:
        if not write:
            raise FileNotFoundError(f"index {path} not found" if not path.exists() else f"index {path} is empty")
    else:
        reader = _open_read_only(path, options)
        if not write:
            return reader
        reader.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(str(path), **options)
        db.execute("PRAGMA journal_mode=WAL")  # while mining; a finished index goes back to one plain file
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
    except sqlite3.OperationalError as err:
        raise OSError(f"cannot write the index {path}: {err} (is its folder writable, with space left?)") from None
    return db


def _open_read_only(path: Path, options: dict) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
    try:
        tables = _tables(db, path)
    except sqlite3.OperationalError:  # a WAL index on storage where its -shm file cannot be made
        db = sqlite3.connect(f"{uri}?immutable=1", uri=True, **options)
        tables = _tables(db, path)
    foreign = sorted(tables - set(TABLES))
    if foreign:
        db.close()
        raise NotAnIndex(f"{path} is an SQLite database of another program (tables {', '.join(foreign[:5])}), not a "
                         "vizneuron index; it was not changed")
    return db


def _tables(db: sqlite3.Connection, path: Path) -> set[str]:
    try:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError:  # cannot open (e.g. WAL on read-only storage): the caller retries
        raise
    except sqlite3.DatabaseError:  # "file is not a database"
        raise NotAnIndex(f"{path} is not a vizneuron index (not an SQLite database, or damaged)") from None


class transaction:
    """`with transaction(db):` commits on success and rolls back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:  # e.g. the disk filled up: undo, so no lock is left behind
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


def read_meta(db: sqlite3.Connection) -> dict[str, Any]:
    """The index's settings; {} for a new (or empty) file."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
        return {}
    return {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}


def claim(db: sqlite3.Connection, meta: dict[str, Any], where: str) -> None:
    """Record `meta` in a new index, or check that an existing one was made the same way."""
    existing = read_meta(db)
    if not existing:
        with transaction(db):
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        return
    differ = [key for key in IDENTITY_KEYS if existing.get(key) != meta.get(key)]
    if differ:
        details = "; ".join(f"{key}: index has {_short(existing.get(key))}, this run {_short(meta.get(key))}"
                            for key in differ)
        raise IndexMismatch(f"{where} holds results of a different run ({details}). "
                            "Use another index path, or delete this one to start over.")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 120 else text[:117] + "..."


def save_checkpoint(db: sqlite3.Connection, done: Iterable[int], tracker: Tracker,
                    notes: list[tuple[int, str, str, str]]) -> None:
    """Atomically: the tracker over the batches numbered `done` (0-based, in any order: distributed
    workers finish blocks out of order) and the notes of those batches."""
    with transaction(db):
        db.executemany("INSERT OR REPLACE INTO notes VALUES (?, ?, ?, ?)", notes)
        db.execute("INSERT OR REPLACE INTO state VALUES ('tracker', ?)", (save_tensors(tracker.state()),))
        db.execute("INSERT OR REPLACE INTO state VALUES ('done', ?)", (json.dumps(_ranges(done)).encode(),))


def load_checkpoint(db: sqlite3.Connection, strict: bool = True) -> tuple[set[int], Tracker] | None:
    """The batches done so far and the tracker over them; None before the first checkpoint.
    `strict`: refuse a tracker an older vizneuron wrote (`Tracker.from_state`)."""
    rows = dict(db.execute("SELECT key, value FROM state"))
    if "tracker" not in rows:
        return None
    done = {i for start, stop in json.loads(rows["done"].decode()) for i in range(start, stop)}
    return done, Tracker.from_state(load_tensors(rows["tracker"]), strict)


def _ranges(numbers: Iterable[int]) -> list[list[int]]:
    """Sorted numbers as [start, stop) runs: a million batches done in order is one pair."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and runs[-1][1] == n:
            runs[-1][1] = n + 1
        else:
            runs.append([n, n + 1])
    return runs


def encode_image(image: Image.Image) -> bytes:
    """Small images as PNG (exact), larger ones as JPEG (compact)."""
    buffer = io.BytesIO()
    if max(image.size) <= 64:
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


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
        db.execute("INSERT OR REPLACE INTO meta VALUES ('mined', ?)",
                   (json.dumps(int(tracker.count.max()) if static else 0),))
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       [(k, json.dumps(v)) for k, v in (extra or {}).items()])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('complete', 'true')")
    try:  # finished: one self-contained file, readable on read-only storage
        db.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError:  # another reader has it open: it stays in WAL, which is fine too
        pass


def merge(output: str | Path, shards: Sequence[str | Path]) -> ExampleIndex:
    """Combine the finished indexes of shards 0/N..N-1/N into the index one unsharded run makes."""
    real = [Path(p).resolve() for p in shards]
    twice = sorted({str(p) for p in shards if real.count(Path(p).resolve()) > 1})
    if twice:
        raise VizneuronError(f"shard {twice[0]} is given more than once")
    if Path(output).resolve() in real:
        raise VizneuronError(f"the output {output} is one of the shards: write the merged index to a new file")
    metas, dbs = [], []
    for path in shards:
        if not Path(path).exists():
            raise FileNotFoundError(f"shard index {path} not found")
        db = connect(path)
        meta = read_meta(db)
        if not meta.get("complete"):
            raise VizneuronError(f"{path} is not finished (shard {meta.get('shard')}): resume it before merging")
        metas.append(meta)
        dbs.append(db)
    same = [key for key in ("model", "weights", "preprocessing", "dataset", "units", "k", "reduce")
            if any(m.get(key) != metas[0].get(key) for m in metas)]
    if same:
        raise IndexMismatch(f"shards differ in {', '.join(same)}: they are not parts of one run")
    parts = {int(m["shard"].split("/")[1]) for m in metas}
    seen = sorted(int(m["shard"].split("/")[0]) for m in metas)
    if len(parts) != 1 or seen != list(range(parts.pop())):
        raise VizneuronError(f"need every shard 0..N-1 exactly once; got {[m['shard'] for m in metas]}")
    k = metas[0]["k"]
    tracker = load_checkpoint(dbs[0], strict=False)[1]  # finished shards: their examples hold the heatmaps
    for db in dbs[1:]:
        tracker = tracker.merge(load_checkpoint(db, strict=False)[1], k)
    details, images, notes = {}, {}, []
    for db in dbs:
        for column, side, image, *rest in db.execute(
                "SELECT unit, side, image, y, x, box, heatmap, heatmap_shape FROM examples"):
            details[(column, side, image)] = tuple(rest)
        for image, *rest in db.execute("SELECT id, path, label, thumbnail FROM images"):
            images[image] = tuple(rest)
        notes.extend(db.execute("SELECT image, path, action, reason FROM notes"))
    static = [row for row in dbs[0].execute("SELECT name, layer, kind, grid_h, grid_w, field FROM units ORDER BY id")]
    out = connect(output, write=True)
    meta = dict(metas[0], shard="0/1", images=[0, metas[0]["dataset"]["images"]])
    meta.pop("complete", None)
    meta.pop("mined", None)
    claim(out, meta, str(output))
    with transaction(out):
        out.executemany("INSERT OR REPLACE INTO notes VALUES (?, ?, ?, ?)", notes)
    save_checkpoint(out, [], tracker, [])
    write_results(out, static, tracker, details, images)
    return ExampleIndex(out, str(output))


class ExampleIndex:
    """Read access to a finished index."""

    def __init__(self, path: str | Path | sqlite3.Connection, name: str | None = None) -> None:
        if isinstance(path, sqlite3.Connection):
            self.db, self.path = path, name or ":memory:"
        else:
            if not Path(path).exists():
                raise FileNotFoundError(f"index {path} not found")
            self.db, self.path = connect(path), str(path)
        self.meta = read_meta(self.db)
        if not self.meta.get("complete"):
            self.db.close()
            raise VizneuronError(f"index {self.path} is not finished: rerun the same `mine` command to resume it")
        self._ids = {name: i for i, name in self.db.execute("SELECT id, name FROM units")}

    def units(self) -> list[str]:
        return list(self._ids)

    def check_model(self, model) -> None:
        """Refuse to show this index beside a model other than the one it was mined with."""
        if self.meta["model"] != model.name:
            raise IndexMismatch(f"index {self.path} was mined with {self.meta['model']}, not {model.name}")
        if self.meta.get("weights") not in (None, model.fingerprint):
            raise IndexMismatch(f"index {self.path} was mined with other weights for {model.name}")

    def _unit_id(self, unit: str) -> int:
        name = str(unit)
        if name not in self._ids:
            close = difflib.get_close_matches(name, list(self._ids), n=5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise UnknownNameError(f"unit {name} is not in index {self.path} ({len(self._ids)} units{hint})")
        return self._ids[name]

    def stats(self, unit: str) -> UnitStats:
        row = self.db.execute("SELECT name, layer, kind, count, mean, std, min, max, active, histogram "
                              "FROM units WHERE id = ?", (self._unit_id(unit),)).fetchone()
        histogram = np.frombuffer(row[9], dtype=np.int64)
        return UnitStats(*row[:9], histogram=histogram, edges=HISTOGRAM_EDGES.numpy())

    def examples(self, unit: str, bottom: bool = False, k: int | None = None) -> list[Example]:
        """The unit's top (or bottom) examples, best (or lowest) first."""
        rows = self.db.execute(
            "SELECT e.rank, e.image, i.path, i.label, e.value, e.y, e.x, e.box, e.heatmap, e.heatmap_shape "
            "FROM examples e JOIN images i ON i.id = e.image WHERE e.unit = ? AND e.side = ? ORDER BY e.rank "
            "LIMIT ?", (self._unit_id(unit), "bottom" if bottom else "top", -1 if k is None else k))
        return [_example(row) for row in rows]

    def tie_note(self, examples: Sequence[Example]) -> str | None:
        """A sentence for examples that share a value (a saturating unit, e.g. ReLU6 at 6): which key
        ordered them (the index's `ties`; indexes from before it, the image id). None without ties."""
        counts = Counter(e.value for e in examples)
        tied = sorted((value for value, n in counts.items() if n > 1), key=lambda v: -counts[v])
        if not tied:
            return None
        shared = sum(counts[v] for v in tied)
        key = self.meta.get("ties", "image id")
        return (f"{shared} of these {len(examples)} examples share a value with another (most: "
                f"{counts[tied[0]]} at {tied[0]:.3f}); equal values are ordered by the unit's {key}"
                if key != "image id" else
                f"{shared} of these {len(examples)} examples share a value with another; this index orders "
                "equal values by image id (mine again to order them by the unit's mean over positions)")

    def top_label(self, unit: str) -> tuple[str, int, int] | None:
        """The commonest label among the unit's top examples, its count and the number of
        labelled examples (None without labels): a one-word guess at what the unit likes."""
        labels = [e.label for e in self.examples(unit) if e.label]
        if not labels:
            return None
        best = max(sorted(set(labels)), key=labels.count)
        return best, labels.count(best), len(labels)

    def top_labels(self, units: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """`top_label` of each of `units` whose top examples carry labels (searchable pickers, grids)."""
        found = {}
        for unit in units:
            top = self.top_label(unit) if unit in self._ids else None
            if top is not None:
                found[unit] = top
        return found

    def best_per_label(self, unit: str, k: int = 16, most: int = 4) -> list[Example]:
        """The unit's best example of each label among its top `k` (at most `most`; unlabelled images:
        the top two): for a polysemantic unit, its top cat and its top car side by side."""
        best, labels = [], set()
        for example in self.examples(unit, k=k):
            if example.label is None:
                if len(best) < 2:
                    best.append(example)
            elif example.label not in labels:
                best.append(example)
                labels.add(example.label)
        return best[:most]

    def thumbnail(self, image: int) -> Image.Image:
        """The image as the model saw it (its input size, after crop and resize)."""
        (blob,) = self.db.execute("SELECT thumbnail FROM images WHERE id = ?", (image,)).fetchone()
        return Image.open(io.BytesIO(blob)).convert("RGB")

    def overlay(self, example: Example) -> Image.Image:
        """The example's image darkened where the unit did not fire (as is, without a heatmap)."""
        picture = self.thumbnail(example.image)
        return heatmap_overlay(picture, example.heatmap) if example.heatmap is not None else picture

    def crop(self, example: Example) -> Image.Image:
        """The receptive field around the unit's maximum (the whole image for non-spatial units)."""
        image = self.thumbnail(example.image)
        if example.box is None:
            return image
        top, left, bottom, right = example.box
        return image.crop((left, top, right, bottom))

    def notes(self) -> list[tuple[str, str, str]]:
        """(path, "skipped" | "converted", reason) for every file that was not a plain RGB image."""
        return [tuple(row) for row in self.db.execute("SELECT path, action, reason FROM notes ORDER BY image")]

    def summary(self) -> dict[str, Any]:
        notes = self.notes()
        return {"images": self.meta["dataset"]["images"], "mined": self.meta.get("mined"),
                "skipped": sum(a == "skipped" for _, a, _ in notes),
                "converted": sum(a == "converted" for _, a, _ in notes), "units": len(self._ids)}


def _example(row) -> Example:
    rank, image, path, label, value, y, x, box, heatmap, shape = row
    heat = None
    if heatmap is not None:
        heat = np.frombuffer(heatmap, dtype=np.float16).astype(np.float32).reshape(json.loads(shape))
    return Example(rank, image, path, label, value, None if y is None else (y, x),
                   None if box is None else tuple(json.loads(box)), heat)
