"""How good is an SAE? Sparsity (L0), reconstruction (FVU), dead latents, and downstream fidelity:
the model's accuracy with the layer replaced by the SAE's reconstruction, against clean and
mean-ablated accuracy (the vision analogue of "CE loss recovered")."""

from __future__ import annotations

from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..capture import capture
from ..mine.sources import ModelInputs, as_source
from ..models.base import Model
from .data import from_rows, rows_of
from .model import SAE


def class_index(model: Model) -> Callable[[str | None], int | None]:
    """Maps a dataset label (class folder name, or a class index as text) to the model's class index."""
    labels = [label.lower() for label in model.labels or []]

    def lookup(label: str | None) -> int | None:
        if label is None:
            return None
        if label.isdigit():
            return int(label) if int(label) < len(labels) else None
        wanted = label.lower().replace("_", " ")
        for i, known in enumerate(labels):
            if wanted == known or wanted in (part.strip() for part in known.split(",")):
                return i
        return None

    return lookup


def evaluate_sae(sae: SAE, model: Model, layer: str, data: Any, *, batch_size: int = 128,
                 max_images: int | None = None, targets: Callable[[int, str | None], int | None] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """All metrics over `data`. Accuracy needs labels: class folders matching the model's labels,
    or `targets(image_id, label) -> class index`."""
    layer = model.resolve_layer(layer)
    source = as_source(data)
    count = len(source) if max_images is None else min(max_images, len(source))
    to_class = targets or (lambda _i, label, lookup=class_index(model): lookup(label))
    inputs = torch.utils.data.Subset(ModelInputs(source, model.input_size, model.crop_fraction), range(count))
    loader = torch.utils.data.DataLoader(inputs, batch_size=batch_size)
    d = sae.config.d_in
    sums = {"rows": 0, "err": 0.0, "sq": 0.0, "active": 0.0}
    total = torch.zeros(d, dtype=torch.float64)
    fired = torch.zeros(sae.config.d_sae, dtype=torch.bool)
    layer_sum, images = None, 0
    correct = {"clean": 0, "sae": 0, "mean_ablated": 0}
    labelled = 0
    batches = []

    def splice(act: torch.Tensor) -> torch.Tensor:
        rows = rows_of(act, model, sae.config.pool)
        reconstruction = sae.decode(sae.encode(rows))
        if sae.config.pool:  # per-image SAE: shift every position by the change in the image mean
            shift = (reconstruction - rows).reshape(*rows.shape, *([1] * (act.ndim - 2)))
            return act + (shift if act.ndim == 4 else shift.transpose(1, 2) if act.ndim == 3 else shift)
        return from_rows(reconstruction, act, model)

    with torch.no_grad(), capture(model, [layer], stop_early=False) as cap:  # pass 1: clean, and the SAE
        for ids, images_batch, _, skips in tqdm(loader, disable=not progress, desc="SAE eval (clean)"):
            ok = torch.tensor([not reason for reason in skips])
            x = images_batch[ok].to(model.device)
            acts = cap.run(x)
            act, logits = acts[layer], cap.output
            rows = rows_of(act, model, sae.config.pool).float()
            x_hat, z = sae(rows)
            sums["rows"] += len(rows)
            sums["err"] += (rows - x_hat).double().pow(2).sum().item()
            sums["sq"] += rows.double().pow(2).sum().item()
            sums["active"] += (z > 0).sum().item()
            total += rows.double().sum(0).cpu()
            fired |= (z > 0).any(0).cpu()
            layer_sum = act.double().sum(0) if layer_sum is None else layer_sum + act.double().sum(0)
            images += len(x)
            kept_ids = ids[ok].tolist()
            classes = [to_class(i, source.label(i)) for i in kept_ids]
            target = torch.tensor([-1 if c is None else c for c in classes])
            labelled += int((target >= 0).sum())
            correct["clean"] += int((logits.argmax(1).cpu() == target).sum())
            batches.append((ids[ok], target))
    variance = sums["sq"] - total.pow(2).sum().item() / max(sums["rows"], 1)
    mean_act = (layer_sum / max(images, 1)).float()
    for name, edit in (("sae", splice), ("mean_ablated", lambda act: mean_act.expand_as(act))):
        with torch.no_grad(), capture(model, [layer], edits={layer: edit}) as cap:  # pass 2: edited
            for kept_ids, target in tqdm(batches, disable=not progress, desc=f"SAE eval ({name})"):
                x = torch.stack([inputs[i][1] for i in kept_ids.tolist()]).to(model.device)
                cap.run(x)
                correct[name] += int((cap.output.argmax(1).cpu() == target).sum())
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
