"""The one dataset -> activations stream. Every job that reads layers over real images (mining,
the probe, SAE training and evaluation) goes through it:

    source -> decode, crop, resize (DataLoader, optional workers) -> capture -> ActivationBatch

Images are numbered by their source (0..N-1); a stream reads a shard of them, a seeded random
`max_images` of them, or an explicit list of ids, in batches whose boundaries do not depend on where a
resumed run starts. Files that cannot be read are left out of a batch and reported in its notes.
"""

from __future__ import annotations

import contextlib
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


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    ids, images, notes, skips = zip(*batch)
    return torch.tensor(ids), torch.stack(images), list(notes), list(skips)


class ActivationStream:
    """Iterate over `ActivationBatch`es of `layers` of `model` over the images of `data`."""

    def __init__(self, model: Model, layers: Sequence[str], data: Any, *, batch_size: int = 64, workers: int = 0,
                 max_images: int | None = None, shard: str | tuple[int, int] = (0, 1),
                 ids: Sequence[int] | None = None, full_pass: bool = False,
                 edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None, autocast: bool = False,
                 max_pixels: int | None = MAX_PIXELS) -> None:
        if batch_size < 1:
            raise VizneuronError(f"batch size must be positive, not {batch_size}")
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
        inputs = ModelInputs(self.source, self.model.input_size, self.model.inputs.crop_fraction)
        chosen = self.batches if todo is None else [self.batches[i] for i in todo]
        return torch.utils.data.DataLoader(inputs, batch_sampler=chosen, num_workers=self.workers,
                                           collate_fn=_collate)

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
                        acts = cap.run(images[ok].to(model.device))
                    output = cap.output if self.full_pass else None
                reported = [(i, "skipped" if reason else "converted", reason or note)
                            for i, note, reason in zip(ids.tolist(), notes, skips) if note or reason]
                yield ActivationBatch(number, ids[ok], images[ok], acts, output, reported, len(ids))
