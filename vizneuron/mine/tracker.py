"""Streaming top-k / bottom-k and summary statistics for many units at once.

Memory is units x k, whatever the dataset size. A batch becomes a small `Tracker` of its own and is
merged in, so one rule serves streaming, resuming and merging shards: candidates are ranked by value
(descending for top, ascending for bottom) and ties go to the lower image id. That makes the result
independent of batch boundaries and of how a dataset was split into shards.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

# Fixed, data-independent histogram edges (0 and +-10^(e/10), e = -60..40), so histograms of shards
# add up exactly; bins outside the data's range are simply empty.
_DECADES = torch.pow(10.0, torch.arange(-60, 41, dtype=torch.float64) / 10)
HISTOGRAM_EDGES = torch.cat([-_DECADES.flip(0), torch.zeros(1, dtype=torch.float64), _DECADES])
BINS = len(HISTOGRAM_EDGES) + 1  # bin i holds edges[i-1] <= v < edges[i]; the first and last are open


@dataclass
class Tracker:
    """Per unit (rows): the k best and worst images (value, id, flat position) and running stats."""

    top_value: torch.Tensor  # (U, <=k) float32, best first
    top_id: torch.Tensor  # (U, <=k) int64
    top_where: torch.Tensor  # (U, <=k) int64, flat position of the unit's maximum in that image
    bottom_value: torch.Tensor  # (U, <=k) float32, lowest first
    bottom_id: torch.Tensor
    bottom_where: torch.Tensor
    count: torch.Tensor  # (U,) int64: images with a finite value
    total: torch.Tensor  # (U,) float64
    total_sq: torch.Tensor  # (U,) float64
    minimum: torch.Tensor  # (U,) float32
    maximum: torch.Tensor  # (U,) float32
    active: torch.Tensor  # (U,) int64: images where the value is > 0
    histogram: torch.Tensor  # (U, BINS) int64

    @classmethod
    def empty(cls, units: int) -> Tracker:
        return cls.from_batch(torch.empty(0, units), torch.empty(0, units, dtype=torch.long),
                              torch.empty(0, dtype=torch.long))

    @classmethod
    def from_batch(cls, values: torch.Tensor, where: torch.Tensor, ids: torch.Tensor) -> Tracker:
        """A batch's values (B, U), flat positions (B, U) and image ids (B,) as a tracker (k = B)."""
        values, where, ids = values.float().cpu(), where.long().cpu(), ids.long().cpu()
        finite = torch.isfinite(values)
        clean = torch.where(finite, values, torch.zeros(()))
        u = values.shape[1]
        bucket = torch.bucketize(clean.double(), HISTOGRAM_EDGES, right=True)
        flat = (torch.arange(u) * BINS + bucket)[finite]
        ranked_ids = ids[None].expand(u, -1)
        top_value = torch.where(finite, values, -torch.inf).T  # a non-finite value ranks last
        bottom_value = torch.where(finite, values, torch.inf).T
        top, bottom = _select(top_value, ranked_ids, where.T, None, True), _select(
            bottom_value, ranked_ids, where.T, None, False)
        return cls(*top, *bottom,
                   count=finite.sum(0),
                   total=clean.double().sum(0),
                   total_sq=clean.double().pow(2).sum(0),
                   minimum=torch.where(finite, values, torch.inf).amin(0) if len(ids) else torch.full((u,), torch.inf),
                   maximum=torch.where(finite, values, -torch.inf).amax(0) if len(ids)
                   else torch.full((u,), -torch.inf),
                   active=(clean > 0).sum(0),
                   histogram=torch.bincount(flat, minlength=u * BINS).view(u, BINS))

    def merge(self, other: Tracker, k: int) -> Tracker:
        """Both trackers' images, keeping the k best and worst per unit."""
        top = _select(torch.cat([self.top_value, other.top_value], 1), torch.cat([self.top_id, other.top_id], 1),
                      torch.cat([self.top_where, other.top_where], 1), k, True)
        bottom = _select(torch.cat([self.bottom_value, other.bottom_value], 1),
                         torch.cat([self.bottom_id, other.bottom_id], 1),
                         torch.cat([self.bottom_where, other.bottom_where], 1), k, False)
        return Tracker(*top, *bottom, count=self.count + other.count, total=self.total + other.total,
                       total_sq=self.total_sq + other.total_sq, minimum=torch.minimum(self.minimum, other.minimum),
                       maximum=torch.maximum(self.maximum, other.maximum), active=self.active + other.active,
                       histogram=self.histogram + other.histogram)

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors for a checkpoint (safetensors)."""
        return {f.name: getattr(self, f.name).contiguous() for f in fields(self)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Tracker:
        return cls(**{f.name: state[f.name] for f in fields(cls)})

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1)

    @property
    def std(self) -> torch.Tensor:
        variance = self.total_sq / self.count.clamp(min=1) - self.mean**2
        return variance.clamp(min=0).sqrt()


def _select(values: torch.Tensor, ids: torch.Tensor, where: torch.Tensor, k: int | None,
            descending: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank each row by value (ties: lower id first) and keep the first k (all when k is None)."""
    by_id = ids.argsort(dim=1, stable=True)
    values, ids, where = values.gather(1, by_id), ids.gather(1, by_id), where.gather(1, by_id)
    order = values.argsort(dim=1, descending=descending, stable=True)[:, :k]
    return values.gather(1, order), ids.gather(1, order), where.gather(1, order)
