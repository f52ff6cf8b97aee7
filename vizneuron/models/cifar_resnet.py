"""CIFAR-10 ResNets with option-A shortcuts (He et al. 2016), as in ../shared/models/cifar-resnet.

`cifar-resnet:PATH` builds the network with the depth read off the checkpoint's state dict.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VizneuronError
from .base import InputConfig, Model
from .default import CIFAR10_CLASSES
from .weights import load_state_dict, load_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad the new channels."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ShortcutA(planes) if stride != 1 or c_in != planes else nn.Identity()
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        stages, c_in = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(c_in, planes, stride if i == 0 else 1))
                c_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(self.flatten(self.pool(x)))


def blocks_in(state: dict[str, torch.Tensor]) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(r"layer1\.(\d+)\.", k))}
    if not found:
        raise VizneuronError("not a CIFAR ResNet state dict: no layer1.N.* keys")
    return max(found) + 1


def load_cifar_resnet(path: str, options: dict[str, str] | None = None) -> Model:
    state = load_state_dict(path)
    n = blocks_in(state)
    module = CifarResNet(n)
    load_weights(module, state, path, strict=False)
    missing = set(module.state_dict()) - set(state) - {k for k in module.state_dict() if "num_batches" in k}
    if missing:
        raise VizneuronError(f"{path} lacks weights for {sorted(missing)[:5]}")
    return Model(module, name=f"cifar-resnet:{path}",
                 inputs=InputConfig((32, 32), IMAGENET_MEAN, IMAGENET_STD, labels=CIFAR10_CLASSES))
