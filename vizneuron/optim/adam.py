"""Adam, computed as `torch.optim.Adam` computes it off CUDA (its single-tensor path), bit for bit.

Renders use this rather than `torch.optim`: building any torch optimiser imports `torch._dynamo`,
about 1.6 s of a 2-core machine, which would be most of the wait before a CLI render's first step.
`tests/test_render.py` checks the two agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def step_size(lr: float, schedule: str, step: int, steps: int) -> float:
    """The step size of step `step` (1-based) of `steps`: `lr` throughout ("constant"), or a linear
    warm-up over the first steps/8 and then a cosine from `lr` down to 0 ("cosine")."""
    if schedule == "constant":
        return lr
    warm = max(1, steps // 8)
    if step <= warm:
        return lr * step / warm
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


class Adam:
    """Adam (Kingma & Ba) on `params`, with a step size that may change between steps (`lr`)."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.steps = 0
        self._mean = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._square = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.steps)
        root_correction = (1 - beta2 ** self.steps) ** 0.5
        for param, mean, square in zip(self.params, self._mean, self._square):
            grad = param.grad
            if grad is None:
                continue
            mean.lerp_(grad, 1 - beta1)
            square.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            param.addcdiv_(mean, (square.sqrt() / root_correction).add_(self.eps), value=-step_size)
