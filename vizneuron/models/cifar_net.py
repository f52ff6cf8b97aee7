"""The architecture of the bundled default model: a small residual CIFAR-10 classifier.

A narrow ResNet-9 (conv-pool stages with residual blocks), chosen because it trains to >85 %
on CPU in well under an hour and its last conv stage (`layer3`, 128 channels at 4x4) is wide
enough to hold interesting units.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class Residual(nn.Module):
    """Two conv-BN-ReLU layers plus an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(channels, channels)
        self.conv2 = conv_bn(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class Stage(nn.Module):
    """Widen, halve the resolution, and optionally refine with a residual block."""

    def __init__(self, c_in: int, c_out: int, residual: bool) -> None:
        super().__init__()
        self.conv = conv_bn(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.res = Residual(c_out) if residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.pool(self.conv(x)))


class CifarNet(nn.Module):
    """stem (32x32) -> layer1 (16x16) -> layer2 (8x8) -> layer3 (4x4) -> pool -> fc."""

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 128), num_classes: int = 10) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = conv_bn(3, w0)
        self.layer1 = Stage(w0, w1, residual=True)
        self.layer2 = Stage(w1, w2, residual=False)
        self.layer3 = Stage(w2, w3, residual=True)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))
