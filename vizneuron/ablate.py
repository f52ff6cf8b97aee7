"""Holding units at a value inside a layer: the one intervention that edits (zero and mean ablation),
circuits (mean ablation to a reference, downstream effects, what is left without the top inputs)
and SHIFT share.

A channel, neuron or direction is set to its value directly. An SAE feature moves only its decoded
contribution, (target - code) x its decoder row, from the SAE's encoding of the unedited output, so
the SAE's reconstruction error stays in and an input on which the feature already sits at the
target passes through unchanged (the feature ablation of Marks et al. 2024, "Sparse Feature
Circuits").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import VizneuronError
from .units import Unit, map_group, unit_maps

#: what each unit is held at: one number per unit (the same at every position), or a reference
#: output of the layer shaped (1, ...) (e.g. its mean over images), each unit at its own value there,
#: position by position
Target = Sequence[float] | torch.Tensor

HOLDABLE = ("channel", "neuron", "direction", "sae")


def hold(output: torch.Tensor, units: Sequence[Unit], at: Target) -> torch.Tensor:
    """`output` (one layer's output, a batch) with every unit of `units` (all of that layer) held at
    `at`. SAE features move together, as the SAE's encoding of the unedited output says; then
    channels and directions, in order (a later one wins where they overlap); then single neurons."""
    units = list(units)
    if not units:
        return output
    for unit in units:
        if unit.kind not in HOLDABLE:
            raise VizneuronError(f"{unit.name}: a {unit.kind} unit cannot be held inside a layer (holdable: "
                                 f"{', '.join(HOLDABLE)})")
    targets = _targets(units, at, output)
    tokens = units[0].tokens
    rows = tokens.rows(output)  # (N * S, C), or (N, C) for vector layers
    by_sae: dict[int, list[int]] = {}
    for i, unit in enumerate(units):
        if unit.kind == "sae":
            by_sae.setdefault(id(unit.sae), []).append(i)
    change = torch.zeros_like(rows) if by_sae else None
    for members in by_sae.values():
        sae = units[members[0]].sae
        codes = unit_maps([units[i] for i in members], output)  # (N, F, S): the features' values
        target = torch.stack([torch.as_tensor(targets[i], dtype=codes.dtype, device=codes.device).expand(
            codes.shape[0], codes.shape[2]) for i in members], 1)
        moved = (target - codes).transpose(1, 2) @ sae.directions([units[i].index for i in members]).to(codes)
        if sae.config.pool:  # a per-image feature moves every position of the image alike
            moved = moved.expand(-1, rows.shape[0] // codes.shape[0], -1)
        change = change + moved.reshape(rows.shape)
    # a fresh tensor, so channels are written into it in place (one copy of the layer, not one per
    # channel); a direction makes a new one, so nothing autograd saved is ever written over
    rows = rows + change if change is not None else rows.clone()
    for unit, target in zip(units, targets):
        value = _as_rows(target, rows)
        if unit.kind == "channel":
            rows[:, unit.index] = value
        elif unit.kind == "direction":
            direction = unit.direction.to(rows)
            rows = rows + (value - rows @ direction)[:, None] * direction / direction.dot(direction)
    edited = tokens.from_rows(rows, output)
    neurons = [(unit, target) for unit, target in zip(units, targets) if unit.kind == "neuron"]
    if neurons:
        edited = edited.clone()
        for unit, target in neurons:
            y, x = unit.position
            edited[:, unit.index, y, x] = target[:, 0] if isinstance(target, torch.Tensor) else target
    return edited


def _targets(units: list[Unit], at: Target, output: torch.Tensor) -> list[float | torch.Tensor]:
    """Each unit's target: a number, or its map over the layer's positions on the reference, (N, S)."""
    if not isinstance(at, torch.Tensor):
        if len(at) != len(units):
            raise VizneuronError(f"{len(at)} values for {len(units)} units")
        return [float(v) for v in at]
    reference = at.to(output)
    if reference.shape[1:] != output.shape[1:] or reference.shape[0] != 1:
        raise VizneuronError(f"a reference of shape {tuple(reference.shape)} for a layer output of shape "
                             f"{tuple(output.shape)}: give one (1, ...) output of the layer")
    groups: dict[tuple, list[int]] = {}
    for i, unit in enumerate(units):
        groups.setdefault(map_group(unit), []).append(i)
    targets: list[float | torch.Tensor] = [0.0] * len(units)
    for members in groups.values():
        maps = unit_maps([units[i] for i in members], reference)  # (1, U, S): mapped once per group
        for column, i in enumerate(members):
            targets[i] = maps[:, column].expand(output.shape[0], -1)
    return targets


def _as_rows(target: float | torch.Tensor, rows: torch.Tensor) -> float | torch.Tensor:
    """A unit's target as one value per row of `rows`: a number as it is, a map (N, S) flattened."""
    return target.reshape(-1).to(rows) if isinstance(target, torch.Tensor) else target
