"""A layer's activations as SAE training rows, read through the activation stream, or written to
disk once (`extract_activations`) and streamed back file by file (`ActivationFolder`).

Each spatial position (or patch token) of each image is one row of width C; `pool=True` gives one
row per image (the mean over positions) instead. Images come from any image source, with the
model's own preprocessing; corrupt files are skipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_tensors
from tqdm import tqdm

from ..distributed import Job, RayEngine, as_engine
from ..errors import VizneuronError
from ..imageio import write_atomic
from ..models.base import LayerInfo, Model
from ..stream import ActivationStream, Batch, Workers, stream_batch


def layer_activations(model: Model, layer: str, data: Any, *, pool: bool = False, batch_size: Batch = "auto",
                      workers: Workers = "auto", max_images: int | None = None) -> Iterator[torch.Tensor]:
    """Chunks of rows (n, C), one per batch of images, in dataset order."""
    layer = model.resolve_layer(layer)
    for rows in layers_activations(model, [layer], data, pool=pool, batch_size=batch_size, workers=workers,
                                   max_images=max_images):
        yield rows[layer]


def layers_activations(model: Model, layers: Sequence[str], data: Any, *, pool: bool = False,
                       batch_size: Batch = "auto", workers: Workers = "auto",
                       max_images: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """The rows of several layers from one pass over the images: per batch, layer -> (n, C)."""
    layers = [model.resolve_layer(layer) for layer in layers]
    stream = ActivationStream(model, layers, data, batch_size=batch_size, workers=workers, max_images=max_images)
    for batch in stream:
        if batch.activations:
            yield {layer: model.inputs.tokens.rows(batch.activations[layer], pool).cpu() for layer in layers}


MANIFEST = "activations.json"


class ActivationFolder:
    """A layer's rows on disk (`sae extract`): `rows-NNNNNN.safetensors` files of whole image
    batches plus `activations.json` (model, weights, layer, pool, source, the files written).
    Iterating reads one file at a time, so training streams rows that need not fit in RAM."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path} holds no {MANIFEST}: not a folder written by `sae extract`") from None
        except (OSError, json.JSONDecodeError) as err:
            raise VizneuronError(f"{self.path / MANIFEST} is not readable ({err})") from None

    @staticmethod
    def holds(path: Any) -> bool:
        return isinstance(path, (str, Path)) and (Path(path) / MANIFEST).is_file()

    @property
    def rows(self) -> int:
        return sum(entry["rows"] for entry in self.manifest["files"])

    @property
    def complete(self) -> bool:
        return len(self.manifest["files"]) >= -(-self.manifest["batches"] // self.manifest["batches_per_file"])

    def __iter__(self) -> Iterator[torch.Tensor]:
        """The rows in order, in blocks of at most `BLOCK_BYTES`: memory stays bounded however large
        a file is (a file can hold hundreds of MB)."""
        for entry in self.manifest["files"]:
            yield from read_row_blocks(self.path / entry["file"], f"delete the folder {self.path} and extract again")


BLOCK_BYTES = 1 << 26  # 64 MB of rows read at a time
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_row_blocks(path: Path, remedy: str, block_bytes: int = BLOCK_BYTES) -> Iterator[torch.Tensor]:
    """The `rows` tensor of a safetensors file, read block by block with plain reads: the format is an
    8-byte little-endian header length, a JSON header (dtype, shape, byte offsets), then the raw
    data. safetensors' own reader memory-maps the file, and every page it touches counts towards
    the process's resident memory until the file is closed. The header and the file's size are
    checked before the first block, so a damaged file yields nothing."""
    try:
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            entry = json.loads(file.read(length))["rows"]
            dtype, (count, width) = SAFETENSORS_DTYPES[entry["dtype"]], entry["shape"]
            start, end = (8 + length + offset for offset in entry["data_offsets"])
            row_bytes, size = width * dtype.itemsize, os.fstat(file.fileno()).st_size
            if end - start != count * row_bytes or end > size:
                raise ValueError(f"the data holds {size - start} bytes, not {count * row_bytes}")
            file.seek(start)
            step = max(1, block_bytes // row_bytes)
            for first in range(0, count, step):
                rows = min(step, count - first)
                block = torch.empty(rows * row_bytes, dtype=torch.uint8)
                if file.readinto(block.numpy()) != len(block):
                    raise ValueError("the file ended early")
                yield block.view(dtype).reshape(rows, width)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as err:  # JSONDecodeError is a ValueError
        raise VizneuronError(f"{path} is damaged ({type(err).__name__}: {err}): {remedy}") from None


FILE_BYTES = 1 << 28  # "auto" batches per file: about 256 MB of float32 rows a file


def file_batches(info: LayerInfo, pool: bool, batch_size: int, batches_per_file: int | str) -> int:
    """Image batches per file: `batches_per_file` as given, or for "auto" as many as make about
    FILE_BYTES of rows (a file is held whole while it is written), from the layer's output shape."""
    if batches_per_file != "auto":
        if not isinstance(batches_per_file, int) or batches_per_file < 1:
            raise VizneuronError(f"batches per file must be at least 1, or 'auto', not {batches_per_file!r} "
                                 "(--batches-per-file)")
        return batches_per_file
    if info.shape is None:
        return 1
    values = info.channels if pool else math.prod(info.shape)
    return max(1, FILE_BYTES // (4 * values * batch_size))


def extract_activations(model: Model, layer: str, data: Any, out: str | Path, *, pool: bool = False,
                        batch_size: Batch = "auto", batches_per_file: int | str = "auto",
                        max_images: int | None = None, workers: Workers = "auto",
                        engine: str | RayEngine | None = "local", progress: bool = True) -> ActivationFolder:
    """Write `layer`'s rows over `data` into `out` as an `ActivationFolder`, `batches_per_file` image
    batches per file ("auto": files of about 256 MB). Rerunning the same call resumes with the files
    not yet written (a file and the manifest entry naming it appear together or not at all); other
    settings in the same folder are refused. `engine="ray"` (or a `RayEngine`) computes the files on
    Ray actors; the driver writes them, byte-identical to a local run's."""
    layer = model.resolve_layer(layer)
    batch_size = stream_batch(model, batch_size)  # once, here: every engine's workers cut the same batches
    batches_per_file = file_batches(model.layer(layer), pool, batch_size, batches_per_file)
    ray = as_engine(engine)
    if ray:
        ray.start()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    job = _LayerRows(model, layer, data, pool, batch_size, workers, max_images)
    stream = job.stream()
    settings = {"model": model.name, "fingerprint": model.fingerprint, "layer": layer, "pool": pool,
                "width": model.layer(layer).channels, "source": stream.source.describe(), "batch_size": batch_size,
                "batches_per_file": batches_per_file, "max_images": max_images, "batches": len(stream)}
    manifest = {**settings, "files": []}
    if (out / MANIFEST).is_file():
        kept = ActivationFolder(out).manifest
        if {k: kept.get(k) for k in settings} != settings:
            raise VizneuronError(f"{out} holds activations of another run (model, layer, data or settings differ); "
                             "write to another folder")
        manifest = kept
    written = {entry["file"] for entry in manifest["files"]}
    todo = [n for n in range(-(-len(stream) // batches_per_file)) if _file_name(n) not in written]
    blocks = [list(range(n * batches_per_file, min((n + 1) * batches_per_file, len(stream)))) for n in todo]
    bar = tqdm(total=len(stream), initial=len(stream) - sum(map(len, blocks)), unit="batch",
               desc=f"extract {layer}" + (" on Ray" if ray else ""), disable=not progress)
    with ray.pool() if ray else contextlib.nullcontext() as pool:
        results = ((blocks[i], rows) for i, rows in pool.run(job, blocks)) if pool else job.blocks(blocks)
        for block, rows in results:
            name = _file_name(block[0] // batches_per_file)
            write_atomic(out / name, save_tensors({"rows": rows.contiguous()}))
            manifest["files"] = sorted([f for f in manifest["files"] if f["file"] != name]
                                       + [{"file": name, "rows": len(rows)}], key=lambda entry: entry["file"])
            write_atomic(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
            bar.update(len(block))
    bar.close()
    return ActivationFolder(out)


def _file_name(number: int) -> str:
    return f"rows-{number:06d}.safetensors"


@dataclass
class _LayerRows(Job):
    """A layer's rows over blocks of image batches: run here, or shipped once to each Ray actor."""

    model: Model
    layer: str
    data: Any
    pool: bool
    batch_size: Batch
    workers: Workers
    max_images: int | None
    _stream: ActivationStream | None = None

    def stream(self) -> ActivationStream:
        if self._stream is None:
            self._stream = ActivationStream(self.model, [self.layer], self.data, batch_size=self.batch_size,
                                            workers=self.workers, max_images=self.max_images)
        return self._stream

    def __call__(self, block: list[int]) -> torch.Tensor:
        return next(self.blocks([block]))[1]

    def blocks(self, blocks: list[list[int]]) -> Iterator[tuple[list[int], torch.Tensor]]:
        width = self.model.layer(self.layer).channels
        for block, rows in self.stream().blocks(blocks, self._fold):
            yield block, torch.cat(rows) if rows else torch.zeros(0, width)

    def _fold(self, so_far: list[torch.Tensor] | None, batch) -> list[torch.Tensor]:
        rows = so_far or []
        if batch.activations:
            rows.append(self.model.inputs.tokens.rows(batch.activations[self.layer], self.pool).float().cpu())
        return rows
