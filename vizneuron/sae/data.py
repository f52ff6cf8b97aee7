"""A layer's activations as SAE training rows, read through the activation stream.

Each spatial position (or patch token) of each image is one row of width C; `pool=True` gives one
row per image (the mean over positions) instead. Images come from any image source, with the
model's own preprocessing; corrupt files are skipped.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..models.base import Model
from ..stream import ActivationStream


def layer_activations(model: Model, layer: str, data: Any, *, pool: bool = False, batch_size: int = 64,
                      workers: int = 0, max_images: int | None = None) -> Iterator[torch.Tensor]:
    """Chunks of rows (n, C), one per batch of images, in dataset order."""
    layer = model.resolve_layer(layer)
    stream = ActivationStream(model, [layer], data, batch_size=batch_size, workers=workers, max_images=max_images)
    for batch in stream:
        if batch.activations:
            yield model.inputs.tokens.rows(batch.activations[layer], pool).cpu()
