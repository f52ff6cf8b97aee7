"""How good is an SAE? Sparsity (L0), reconstruction (FVU), dead latents, and downstream fidelity:
the model's accuracy with the layer replaced by the SAE's reconstruction, against clean and
mean-ablated accuracy (the vision analogue of "CE loss recovered")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from ..models.base import Model
from ..stream import ActivationStream
from .model import SAE


def evaluate_sae(sae: SAE, model: Model, layer: str, data: Any, *, batch_size: int = 128,
                 max_images: int | None = None, targets: Callable[[int, str | None], int | None] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """All metrics over `data`. Accuracy needs labels: class folders matching the model's labels,
    or `targets(image_id, label) -> class index`."""
    layer = model.resolve_layer(layer)
    tokens = model.inputs.tokens
    clean = ActivationStream(model, [layer], data, batch_size=batch_size, max_images=max_images, full_pass=True)
    source = clean.source
    to_class = targets or (lambda _i, label: model.class_index(label))
    d = sae.config.d_in
    sums = {"rows": 0, "err": 0.0, "sq": 0.0, "active": 0.0}
    total = torch.zeros(d, dtype=torch.float64)
    fired = torch.zeros(sae.config.d_sae, dtype=torch.bool)
    layer_sum, images = None, 0
    correct = {"clean": 0, "sae": 0, "mean_ablated": 0}
    kept_ids, kept_targets = [], []

    def splice(act: torch.Tensor) -> torch.Tensor:
        rows = tokens.rows(act, sae.config.pool)
        reconstruction = sae.reconstruct(rows)
        if sae.config.pool:  # per-image SAE: shift every position by the change in the image mean
            shift = (reconstruction - rows).reshape(*rows.shape, *([1] * (act.ndim - 2)))
            return act + (shift if act.ndim == 4 else shift.transpose(1, 2) if act.ndim == 3 else shift)
        return tokens.from_rows(reconstruction, act)

    for batch in tqdm(clean, disable=not progress, desc="SAE eval (clean)"):  # pass 1: clean, and the SAE
        if not batch.activations:
            continue
        act = batch.activations[layer]
        rows = tokens.rows(act, sae.config.pool).float()
        x_hat, z = sae(rows)
        sums["rows"] += len(rows)
        sums["err"] += (rows - x_hat).double().pow(2).sum().item()
        sums["sq"] += rows.double().pow(2).sum().item()
        sums["active"] += (z > 0).sum().item()
        total += rows.double().sum(0).cpu()
        fired |= (z > 0).any(0).cpu()
        layer_sum = act.double().sum(0) if layer_sum is None else layer_sum + act.double().sum(0)
        images += len(batch.ids)
        classes = [to_class(i, source.label(i)) for i in batch.ids.tolist()]
        target = torch.tensor([-1 if c is None else c for c in classes])
        correct["clean"] += int((batch.output.argmax(1).cpu() == target).sum())
        kept_ids += batch.ids.tolist()
        kept_targets.append(target)
    targets_all = torch.cat(kept_targets) if kept_targets else torch.zeros(0, dtype=torch.long)
    labelled = int((targets_all >= 0).sum())
    variance = sums["sq"] - total.pow(2).sum().item() / max(sums["rows"], 1)
    mean_act = (layer_sum / max(images, 1)).float() if layer_sum is not None else None
    for name, edit in (("sae", splice), ("mean_ablated", lambda act: mean_act.expand_as(act))):
        edited = ActivationStream(model, [layer], source, batch_size=batch_size, ids=kept_ids, full_pass=True,
                                  edits={layer: edit})  # pass 2: the layer replaced
        seen = 0
        for batch in tqdm(edited, disable=not progress, desc=f"SAE eval ({name})"):
            target = targets_all[seen : seen + len(batch.ids)]
            seen += len(batch.ids)
            correct[name] += int((batch.output.argmax(1).cpu() == target).sum())
    result: dict[str, Any] = {"images": images, "rows": sums["rows"], "l0": sums["active"] / max(sums["rows"], 1),
                              "fvu": sums["err"] / max(variance, 1e-12),
                              "dead_fraction": 1 - fired.float().mean().item()}
    if labelled:
        accuracy = {name: value / labelled for name, value in correct.items()}
        result.update({f"accuracy_{name}": value for name, value in accuracy.items()})
        span = accuracy["clean"] - accuracy["mean_ablated"]
        result["fidelity_recovered"] = (accuracy["sae"] - accuracy["mean_ablated"]) / span if span else None
    result["labelled_images"] = labelled
    return result
