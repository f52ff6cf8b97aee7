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


@dataclass
class ToyHierarchy:
    """Parent features each with children that only fire with them (a child implies its parent),
    plus independent background features: the setting in which SAEs absorb features (Chanin et
    al. 2024), a child latent taking over its parent's direction so the parent latent goes quiet
    exactly where the child fires."""

    parents: torch.Tensor  # (P, d) unit directions
    children: torch.Tensor  # (P, C, d) unit directions
    background: ToyData
    parent_rate: float  # how often each parent fires
    child_rate: float  # given its parent, how often one of its children fires too

    def sample(self, count: int, gen: torch.Generator, *, with_labels: bool = False):
        """(count, d) activations (and, with labels, which parent and which child fired per row:
        (count, P) bool and (count, P) child index or -1)."""
        n_parents, n_children = self.children.shape[:2]
        on = torch.rand(count, n_parents, generator=gen) < self.parent_rate
        child = torch.randint(n_children, (count, n_parents), generator=gen)
        child = torch.where(on & (torch.rand(count, n_parents, generator=gen) < self.child_rate), child, -1)
        parent_mag = (0.5 + 0.5 * torch.rand(count, n_parents, generator=gen)) * on
        child_mag = (0.5 + 0.5 * torch.rand(count, n_parents, generator=gen)) * (child >= 0)
        picked = self.children[torch.arange(n_parents), child.clamp(min=0)]  # (count, P, d)
        x = parent_mag @ self.parents + (child_mag[..., None] * picked).sum(1) + self.background.sample(count, gen)
        return (x, on, child) if with_labels else x


def toy_hierarchy(parents: int = 8, children: int = 4, d: int = 64, background: int = 96,
                  parent_rate: float = 0.15, child_rate: float = 0.8, seed: int = 0) -> ToyHierarchy:
    """`parents` parent features with `children` each, and `background` independent features, in `d` dims."""
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(parents * (children + 1), d, generator=gen)
    directions = directions / directions.norm(dim=1, keepdim=True)
    rest = toy_superposition(n=background, d=d, mean_active=3.0, seed=seed + 1)
    return ToyHierarchy(directions[:parents], directions[parents:].view(parents, children, d), rest,
                        parent_rate, child_rate)


@torch.no_grad()
def absorption(sae, toy: ToyHierarchy, count: int = 20_000, seed: int = 1) -> dict[str, float]:
    """How far an SAE absorbs parents into children. The parent latent is the one whose decoder row
    is closest to the parent direction. `absorption`: of the rows where a child fires (so its parent
    does too), the fraction in which the parent latent stays silent, less the same fraction on rows
    where the parent fires alone (the latent's plain misses); `parent_recall_alone` is that latent's
    hit rate where the parent fires alone; `child_parent_cosine`: mean cosine between each child's
    closest latent and its parent's direction (a child latent that took over the parent's
    direction has a large one)."""
    x, on, child = toy.sample(count, torch.Generator().manual_seed(seed), with_labels=True)
    z = sae.encode(x) > 0
    decoder = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-12)
    parent_latent = (toy.parents @ decoder.T).argmax(1)  # (P,)
    fires = z[:, parent_latent]  # (count, P)
    with_child, alone = on & (child >= 0), on & (child < 0)
    miss_with_child = 1 - fires[with_child].float().mean().item()
    recall_alone = fires[alone].float().mean().item()
    child_latent = (toy.children.flatten(0, 1) @ decoder.T).argmax(1)
    parents_of = toy.parents.repeat_interleave(toy.children.shape[1], 0)
    child_parent = (decoder[child_latent] * parents_of).sum(1).mean().item()
    return {"absorption": max(0.0, miss_with_child - (1 - recall_alone)), "parent_miss_with_child": miss_with_child,
            "parent_recall_alone": recall_alone, "child_parent_cosine": child_parent}
