"""A layer's activations as SAE training rows, streamed from a dataset through the capture.

Each spatial position (or patch token) of each image is one row of width C; `pool=True` gives one
row per image (the mean over positions) instead. Images come from the miner's sources, with the
model's own preprocessing; corrupt files are skipped.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..capture import capture
from ..mine.sources import ModelInputs, as_source
from ..models.base import Model, channels_first, positions_as_rows


def rows_of(act: torch.Tensor, model: Model, pool: bool) -> torch.Tensor:
    """(N, C, ...) layer output -> (rows, C): every position, or the per-image mean."""
    return positions_as_rows(channels_first(act, model.prefix_tokens, model.cls_token), pool)


def from_rows(rows: torch.Tensor, like: torch.Tensor, model: Model) -> torch.Tensor:
    """The inverse of `rows_of` (per position) for splicing a reconstruction back into the layer."""
    if like.ndim == 2:
        return rows
    if like.ndim == 3:  # tokens (N, T, D): patch tokens replaced, prefix tokens kept
        n, t, d = like.shape
        if model.cls_token:
            return torch.cat([rows[:, None], like[:, 1:]], 1)
        patches = rows.reshape(n, t - model.prefix_tokens, d)
        return torch.cat([like[:, : model.prefix_tokens], patches], 1)
    n, c = like.shape[:2]
    return rows.reshape(n, *like.shape[2:], c).movedim(-1, 1)


def layer_activations(model: Model, layer: str, data: Any, *, pool: bool = False, batch_size: int = 64,
                      workers: int = 0, max_images: int | None = None) -> Iterator[torch.Tensor]:
    """Chunks of rows (n, C), one per batch of images, in dataset order."""
    source = as_source(data)
    count = len(source) if max_images is None else min(max_images, len(source))
    inputs = torch.utils.data.Subset(ModelInputs(source, model.input_size, model.crop_fraction), range(count))
    loader = torch.utils.data.DataLoader(inputs, batch_size=batch_size, num_workers=workers)
    with capture(model, [layer]) as cap, torch.no_grad():
        for _, images, _, skips in loader:
            ok = torch.tensor([not reason for reason in skips])
            if ok.any():
                yield rows_of(cap.run(images[ok].to(model.device))[layer], model, pool).cpu()
