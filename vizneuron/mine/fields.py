"""Where a unit looks: the layer's grid, its effective receptive field, crop boxes and heatmaps."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..capture import capture
from ..models.base import Model
from ..units import Unit, unit_maps

HEATMAP_MAX = 16  # heatmaps are stored at most 16x16 (adaptive average pooling)


def grid_of(model: Model, unit: Unit) -> tuple[int, int] | None:
    """The (rows, columns) a unit's map covers, or None for maps of one value."""
    if unit.kind in ("neuron", "logit") or unit.tokens.cls:
        return None
    shape = model.layer(unit.layer).shape
    if len(shape) == 3:
        return shape[1], shape[2]
    if len(shape) == 2:  # tokens: patches on a square grid when they form one
        patches = shape[0] - unit.tokens.prefix
        side = math.isqrt(patches)
        return (side, side) if side * side == patches else (1, patches)
    return None


def effective_field(model: Model, unit: Unit, grid: tuple[int, int], mass: float = 0.9) -> int:
    """Side (in input pixels) of the centred square holding `mass` of the input gradient of the
    grid's central position: the part of the image the unit actually looks at there."""
    gen = torch.Generator().manual_seed(0)
    height, width = model.input_size
    images = torch.rand(4, 3, height, width, generator=gen).to(model.device).requires_grad_(True)
    cy, cx = grid[0] // 2, grid[1] // 2
    with capture(model, [unit.layer]) as cap:
        maps = unit_maps([unit], cap.run(images)[unit.layer])
    maps[:, 0, cy * grid[1] + cx].sum().backward()
    weight = images.grad.abs().sum((0, 1))
    centre_y, centre_x = (cy + 0.5) * height / grid[0], (cx + 0.5) * width / grid[1]
    ys = (torch.arange(height, device=weight.device) + 0.5 - centre_y).abs()
    xs = (torch.arange(width, device=weight.device) + 0.5 - centre_x).abs()
    distance = torch.maximum(ys[:, None], xs[None, :]).flatten()  # Chebyshev distance to the centre
    order = distance.argsort()
    cumulative = weight.flatten()[order].cumsum(0)
    if cumulative[-1] <= 0:
        return max(height, width)
    reach = distance[order][int((cumulative < mass * cumulative[-1]).sum())]
    return int(min(max(height, width), max(2 * math.ceil(reach), height // grid[0], 1)))


def crop_box(position: tuple[int, int], grid: tuple[int, int], field: int,
             size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a field-sized square centred on a grid cell, kept inside."""
    box = []
    for p, g, s in zip(position, grid, size):
        side = min(field, s)
        start = round((p + 0.5) * s / g - side / 2)
        start = min(max(start, 0), s - side)
        box.append((start, start + side))
    (top, bottom), (left, right) = box
    return top, left, bottom, right


def heat_grid(grid: tuple[int, int]) -> tuple[int, int]:
    """The size a grid's heatmaps are kept at: the grid, at most HEATMAP_MAX a side."""
    return min(grid[0], HEATMAP_MAX), min(grid[1], HEATMAP_MAX)


def heatmaps(maps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Units' flat maps (N, U, S) on their grid, pooled down to `heat_grid` (adaptive average
    pooling) and flat again: (N, U, cells)."""
    n, u = maps.shape[:2]
    grid_maps = maps.float().reshape(n * u, 1, *grid)
    if heat_grid(grid) != tuple(grid):
        grid_maps = F.adaptive_avg_pool2d(grid_maps, heat_grid(grid))
    return grid_maps.reshape(n, u, -1)
