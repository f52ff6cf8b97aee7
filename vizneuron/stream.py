"""The one dataset -> activations stream. Every job that reads layers over real images (mining,
the probe, SAE training and evaluation) goes through it:

    source -> decode, crop, resize (DataLoader, optional workers) -> capture -> ActivationBatch

Images are numbered by their source (0..N-1); a stream reads a shard of them, a seeded random
`max_images` of them, or an explicit list of ids, in batches whose boundaries do not depend on where a
resumed run starts. Files that cannot be read are left out of a batch and reported in its notes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .capture import capture
from .errors import VizneuronError
from .imageio import MAX_PIXELS
from .models.base import Model
from .sources import ImageSource, ModelInputs, as_source

T = TypeVar("T")


@dataclass
class ActivationBatch:
    """One batch: the images read (skipped files left out) and what the model did with them."""

    number: int  # 1-based batch number in the whole stream (a resumed stream counts on)
    ids: torch.Tensor  # (B,) source ids of the images read
    images: torch.Tensor  # (B, 3, H, W) the model's inputs, on the CPU
    activations: dict[str, torch.Tensor]  # layer -> (B, ...) output; empty when nothing was read
    output: torch.Tensor | None  # the network's (possibly edited) output; only with `full_pass`
    notes: list[tuple[int, str, str]]  # (id, "skipped" | "converted", reason) for this batch's files
    size: int  # images the batch held, skipped ones included


def parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    """`"I/N"` or (I, N) -> (I, N), checked."""
    if isinstance(shard, str):
        try:
            i, n = (int(v) for v in shard.split("/"))
        except ValueError:
            raise VizneuronError(f"shard {shard!r} must look like I/N, e.g. 0/4") from None
    else:
        i, n = shard
    if n < 1:
        raise VizneuronError(f"shard {i}/{n}: N, the number of slices, must be at least 1 (e.g. 0/4)")
    if not 0 <= i < n:
        raise VizneuronError(f"shard {i}/{n}: I must be in 0..{n - 1}")
    return i, n


SUBSET_SEED = 0  # `max_images` draws the same images in every run, job and engine


def capped(ids: list[int], max_images: int | None) -> list[int]:
    """At most `max_images` of `ids`: a seeded random subset across all of them, in id order (the
    first N of a sorted folder would be its first few classes only)."""
    if max_images is None or max_images >= len(ids):
        return ids
    if max_images < 1:
        raise VizneuronError(f"max_images must be at least 1, not {max_images}")
    pick = torch.randperm(len(ids), generator=torch.Generator().manual_seed(SUBSET_SEED))[:max_images]
    return [ids[i] for i in pick.sort().values.tolist()]


Workers = int | str  # decoding processes, or "auto"
Batch = int | str  # images per batch, or "auto"
AUTO_BATCH_CPU = 64  # on the CPU larger batches run no faster and hold more memory
AUTO_BATCH_GPU = (64, 512)  # on a GPU: as many as fit, a power of 2 in this range
AUTO_BATCH_MEMORY_SHARE = 16  # a batch may hold at most this share of the GPU's memory


def stream_batch(model: Model, batch: Batch) -> int:
    """Images per batch of a stream: `batch` as given, or for "auto" AUTO_BATCH_CPU on the CPU and,
    on a GPU, as many as fit 1/AUTO_BATCH_MEMORY_SHARE of its memory at four of the model's largest
    layer outputs per image (a pass without gradients holds a few outputs at once), a power of 2."""
    if batch != "auto":
        if not isinstance(batch, int) or batch < 1:
            raise VizneuronError(f"batch size must be positive, or 'auto', not {batch!r}")
        return batch
    if model.device.type != "cuda":
        return AUTO_BATCH_CPU
    largest = max(math.prod(info.shape) for info in model.layers.values() if info.shape is not None)
    fit = max(1, model.memory_bytes // AUTO_BATCH_MEMORY_SHARE // (4 * 4 * largest))
    low, high = AUTO_BATCH_GPU
    return min(high, max(low, 2 ** (fit.bit_length() - 1)))


MIN_BATCHES_FOR_WORKERS = 4  # fewer batches than this: starting worker processes costs more than it saves


def decode_workers(workers: Workers, device: torch.device, batches: int) -> int:
    """How many DataLoader processes decode images: `workers` as given, or for "auto": none for a
    stream of a few batches (a worker's start outweighs it); on the CPU one per two cores beyond the
    first two (the forward uses every core, so a worker takes cores from it: on 2 cores decoding in
    the main process measured fastest, bench/bench_loader.py; more cores are not yet measured); on a
    GPU one per spare core up to 8 (the forward leaves the CPUs to decoding; not yet measured)."""
    if workers != "auto":
        if not isinstance(workers, int) or workers < 0:
            raise VizneuronError(f"workers must be 0 or more, or 'auto', not {workers!r}")
        return workers
    if batches < MIN_BATCHES_FOR_WORKERS:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return min(8, max(cpus - 1, 0))
    return max(cpus - 2, 0) // 2


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    ids, images, notes, skips = zip(*batch)
    return torch.tensor(ids), torch.stack(images), list(notes), list(skips)


class ActivationStream:
    """Iterate over `ActivationBatch`es of `layers` of `model` over the images of `data`."""

    def __init__(self, model: Model, layers: Sequence[str], data: Any, *, batch_size: Batch = "auto",
                 workers: Workers = "auto",
                 max_images: int | None = None, shard: str | tuple[int, int] = (0, 1),
                 ids: Sequence[int] | None = None, full_pass: bool = False,
                 edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None, autocast: bool = False,
                 max_pixels: int | None = MAX_PIXELS) -> None:
        batch_size = stream_batch(model, batch_size)
        self.model, self.layers = model, list(layers)
        self.source: ImageSource = as_source(data, max_pixels)
        self.shard = parse_shard(shard) if ids is None else None  # (I, N) of a sharded stream
        if ids is None:
            part, parts = self.shard
            count = len(self.source)
            self.span = (part * count // parts, (part + 1) * count // parts)  # the shard's id range
            ids = capped(list(range(*self.span)), max_images)
        else:
            self.span = (min(ids), max(ids) + 1) if len(ids) else (0, 0)
        self.ids = list(ids)
        self.batches = [self.ids[i : i + batch_size] for i in range(0, len(self.ids), batch_size)]
        self.batch_size, self.workers = batch_size, workers
        self.full_pass, self.edits, self.autocast = full_pass, edits, autocast

    def __len__(self) -> int:
        """Batches in the whole stream (including those a resumed stream skips)."""
        return len(self.batches)

    def __iter__(self) -> Iterator[ActivationBatch]:
        return self.select(range(len(self.batches)))

    def inputs(self, todo: Sequence[int] | None = None
               ) -> Iterable[tuple[torch.Tensor, torch.Tensor, list[str], list[str]]]:
        """The batches' images as the model takes them, without running it (for jobs that need
        gradients): (ids, images, conversion notes, skip reasons), skipped images as zeros. `todo`:
        which batches (0-based numbers), default all."""
        inputs = ModelInputs(self.source, self.model.inputs)
        chosen = self.batches if todo is None else [self.batches[i] for i in todo]
        device = self.model.device
        return torch.utils.data.DataLoader(inputs, batch_sampler=chosen, collate_fn=_collate,
                                           num_workers=decode_workers(self.workers, device, len(chosen)),
                                           pin_memory=device.type == "cuda")

    def blocks(self, blocks: Sequence[Sequence[int]],
               fold: Callable[[T | None, ActivationBatch], T]) -> Iterator[tuple[list[int], T | None]]:
        """One pass over the batches of `blocks` (lists of batch numbers): per block, in order, its
        batches folded into one value (`fold(None, first)`, then `fold(value, next)`), so memory
        holds one block's summary, never its activations. A block is what a job commits at once (a
        checkpoint, a file) and what one distributed worker is handed."""
        ends = {block[-1]: list(block) for block in blocks if block}
        value: T | None = None
        for batch in self.select([i for block in blocks for i in block]):
            value = fold(value, batch)
            if batch.number - 1 in ends:
                yield ends[batch.number - 1], value
                value = None

    def select(self, todo: Sequence[int]) -> Iterator[ActivationBatch]:
        """The batches numbered `todo` (0-based), in that order: what a resumed run has left, or the
        block of the stream one distributed worker reads. A batch holds the same images whoever reads it."""
        model = self.model
        todo = list(todo)
        loader = self.inputs(todo)
        amp = (torch.autocast("cuda", dtype=torch.float16) if self.autocast and model.device.type == "cuda"
               else contextlib.nullcontext())
        with capture(model, self.layers, stop_early=not self.full_pass, edits=self.edits) as cap, torch.no_grad():
            for number, (ids, images, notes, skips) in zip((i + 1 for i in todo), loader):
                ok = torch.tensor([not reason for reason in skips], dtype=torch.bool)
                acts, output = {}, None
                if ok.any():
                    with amp:
                        on_device = images.to(model.device, non_blocking=True)  # from pinned memory on CUDA
                        acts = cap.run(on_device if ok.all() else on_device[ok.to(on_device.device)])
                    output = cap.output if self.full_pass else None
                reported = [(i, "skipped" if reason else "converted", reason or note)
                            for i, note, reason in zip(ids.tolist(), notes, skips) if note or reason]
                yield ActivationBatch(number, ids[ok], images[ok], acts, output, reported, len(ids))
