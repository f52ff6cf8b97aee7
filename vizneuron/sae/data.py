"""A layer's activations as SAE training rows, read through the activation stream.

Each spatial position (or patch token) of each image is one row of width C; `pool=True` gives one
row per image (the mean over positions) instead. Images come from any image source, with the
model's own preprocessing; corrupt files are skipped.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch

from ..models.base import Model
from ..stream import ActivationStream


def layer_activations(model: Model, layer: str, data: Any, *, pool: bool = False, batch_size: int = 64,
                      workers: int = 0, max_images: int | None = None) -> Iterator[torch.Tensor]:
    """Chunks of rows (n, C), one per batch of images, in dataset order."""
    layer = model.resolve_layer(layer)
    for rows in layers_activations(model, [layer], data, pool=pool, batch_size=batch_size, workers=workers,
                                   max_images=max_images):
        yield rows[layer]


def layers_activations(model: Model, layers: Sequence[str], data: Any, *, pool: bool = False, batch_size: int = 64,
                       workers: int = 0, max_images: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """The rows of several layers from one pass over the images: per batch, layer -> (n, C)."""
    layers = [model.resolve_layer(layer) for layer in layers]
    stream = ActivationStream(model, layers, data, batch_size=batch_size, workers=workers, max_images=max_images)
    for batch in stream:
        if batch.activations:
            yield {layer: model.inputs.tokens.rows(batch.activations[layer], pool).cpu() for layer in layers}
