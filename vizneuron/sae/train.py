"""Training an SAE on activations: a tensor (N, d) or any iterable of such chunks, memory bounded.

Dead latents are kept low with the AuxK loss (Gao et al. 2024): latents that have not fired for
`dead_after` samples reconstruct the remaining error with their own top-`aux_k`, so gradient
reaches them and pulls them back towards the data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from ..models.base import Model
from ..sources import as_source
from .data import layer_activations
from .model import KINDS, SAE, SAEConfig, SAEError


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
            pool = pool[torch.randperm(len(pool), generator=gen)]
            emit = (len(pool) - len(pool) // 2) // batch_size * batch_size  # about half, whole batches
            for i in range(0, emit, batch_size):
                yield pool[i : i + batch_size]
            held, size = [pool[emit:]], len(pool) - emit
    if size:
        pool = torch.cat(held)
        pool = pool[torch.randperm(len(pool), generator=gen)]
        for i in range(0, len(pool), batch_size):
            yield pool[i : i + batch_size]


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
                raise ValueError("several epochs need a tensor, a list, or a callable returning a fresh iterator")


@dataclass(frozen=True)
class SAETrainConfig:
    """Everything that decides how an SAE is trained, with its defaults (the CLI's flags read them
    from here). `d_sae` defaults to `expansion` x the layer's width."""

    expansion: int = 8
    d_sae: int | None = None
    kind: str = "topk"  # "topk" | "relu"
    k: int = 16  # active latents per sample (topk)
    l1: float = 5e-3  # sparsity weight (relu)
    lr: float = 3e-3
    batch_size: int = 4096  # rows per optimiser step
    epochs: int = 2
    buffer: int | None = None  # shuffling buffer in rows (default ~256 MB of rows)
    aux_k: int | None = None  # AuxK latents (default min(d_in, d_sae) / 2)
    aux_weight: float = 1 / 32
    dead_after: int = 200_000  # samples without firing before a latent counts as dead
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SAEError(f"SAE kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        at_least_one = ("expansion", "k", "batch_size", "epochs", "dead_after", "d_sae", "buffer", "aux_k")
        for name in at_least_one:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"SAE training: {name} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"SAE training: lr must be positive, not {self.lr}")
        if not (self.l1 >= 0 and self.aux_weight >= 0):
            raise ValueError("SAE training: l1 and aux_weight must be 0 or more")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"SAE training: seed must be between 0 and 2**63 - 1, not {self.seed}")
        if self.d_sae is not None and self.kind == "topk" and self.k > self.d_sae:
            raise ValueError(f"SAE training: k={self.k} active latents need d_sae of at least {self.k}")

    def architecture(self, d_in: int, scale: float, **provenance: Any) -> SAEConfig:
        """The SAE these settings build on a `d_in`-wide layer (provenance: model, layer, pool)."""
        return SAEConfig(d_in=d_in, d_sae=self.d_sae or self.expansion * d_in, kind=self.kind, k=self.k,
                         scale=scale, training=asdict(self), **provenance)


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
    chunks = _epochs(activations, cfg.epochs, gen)
    head = next(chunks, None)
    if head is None:
        raise ValueError("no activations to train on")
    buffer = cfg.buffer or max(4 * cfg.batch_size, (1 << 26) // head.shape[-1])  # ~256 MB of float32 rows
    stream = shuffled_batches(_chain(head, chunks), cfg.batch_size, buffer, gen)
    first = next(stream, None)
    if first is None:
        raise ValueError("no activations to train on")
    d_in = first.shape[1]
    scale = float((d_in / first.pow(2).sum(1).mean().clamp(min=1e-12)).sqrt())
    sae = SAE(cfg.architecture(d_in, scale, **(provenance or {}))).to(device)
    d_sae = sae.config.d_sae
    with torch.no_grad():  # decoder rows random unit vectors, encoder its transpose, b_dec the mean
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=gen))
        sae.normalise_decoder()
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_dec.copy_(first.mean(0) * scale)
    aux_k = cfg.aux_k or min(d_in // 2, d_sae // 2)
    optimiser = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    identity = {"d_in": d_in, **asdict(cfg)}  # what must match for a checkpoint to be resumed
    step, skip = 0, 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, weights_only=True)
        if state["settings"] != identity:
            raise ValueError(f"checkpoint {checkpoint} was made with other settings; delete it to start over")
        sae.load_state_dict(state["sae"])
        optimiser.load_state_dict(state["optimiser"])
        since_fired, skip = state["since_fired"].to(device), int(state["step"])
    bar = tqdm(desc=f"SAE {d_in}->{d_sae}", unit="step", disable=not progress)
    for batch in _chain(first, stream):
        step += 1
        if step <= skip:  # consumed before the checkpoint: same stream, so skip to where it stopped
            continue
        x = batch.to(device)
        pre = sae.pre_activations(x)
        z = sae.activate(pre)
        error = x * scale - sae.decode(z, normalised=True)  # in the normalised space, where E||x||^2 = d_in
        loss = error.pow(2).sum(1).mean() / d_in
        if cfg.kind == "relu":
            loss = loss + cfg.l1 * z.sum(1).mean()
        fired = (z > 0).any(0)
        since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + len(x))
        dead = since_fired > cfg.dead_after
        if cfg.aux_weight and dead.any():
            aux_pre = pre.masked_fill(~dead, -torch.inf)
            values, indices = aux_pre.topk(min(aux_k, int(dead.sum())), dim=1)
            aux_z = torch.zeros_like(pre).scatter(1, indices, torch.relu(values))
            residual = error.detach()
            aux_error = residual - aux_z @ sae.W_dec
            loss = loss + cfg.aux_weight * aux_error.pow(2).sum(1).mean() / residual.pow(2).sum(1).mean().clamp(
                min=1e-12)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        sae.normalise_decoder()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", dead=int(dead.sum()), refresh=False)
        if checkpoint is not None and step % checkpoint_every == 0:
            _save_checkpoint(checkpoint, sae, optimiser, since_fired, step, identity)
    bar.close()
    sae.config.training.update(steps=step, dead_at_end=int((since_fired > cfg.dead_after).sum()))
    if checkpoint is not None:
        _save_checkpoint(checkpoint, sae, optimiser, since_fired, step, identity)
    return sae.eval().requires_grad_(False)


def _chain(first: torch.Tensor, rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield first
    yield from rest


def _save_checkpoint(path: str | Path, sae: SAE, optimiser, since_fired: torch.Tensor, step: int,
                     identity: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"sae": sae.state_dict(), "optimiser": optimiser.state_dict(), "since_fired": since_fired.cpu(),
                "step": step, "settings": identity}, tmp)
    tmp.replace(path)


def train_layer_sae(model: Model, layer: str, data: Any, config: SAETrainConfig | None = None, *,
                    pool: bool = False, max_images: int | None = None, image_batch: int = 128, workers: int = 0,
                    cache_bytes: int = 1 << 30, **options: Any) -> SAE:
    """Train an SAE on `layer` of `model` over the images of `data` (a folder, list or dataset):
    every position of every image is a sample (`pool=True`: one per image). When all samples fit
    in `cache_bytes` they are extracted once and reused every epoch; otherwise each epoch streams
    them again. `config` and `options` go to `train_sae` (its fields, device, checkpoint, ...)."""
    layer = model.resolve_layer(layer)
    source = as_source(data)

    def fresh() -> Iterator[torch.Tensor]:
        return layer_activations(model, layer, source, pool=pool, batch_size=image_batch, workers=workers,
                                 max_images=max_images)

    info = model.layer(layer)
    images = len(source) if max_images is None else min(max_images, len(source))
    shape = info.shape
    positions = 1 if pool else {"spatial": shape[1] * shape[2] if len(shape) == 3 else 1,
                                "tokens": shape[0]}.get(info.layout, 1)
    fits = images * positions * info.channels * 4 <= cache_bytes
    provenance = {"model": model.name, "layer": layer, "pool": pool}
    return train_sae(torch.cat(list(fresh())) if fits else fresh, config, provenance=provenance, **options)
