"""Toy superposition (Sharkey et al. 2022): known sparse features packed into fewer dimensions.

n ground-truth features (random unit directions in d < n dimensions) fire independently, with
heavy-tailed (power-law) frequencies and random magnitudes; a good SAE's decoder recovers them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ToyData:
    features: torch.Tensor  # (n, d) unit-norm ground-truth directions
    frequencies: torch.Tensor  # (n,) firing probability of each feature

    def sample(self, count: int, gen: torch.Generator) -> torch.Tensor:
        """(count, d) activations: sum of firing features times uniform(0, 1] magnitudes."""
        n = len(self.frequencies)
        fires = torch.rand(count, n, generator=gen) < self.frequencies
        magnitudes = torch.rand(count, n, generator=gen) * fires
        return magnitudes @ self.features


def toy_superposition(n: int = 256, d: int = 64, mean_active: float = 5.0, exponent: float = 0.5,
                      seed: int = 0) -> ToyData:
    """`n` features in `d` dims, on average `mean_active` firing per sample, frequency ~ rank^-exponent."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen)
    features = features / features.norm(dim=1, keepdim=True)
    weights = torch.arange(1, n + 1, dtype=torch.float32).pow(-exponent)
    frequencies = (weights / weights.sum() * mean_active).clamp(max=1.0)
    return ToyData(features, frequencies[torch.randperm(n, generator=gen)])


def mean_max_cosine(true_features: torch.Tensor, decoder: torch.Tensor) -> float:
    """MMCS: for each true feature, the best cosine similarity to any decoder row, averaged."""
    a = true_features / true_features.norm(dim=1, keepdim=True)
    b = decoder / decoder.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return (a @ b.T).amax(1).mean().item()
