"""Redirected ReLU (lucid's trick), for any model: early in a render, let gradient through units
that ReLU/ReLU6 clip, so a render that starts where its unit is dead can still move.

For the images of a batch whose ordinary gradient through a clipping unit is all zero, the
gradient passes where it pushes the input back toward the unit's active range. Works by hooking
activation modules (nn.ReLU, nn.ReLU6, nn.Hardtanh); hooks are removed on exit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_CLIPPING = (nn.ReLU, nn.ReLU6, nn.Hardtanh)


class _Redirect(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, inside: torch.Tensor, below: torch.Tensor,
                above: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(inside, below, above)
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inside, below, above = ctx.saved_tensors
        passed = grad * inside
        # only images whose ordinary gradient is all zero are redirected (usually few of them)
        dead = ~passed.flatten(1).ne(0).any(1)
        if bool(dead.any()):
            rows = dead.nonzero().squeeze(1)
            g = grad[rows]
            # gradient descent moves x by -grad: below range it helps when grad < 0, above when grad > 0
            helpful = below[rows] & (g < 0)
            if above is not None:
                helpful |= above[rows] & (g > 0)
            passed[rows] = g * (inside[rows] | helpful)
        return passed, None, None, None, None


def redirect_gradient(x: torch.Tensor, y: torch.Tensor, inside: torch.Tensor, below: torch.Tensor,
                      above: torch.Tensor | None = None) -> torch.Tensor:
    """`y` (a clipped function of `x`) whose gradient reaches `x` as described above: `inside` is
    where y follows x, `below` / `above` where it is clipped from below / above (None: never)."""
    return _Redirect.apply(x, y, inside, below, above)


def _bounds(module: nn.Module) -> tuple[float, float]:
    if isinstance(module, nn.ReLU6):
        return 0.0, 6.0
    if isinstance(module, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    return 0.0, float("inf")


def _redirected(module: nn.Module, inputs: tuple, out: torch.Tensor, lower: float, upper: float) -> torch.Tensor:
    x = inputs[0]
    if upper == float("inf"):  # ReLU: clipped from below only
        return redirect_gradient(x, out, x > lower, x <= lower)
    return redirect_gradient(x, out, (x > lower) & (x < upper), x <= lower, x >= upper)


@contextmanager
def redirected_relus(root: nn.Module, saes: Iterable[nn.Module] = ()) -> Iterator[int]:
    """Within the block, clipping activations of `root` (and the TopK/ReLU of `saes`) pass
    redirected gradients; yields how many activations were redirected."""
    handles, inplace, saes = [], [], list(saes)
    for module in root.modules():
        if isinstance(module, _CLIPPING):
            lower, upper = _bounds(module)
            if getattr(module, "inplace", False):  # the pre-activation must survive for backward
                inplace.append(module)
                module.inplace = False
            handles.append(module.register_forward_hook(
                lambda m, inputs, out, lo=lower, hi=upper: _redirected(m, inputs, out, lo, hi)))
    for sae in saes:
        sae.redirecting = True
    try:
        yield len(handles) + len(saes)
    finally:
        for sae in saes:
            sae.redirecting = False
        for handle in handles:
            handle.remove()
        for module in inplace:
            module.inplace = True
