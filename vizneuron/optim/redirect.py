"""Redirected ReLU (lucid's trick), for any model: early in a render, let gradient through units
that ReLU/ReLU6 clip, so a render that starts where its unit is dead can still move.

For the images of a batch whose ordinary gradient through a clipping unit is all zero, the
gradient passes where it pushes the input back toward the unit's active range. Works by hooking
activation modules (nn.ReLU, nn.ReLU6, nn.Hardtanh); hooks are removed on exit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

_CLIPPING = (nn.ReLU, nn.ReLU6, nn.Hardtanh)


class _Redirect(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bounds = (lower, upper)
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        lower, upper = ctx.bounds
        inside = (x > lower) & (x < upper)
        ordinary = grad * inside
        # gradient descent moves x by -grad: below range it helps when grad < 0, above when grad > 0
        helpful = ((x <= lower) & (grad < 0)) | ((x >= upper) & (grad > 0))
        redirected = grad * (inside | helpful)
        dead = ordinary.flatten(1).abs().sum(1) == 0
        mask = dead.view(-1, *([1] * (grad.ndim - 1)))
        return torch.where(mask, redirected, ordinary), None, None, None


def _bounds(module: nn.Module) -> tuple[float, float]:
    if isinstance(module, nn.ReLU6):
        return 0.0, 6.0
    if isinstance(module, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    return 0.0, float("inf")


@contextmanager
def redirected_relus(root: nn.Module) -> Iterator[int]:
    """Within the block, clipping activations of `root` pass redirected gradients; yields how many."""
    handles, inplace = [], []
    for module in root.modules():
        if isinstance(module, _CLIPPING):
            lower, upper = _bounds(module)
            if getattr(module, "inplace", False):  # the pre-activation must survive for backward
                inplace.append(module)
                module.inplace = False
            handles.append(module.register_forward_hook(
                lambda m, inputs, out, lo=lower, hi=upper: _Redirect.apply(inputs[0], out, lo, hi)))
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
        for module in inplace:
            module.inplace = True
