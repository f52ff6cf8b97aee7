"""Training an SAE on activations: a tensor (N, d) or any iterable of such chunks, memory bounded.

Dead latents are kept low with the AuxK loss (Gao et al. 2024): latents that have not fired for
`dead_after` samples reconstruct the remaining error with their own top-`aux_k`, so gradient
reaches them and pulls them back towards the data.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import VizneuronError
from ..imageio import write_atomic
from ..models.base import Model
from ..sources import as_source
from ..stream import Workers
from .config import THRESHOLDED, SAETrainConfig
from .data import ActivationFolder, layer_activations, layers_activations
from .model import SAE


def shuffled_batches(chunks: Iterable[torch.Tensor], batch_size: int, buffer: int,
                     gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches drawn from a shuffling buffer of at most `buffer` rows (half is emitted when full)."""
    held: list[torch.Tensor] = []
    size = 0
    for chunk in chunks:
        held.append(chunk.reshape(-1, chunk.shape[-1]).float())
        size += len(held[-1])
        if size >= buffer:
            pool = torch.cat(held)
            del held[:]  # one copy of the rows at a time
            order = torch.randperm(len(pool), generator=gen)
            emit = (len(pool) - len(pool) // 2) // batch_size * batch_size  # about half, whole batches
            for i in range(0, emit, batch_size):
                yield pool[order[i : i + batch_size]]
            held, size = [pool[order[emit:]]], len(pool) - emit
            del pool
    if size:
        pool = torch.cat(held)
        order = torch.randperm(len(pool), generator=gen)
        for i in range(0, len(pool), batch_size):
            yield pool[order[i : i + batch_size]]


def _epochs(activations, epochs: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """The data `epochs` times: a tensor is split into chunks; an iterable is iterated again."""
    for _ in range(epochs):
        if isinstance(activations, torch.Tensor):
            yield from activations.reshape(-1, activations.shape[-1]).split(65536)
        elif callable(activations):
            yield from activations()
        else:
            yield from activations
            if epochs > 1 and iter(activations) is activations:
                raise VizneuronError("several epochs need a tensor, a list, or a callable returning a fresh iterator")


def train_sae(
    activations: torch.Tensor | Iterable[torch.Tensor] | Callable[[], Iterable[torch.Tensor]],
    config: SAETrainConfig | None = None,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 200,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
    **overrides: Any,
) -> SAE:
    """Train an SAE on rows of `activations` ((N, d) tensor, an iterable of (n, d) chunks, or a
    callable returning a fresh iterable for each epoch).

    `config` (or keyword overrides of its fields, e.g. `d_sae=512, k=8`) sets the architecture and
    training. `checkpoint`: a file to save progress to every `checkpoint_every` steps; a run
    started again with the same data and settings resumes from it (the batches it had consumed
    are skipped, so it ends where an uninterrupted run would). `provenance`: model, layer, pool.
    """
    cfg = replace(config or SAETrainConfig(), **overrides)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(device) if device is not None else torch.device("cpu")
    rows = activations.reshape(-1, activations.shape[-1]).shape[0] if isinstance(activations, torch.Tensor) else None
    batch_size = cfg.batch_size or auto_batch_size(rows)
    restartable = isinstance(activations, torch.Tensor) or callable(activations) or iter(activations) is not activations
    epochs = cfg.epochs or (cfg.max_epochs if restartable else 1)
    chunks = _epochs(activations, epochs, gen)
    head = next(chunks, None)
    if head is None:
        raise VizneuronError("no activations to train on")
    buffer = cfg.buffer or max(4 * batch_size, (1 << 26) // head.shape[-1])  # ~256 MB of float32 rows
    stream = shuffled_batches(_prepend(head, chunks), batch_size, buffer, gen)
    del head  # memory stays at the buffer, not a chunk more
    first = next(stream, None)
    if first is None:
        raise VizneuronError("no activations to train on")
    d_in = first.shape[1]
    scale = float((d_in / first.pow(2).sum(1).mean().clamp(min=1e-12)).sqrt())
    sae = SAE(cfg.architecture(d_in, scale, **(provenance or {}))).to(device)
    d_sae = sae.config.d_sae
    sae.initialise(gen, first.mean(0) * scale)
    if cfg.kind == "jumprelu":  # start where k latents per row fire on the first batch, as BatchTopK would
        with torch.no_grad():
            kth = sae.pre_activations(first.to(device)).flatten().topk(cfg.k * len(first)).values[-1]
            sae.log_threshold.fill_(math.log(max(float(kth), MIN_THRESHOLD)))
    prefix_ends = matryoshka_prefixes(d_sae, cfg.prefixes) if cfg.kind == "matryoshka" else [d_sae]
    aux_k = cfg.aux_k or min(d_in // 2, d_sae // 2)
    optimiser = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    monitor = Plateau(cfg.plateau)
    # jumprelu, and relu with its L1 weight steered: running mean of the training L0 (converged only
    # once it is within L0_TOLERANCE of k)
    l0_mean = float(cfg.k)
    steer_l1 = cfg.kind == "relu" and cfg.l1 is None
    l1 = cfg.l1 if cfg.l1 is not None else L1_START
    identity = {"d_in": d_in, **asdict(cfg)}  # what must match for a checkpoint to be resumed
    step, skip, samples = 0, 0, 0
    if checkpoint is not None and Path(checkpoint).exists():
        try:
            state = torch.load(checkpoint, weights_only=True)
        except Exception as err:  # truncated or not a checkpoint: pickle errors come in many classes
            raise VizneuronError(f"checkpoint {checkpoint} cannot be read ({type(err).__name__}); delete it to "
                                 "start over") from None
        if state["settings"] != identity:
            raise VizneuronError(f"checkpoint {checkpoint} was made with other settings; delete it to start over")
        sae.load_state_dict(state["sae"])
        optimiser.load_state_dict(state["optimiser"])
        since_fired, skip = state["since_fired"].to(device), int(state["step"])
        monitor = Plateau.from_state(cfg.plateau, state["monitor"])
        l0_mean, l1 = float(state["l0_mean"]), float(state.get("l1", l1))
    bar = tqdm(desc=f"SAE {d_in}->{d_sae}", unit="step", disable=not progress)
    stopped = "epochs" if cfg.epochs else "data"  # what ended the run, unless a plateau does first
    for batch in _prepend(first, stream):
        step += 1
        samples += len(batch)
        if step <= skip:  # consumed before the checkpoint: same stream, so skip to where it stopped
            continue
        x = batch.to(device)
        pre = sae.pre_activations(x)
        target = x * scale  # errors are measured in the normalised space, where E||x||^2 = d_in
        if cfg.kind == "topk":  # k decoder rows per sample instead of all d_sae: the same numbers, faster
            values, indices = sae.top(pre)
            errors = [target - sae.decode_top(values, indices)]
            fired = torch.zeros(d_sae, dtype=torch.bool, device=device).index_fill_(0, indices[values > 0], True)
        else:
            z = sae.activate(pre)
            errors = _prefix_errors(sae, z, target, prefix_ends)
            fired = (z > 0).any(0)
        error = errors[-1]
        loss = sum(e.pow(2).sum(1).mean() for e in errors) / (len(errors) * d_in)
        if cfg.kind == "relu":
            loss = loss + l1 * z.sum(1).mean()
            if steer_l1:
                l0_now = (z > 0).sum(1).float().mean().item()
                l0_mean += (l0_now - l0_mean) / WINDOW
        if cfg.kind == "jumprelu":
            l0 = sae.l0_estimate(pre)
            loss = loss + L0_WEIGHT * l0
            l0_now = l0.item()  # one device sync a step: the running mean and the threshold shift both read it
            l0_mean += (l0_now - l0_mean) / WINDOW
        if cfg.kind in THRESHOLDED:  # inference threshold: running mean of the smallest kept activation
            with torch.no_grad():
                kept = z[z > 0]
                if len(kept):
                    smallest = kept.min()
                    sae.threshold.copy_(smallest if step == 1 else sae.threshold.lerp(smallest, 0.01))
        since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + len(x))
        dead = since_fired > cfg.dead_after
        if cfg.aux_weight and dead.any():
            dead_latents = dead.nonzero().squeeze(1)  # the top-k among these columns alone: no full-width copy
            values, picked = pre[:, dead_latents].topk(min(aux_k, len(dead_latents)), dim=1)
            indices = dead_latents[picked]
            residual = error.detach()
            aux_error = residual - sae.decode_top(torch.relu(values), indices, bias=False)
            loss = loss + cfg.aux_weight * aux_error.pow(2).sum(1).mean() / residual.pow(2).sum(1).mean().clamp(
                min=1e-12)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        sae.normalise_decoder()
        if cfg.kind == "jumprelu":  # the penalty shapes which latents fire; this shift keeps how many at k
            with torch.no_grad():
                sae.log_threshold.add_(L0_GAIN * (l0_now / cfg.k - 1))
        if steer_l1:  # relu: the L1 weight rises while more than k latents fire, falls while fewer (at most
            # L1_GAIN a step, so it neither overshoots at the start, when half the latents fire, nor collapses)
            l1 *= math.exp(L1_GAIN * max(-1.0, min(1.0, math.log(max(l0_now, 1e-3) / cfg.k))))
        with torch.no_grad():
            monitor.add(float(error.pow(2).sum() / (target - target.mean(0)).pow(2).sum().clamp(min=1e-12)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", dead=int(dead.sum()), refresh=False)
        if checkpoint is not None and step % checkpoint_every == 0:
            _save_checkpoint(checkpoint, sae, optimiser, since_fired, step, identity, monitor, l0_mean, l1)
        settled = not (cfg.kind == "jumprelu" or steer_l1) or abs(l0_mean / cfg.k - 1) <= L0_TOLERANCE
        if cfg.epochs is None and step >= cfg.min_steps and monitor.converged and settled:
            stopped = "plateau"
            break
    bar.close()
    converged = monitor.converged and settled
    record = {"steps": step, "samples_seen": samples, "batch_size": batch_size,
              "epochs_run": round(samples / rows, 2) if rows else None, "final_fvu": monitor.last,
              "converged": converged, "stopped": stopped,
              "dead_at_end": int((since_fired > cfg.dead_after).sum())}
    sae.config.training.update(record)
    if not converged:
        warnings.warn(_not_converged(record, cfg, monitor, l0_mean), NotConverged, stacklevel=2)
    if checkpoint is not None:
        _save_checkpoint(checkpoint, sae, optimiser, since_fired, step, identity, monitor, l0_mean, l1)
    return sae.eval().requires_grad_(False)


WINDOW = 200  # optimiser steps per convergence window
MIN_THRESHOLD = 1e-3  # jumprelu: the lowest starting threshold (normalised space, pre-activations ~ 1)
L0_WEIGHT = 3e-2  # jumprelu: the L0 penalty's weight (per latent, against FVU-scale error)
L0_GAIN = 0.05  # jumprelu: log-threshold shift per step, per unit of relative L0 error (holds L0 at k)
L0_TOLERANCE = 0.1  # jumprelu, steered relu: converged only with the mean training L0 within 10 % of k
L1_START = 5e-3  # relu: the L1 weight a steered run starts from
L1_GAIN = 0.01  # relu: the most the steered L1 weight changes a step (relative, log scale)


def matryoshka_prefixes(d_sae: int, prefixes: int) -> list[int]:
    """Ends of the nested prefixes: d_sae/2**(prefixes-1), ..., d_sae/2, d_sae."""
    return sorted({max(1, d_sae >> shift) for shift in range(prefixes)})


def _prefix_errors(sae: SAE, z: torch.Tensor, target: torch.Tensor, ends: list[int]) -> list[torch.Tensor]:
    """Reconstruction error of each nested prefix of the latents (one, the whole SAE, unless
    matryoshka), built up group by group so it costs one decode."""
    errors, reconstruction, start = [], sae.b_dec.expand_as(target), 0
    for end in ends:
        reconstruction = reconstruction + z[:, start:end] @ sae.W_dec[start:end]
        errors.append(target - reconstruction)
        start = end
    return errors


class NotConverged(UserWarning):
    """An SAE whose training ended while its reconstruction error was still falling."""


def auto_batch_size(rows: int | None) -> int:
    """About 1/100 of the data per step (a power of two, 256-4096); 4096 when the size is unknown
    (streamed data too large to hold)."""
    if rows is None:
        return 4096
    return int(min(4096, max(256, 2 ** round(math.log2(max(rows, 1) / 100)))))


class Plateau:
    """Mean training FVU over windows of `WINDOW` steps; converged when the last window improved on
    the one before by less than `tolerance` (relative)."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance, self.total, self.count = tolerance, 0.0, 0
        self.means: list[float] = []

    @classmethod
    def from_state(cls, tolerance: float, state: dict[str, Any]) -> Plateau:
        monitor = cls(tolerance)
        monitor.total, monitor.count, monitor.means = state["total"], state["count"], list(state["means"])
        return monitor

    def state(self) -> dict[str, Any]:
        return {"total": self.total, "count": self.count, "means": self.means}

    def add(self, fvu: float) -> None:
        self.total, self.count = self.total + fvu, self.count + 1
        if self.count == WINDOW:
            self.means.append(self.total / WINDOW)
            self.total, self.count = 0.0, 0

    @property
    def last(self) -> float | None:
        return round(self.means[-1], 5) if self.means else None

    @property
    def improvement(self) -> float | None:
        """Relative fall of the mean FVU over the last window."""
        if len(self.means) < 2:
            return None
        return (self.means[-2] - self.means[-1]) / max(self.means[-2], 1e-12)

    @property
    def converged(self) -> bool:
        return self.improvement is not None and self.improvement < self.tolerance


def _not_converged(record: dict[str, Any], cfg: SAETrainConfig, monitor: Plateau, l0_mean: float) -> str:
    still = (f"fewer than {2 * WINDOW} steps: too few to tell" if monitor.improvement is None
             else f"its mean L0 was still {l0_mean:.1f}, not yet within {L0_TOLERANCE:.0%} of k={cfg.k}"
             if monitor.converged
             else f"its FVU still fell {monitor.improvement:.1%} over the last {WINDOW} steps")
    how = ("leave epochs unset to train until the FVU levels off" if cfg.epochs is not None
           else "give it more data, or a higher max_epochs")
    return (f"SAE training stopped after {record['steps']} steps ({record['samples_seen']:,} samples) before "
            f"converging: {still} (FVU {record['final_fvu']}); {how}")


def _prepend(first: torch.Tensor, rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    """`first`, then `rest`, holding `first` no longer than until the next item is asked for."""
    yield first
    del first
    yield from rest


def _save_checkpoint(path: str | Path, sae: SAE, optimiser, since_fired: torch.Tensor, step: int,
                     identity: dict[str, Any], monitor: Plateau, l0_mean: float, l1: float) -> None:
    """The training state, serialised in memory and written atomically (a full disk is an OSError and
    leaves the previous checkpoint and no temporary file)."""
    buffer = io.BytesIO()
    torch.save({"sae": sae.state_dict(), "optimiser": optimiser.state_dict(), "since_fired": since_fired.cpu(),
                "step": step, "settings": identity, "monitor": monitor.state(),
                "l0_mean": l0_mean, "l1": l1}, buffer)
    write_atomic(Path(path), buffer.getvalue())


def train_layer_sae(model: Model, layer: str, data: Any, config: SAETrainConfig | None = None, **options: Any) -> SAE:
    """Train an SAE on `layer` of `model` over the images of `data`; see `train_layer_saes`."""
    return train_layer_saes(model, [layer], data, config, **options)[model.resolve_layer(layer)]


def train_layer_saes(model: Model, layers: Sequence[str], data: Any, config: SAETrainConfig | None = None, *,
                     pool: bool = False, max_images: int | None = None, image_batch: int = 128,
                     workers: Workers = "auto", cache_bytes: int = 1 << 30, checkpoint: str | Path | None = None,
                     **options: Any) -> dict[str, SAE]:
    """One SAE per layer of `layers` over the images of `data` (a folder, list or dataset): every
    position of every image is a sample (`pool=True`: one per image). When all layers' samples fit
    in `cache_bytes` they are read in one pass over the images and reused every epoch; otherwise
    each layer's training streams them again. `config` and `options` go to `train_sae` (its
    fields, device, ...); `checkpoint` gets the layer's name appended when there are several.
    `data` may also be a folder written by `extract_activations` for the one layer asked for."""
    layers = list(dict.fromkeys(model.resolve_layer(layer) for layer in layers))
    if ActivationFolder.holds(data):  # rows written by `extract_activations`: stream them file by file
        folder = ActivationFolder(data)
        kept = folder.manifest
        if layers != [kept["layer"]] or kept["fingerprint"] != model.fingerprint or not folder.complete:
            raise VizneuronError(f"{data} holds {'unfinished ' if not folder.complete else ''}activations of "
                             f"{kept['model']} {kept['layer']}; train {model.name} {', '.join(layers)} from images or "
                             "from a finished extraction of that layer (rerun `sae extract` to finish it)")
        return {layers[0]: train_sae(lambda: iter(folder), config, checkpoint=checkpoint,
                                     provenance={"model": model.name, "layer": layers[0], "pool": kept["pool"]},
                                     **options)}
    source = as_source(data)
    images = len(source) if max_images is None else min(max_images, len(source))
    reading = {"pool": pool, "batch_size": image_batch, "workers": workers, "max_images": max_images}
    total = sum(images * _positions(model.layer(layer), pool) * model.layer(layer).channels * 4 for layer in layers)
    cached: dict[str, torch.Tensor] = {}
    if total <= cache_bytes:
        chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
        for rows in layers_activations(model, layers, source, **reading):
            for layer in layers:
                chunks[layer].append(rows[layer])
        cached = {layer: torch.cat(parts) for layer, parts in chunks.items() if parts}
        if len(cached) < len(layers):
            raise VizneuronError(f"no readable images in {source.describe().get('root', source)}")
    saes = {}
    for layer in layers:
        def fresh(layer: str = layer) -> Iterator[torch.Tensor]:
            return layer_activations(model, layer, source, **reading)

        where = layer_checkpoint(checkpoint, layer, len(layers))
        saes[layer] = train_sae(cached.get(layer, fresh), config, checkpoint=where,
                                provenance={"model": model.name, "layer": layer, "pool": pool}, **options)
    return saes


def layer_checkpoint(checkpoint: str | Path | None, layer: str, layers: int) -> Path | None:
    """Where `train_layer_saes` keeps one layer's progress: `checkpoint` itself for one layer,
    `checkpoint.LAYER` when several are trained together."""
    if checkpoint is None:
        return None
    return Path(checkpoint) if layers == 1 else Path(f"{checkpoint}.{layer}")


def _positions(info, pool: bool) -> int:
    """Samples per image of a layer."""
    if pool:
        return 1
    shape = info.shape
    return {"spatial": shape[1] * shape[2] if len(shape) == 3 else 1, "tokens": shape[0]}.get(info.layout, 1)
