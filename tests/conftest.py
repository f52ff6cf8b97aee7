"""Shared fixtures: tiny models for fast tests, and the real data in ../shared (skipped if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from vizneuron.models.base import Model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the read-only ../shared folder beside the project); not present here")
    return path


class Tiny(nn.Module):
    """conv(8) -> relu -> conv(16) -> relu -> pool -> fc(5), with a tuple-returning probe module."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)
        self.pair = PairOut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        self.pair(x)
        return self.fc(self.pool(x).flatten(1))


class PairOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def make_tiny() -> Model:
    return Model(Tiny(), name="tiny", input_size=(16, 16), labels=["cat", "car", "dog", "ship", "frog"])


@pytest.fixture
def tiny() -> Model:
    return make_tiny()


def hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
