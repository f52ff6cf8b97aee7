"""Streaming top-k / bottom-k and summary statistics for many units at once.

Memory is units x k (times the heatmap's cells), whatever the dataset size. Each kept example
keeps the unit's heatmap from the pass that ranked it, so drawing it needs no second forward pass.
A batch becomes a small `Tracker` of its own and is merged in, so one rule serves streaming,
resuming and merging shards: candidates are ranked by value (descending for top, ascending for
bottom), equal values by a second key (`TIE_KEY`: the unit's mean over positions, so the images a
saturating ReLU6 unit clips at 6 are told apart by how much of them drives it), and what is still
equal goes to the lower image id. That makes the result independent of batch boundaries and of
how a dataset was split into shards.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..errors import VizneuronError

# Fixed, data-independent histogram edges (0 and +-10^(e/10), e = -60..40), so histograms of shards
# add up exactly; bins outside the data's range are simply empty.
_DECADES = torch.pow(10.0, torch.arange(-60, 41, dtype=torch.float64) / 10)
HISTOGRAM_EDGES = torch.cat([-_DECADES.flip(0), torch.zeros(1, dtype=torch.float64), _DECADES])
BINS = len(HISTOGRAM_EDGES) + 1  # bin i holds edges[i-1] <= v < edges[i]; the first and last are open
#: what orders examples of equal value (recorded in each index): with reduce="max" the mean over
#: positions, with reduce="mean" the maximum
TIE_KEY = {"max": "mean over positions", "mean": "maximum over positions"}


@dataclass
class Tracker:
    """Per unit (rows): the k best and worst images (value, id, flat position) and running stats."""

    top_value: torch.Tensor  # (U, <=k) float32, best first
    top_id: torch.Tensor  # (U, <=k) int64
    top_where: torch.Tensor  # (U, <=k) int64, flat position of the unit's maximum in that image
    top_heat: torch.Tensor  # (U, <=k, C) float16: the unit's pooled map on that image (C: 0 without grids)
    top_tie: torch.Tensor  # (U, <=k) float32: the second key, for equal values (TIE_KEY)
    bottom_value: torch.Tensor  # (U, <=k) float32, lowest first
    bottom_id: torch.Tensor
    bottom_where: torch.Tensor
    bottom_heat: torch.Tensor
    bottom_tie: torch.Tensor
    count: torch.Tensor  # (U,) int64: images with a finite value
    total: torch.Tensor  # (U,) float64
    total_sq: torch.Tensor  # (U,) float64
    minimum: torch.Tensor  # (U,) float32
    maximum: torch.Tensor  # (U,) float32
    active: torch.Tensor  # (U,) int64: images where the value is > 0
    histogram: torch.Tensor  # (U, BINS) int64

    @classmethod
    def empty(cls, units: int, cells: int = 0) -> Tracker:
        return cls.from_batch(torch.empty(0, units), torch.empty(0, units, dtype=torch.long),
                              torch.empty(0, dtype=torch.long), torch.empty(0, units, cells, dtype=torch.float16))

    @classmethod
    def from_batch(cls, values: torch.Tensor, where: torch.Tensor, ids: torch.Tensor,
                   heat: torch.Tensor | None = None, k: int | None = None, tie: torch.Tensor | None = None) -> Tracker:
        """A batch's values (B, U), flat positions (B, U), image ids (B,), heatmaps (B, U, C) and
        second keys (B, U) as a tracker keeping the batch's k best and worst per unit (all when k is None)."""
        values, where, ids = values.float().cpu(), where.long().cpu(), ids.long().cpu()
        heat = torch.empty(*values.shape, 0, dtype=torch.float16) if heat is None else heat.half().cpu()
        tie = torch.zeros_like(values) if tie is None else torch.nan_to_num(tie.float().cpu())
        finite = torch.isfinite(values)
        clean = torch.where(finite, values, torch.zeros(()))
        u = values.shape[1]
        bucket = torch.bucketize(clean.double(), HISTOGRAM_EDGES, right=True)
        flat = (torch.arange(u) * BINS + bucket)[finite]
        ranked_ids = ids[None].expand(u, -1)
        top_value = torch.where(finite, values, -torch.inf).T  # a non-finite value ranks last
        bottom_value = torch.where(finite, values, torch.inf).T
        heat, tie = heat.transpose(0, 1), tie.T
        top, bottom = _select(top_value, ranked_ids, where.T, heat, tie, k, True), _select(
            bottom_value, ranked_ids, where.T, heat, tie, k, False)
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
        top, bottom = (_select(*(torch.cat([getattr(self, f"{side}_{name}"), getattr(other, f"{side}_{name}")], 1)
                                 for name in ("value", "id", "where", "heat", "tie")), k, side == "top")
                       for side in ("top", "bottom"))
        return Tracker(*top, *bottom, count=self.count + other.count, total=self.total + other.total,
                       total_sq=self.total_sq + other.total_sq, minimum=torch.minimum(self.minimum, other.minimum),
                       maximum=torch.maximum(self.maximum, other.maximum), active=self.active + other.active,
                       histogram=self.histogram + other.histogram)

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors for a checkpoint (safetensors)."""
        return {f.name: getattr(self, f.name).contiguous() for f in fields(self)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], strict: bool = True) -> Tracker:
        """A checkpoint's tracker. One written by an older vizneuron lacks the heatmaps and second
        keys kept while streaming: refused when `strict` (a run in progress cannot go on from it),
        else filled in empty (merging finished shards, whose examples hold their heatmaps)."""
        missing = [f.name for f in fields(cls) if f.name not in state]
        if missing and strict:
            raise VizneuronError(f"this index's checkpoint lacks {', '.join(missing)}: a run begun by an older "
                                 "vizneuron; delete the index file to mine again")
        for side in ("top", "bottom"):
            shape = state[f"{side}_id"].shape
            state.setdefault(f"{side}_heat", torch.empty(*shape, 0, dtype=torch.float16))
            state.setdefault(f"{side}_tie", torch.zeros(shape))
        return cls(**{f.name: state[f.name] for f in fields(cls)})

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1)

    @property
    def std(self) -> torch.Tensor:
        variance = self.total_sq / self.count.clamp(min=1) - self.mean**2
        return variance.clamp(min=0).sqrt()


def _select(values: torch.Tensor, ids: torch.Tensor, where: torch.Tensor, heat: torch.Tensor, tie: torch.Tensor,
            k: int | None, descending: bool) -> tuple[torch.Tensor, ...]:
    """Rank each row by value, equal values by `tie` (the same direction), what is still equal by
    the lower id, and keep the first k (all when k is None); the heatmaps (U, n, C) and ties follow
    their examples. Three stable sorts, least significant key first."""
    order = ids.argsort(dim=1, stable=True)
    order = order.gather(1, tie.gather(1, order).argsort(dim=1, descending=descending, stable=True))
    order = order.gather(1, values.gather(1, order).argsort(dim=1, descending=descending, stable=True))[:, :k]
    return (values.gather(1, order), ids.gather(1, order), where.gather(1, order),
            heat.gather(1, order[..., None].expand(-1, -1, heat.shape[2])), tie.gather(1, order))
