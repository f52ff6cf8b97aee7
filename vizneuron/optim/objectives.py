"""Objectives: functions of captured activations that the optimiser maximises.

An `Objective` maps the activations dict (layer name -> tensor, plus "input" -> the image batch)
to one value per batch image, shape (N,). They compose with +, -, scalar *, / and products:

    channel("layer3", 5) - 1e2 * diversity("layer3")
    Objective(lambda acts: acts["layer2"][:, 7].amax((1, 2)), layers=["layer2"])  # your own
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ..models.base import PLAIN, TokenLayout
from ..units import Unit

INPUT = "input"  # key of the image batch in the activations dict

Acts = dict[str, torch.Tensor]


class Objective:
    """A per-image score to maximise, plus the layers it reads (so capture hooks only those)."""

    def __init__(self, fn: Callable[[Acts], torch.Tensor], layers: Iterable[str] = (), name: str = "custom") -> None:
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, acts: Acts) -> torch.Tensor:
        value = self.fn(acts)
        batch = next(iter(acts.values())).shape[0]
        return value.expand(batch) if value.ndim == 0 else value

    def _combine(self, other: Objective | float, op: Callable, symbol: str) -> Objective:
        if isinstance(other, Objective):
            return Objective(lambda a: op(self(a), other(a)), self.layers + other.layers,
                             f"({self.name} {symbol} {other.name})")
        return Objective(lambda a: op(self(a), other), self.layers, f"({self.name} {symbol} {other})")

    def __add__(self, other):
        return self._combine(other, torch.add, "+")

    __radd__ = __add__

    def __sub__(self, other):
        return self._combine(other, torch.sub, "-")

    def __rsub__(self, other):
        return (-self) + other

    def __neg__(self):
        return Objective(lambda a: -self(a), self.layers, f"-{self.name}")

    def __mul__(self, other):
        return self._combine(other, torch.mul, "*")

    __rmul__ = __mul__

    def __truediv__(self, other: float):
        return self._combine(other, torch.div, "/")

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def unit(u: Unit) -> Objective:
    """Maximise a parsed unit (channel, neuron, direction or logit)."""
    return Objective(u.activation, [u.layer], u.name)


def channel(layer: str, index: int) -> Objective:
    return unit(Unit(layer, "channel", index))


def neuron(layer: str, index: int, y: int, x: int) -> Objective:
    return unit(Unit(layer, "neuron", index, (y, x)))


def direction(layer: str, vector: torch.Tensor) -> Objective:
    return unit(Unit(layer, "direction", direction=torch.as_tensor(vector, dtype=torch.float32), source="vector"))


def slots(units: Sequence[Unit], samples: int = 1) -> Objective:
    """Batch slot i maximises `units[i // samples]`; channel units of one layer share one gather.
    The gather indices are built once per device, not on every step."""
    by_layer: dict[str, list[tuple[int, Unit]]] = {}
    for i, u in enumerate(units):
        for s in range(samples):
            by_layer.setdefault(u.layer, []).append((i * samples + s, u))
    total = len(units) * samples
    gathers = {
        layer: [(i, u.index) for i, u in members if u.kind in ("channel", "logit")]
        for layer, members in by_layer.items()
    }
    others = {layer: [(i, u) for i, u in members if u.kind not in ("channel", "logit")]
              for layer, members in by_layer.items()}
    on_device: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def indices(layer: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if (layer, device) not in on_device:
            pairs = torch.tensor(gathers[layer], dtype=torch.long).view(-1, 2).to(device)
            on_device[layer, device] = (pairs[:, 0], pairs[:, 1])
        return on_device[layer, device]

    def fn(acts: Acts) -> torch.Tensor:
        out = None
        for layer, members in by_layer.items():
            act = members[0][1].view(acts[layer])
            if out is None:
                out = act.new_zeros(total, dtype=torch.float32)
            if gathers[layer]:
                idx, chans = indices(layer, act.device)
                picked = act[idx, chans]
                out = out.index_add(0, idx, (picked.flatten(1).mean(1) if picked.ndim > 1 else picked).float())
            for i, u in others[layer]:
                value = u.activation({layer: acts[layer][i : i + 1]}).float()
                out = out.index_add(0, torch.tensor([i], device=act.device), value)
        return out

    return Objective(fn, list(by_layer), f"slots[{total}]")


def diversity(layer: str, groups: int = 1, tokens: TokenLayout = PLAIN) -> Objective:
    """How alike each image's Gram matrix is to the others' in its group (cosine similarity summed
    over the group, divided by its size; the batch splits into `groups` equal consecutive groups).
    A penalty, written as in lucid: maximise `channel(...) - 1e2 * diversity(layer)`. On token
    layers the Gram matrix is taken over the patch tokens only (`tokens`: the model's layout, whose
    prefix tokens such as CLS are left out): they are the image's positions."""
    patches = TokenLayout(tokens.prefix)

    def fn(acts: Acts) -> torch.Tensor:
        act = patches.channels_first(acts[layer])
        n, c = act.shape[:2]
        flat = act.reshape(n, c, -1)
        gram = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).reshape(n, -1), dim=1)
        sim = gram @ gram.T
        size = n // groups
        group = torch.arange(n, device=act.device) // size
        mask = (group[:, None] == group[None, :]) & ~torch.eye(n, dtype=torch.bool, device=act.device)
        return (sim * mask).sum(1) / size

    return Objective(fn, [layer], f"diversity({layer})")


def l1(constant: float = 0.5) -> Objective:
    """Mean absolute deviation of the image from `constant` (penalise with a minus sign)."""
    return Objective(lambda a: (a[INPUT] - constant).abs().flatten(1).mean(1), [], "l1")


def total_variation() -> Objective:
    def fn(a: Acts) -> torch.Tensor:
        x = a[INPUT]
        dy = (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1).mean(1)
        dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
        return dx + dy

    return Objective(fn, [], "tv")


def blur(kernel: int = 3) -> Objective:
    """Squared distance between the image and its box-blurred copy (lucid's blur_input_each_step)."""

    def fn(a: Acts) -> torch.Tensor:
        x = a[INPUT]
        blurred = F.avg_pool2d(F.pad(x, (kernel // 2,) * 4, mode="replicate"), kernel, stride=1)
        return ((x - blurred.detach()) ** 2).flatten(1).sum(1)

    return Objective(fn, [], "blur")
