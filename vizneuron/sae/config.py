"""What an SAE is (`SAEConfig`) and how one is trained (`SAETrainConfig`), with their defaults, in
one torch-free module: the CLI reads its flags' defaults and choices here without loading torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import VizneuronError

KINDS = ("topk", "relu", "batchtopk", "jumprelu", "matryoshka")
THRESHOLDED = ("batchtopk", "matryoshka")  # kinds that infer with one learnt threshold


@dataclass
class SAEConfig:
    """What an SAE is: its shape and kind, its input scale, and where it was trained (provenance).
    How it was trained is `training` (the `SAETrainConfig` used, plus steps taken), how good it is
    `metrics` (from `evaluate_sae`)."""

    d_in: int
    d_sae: int
    kind: str = "topk"  # one of KINDS
    k: int = 16  # active latents per sample (the target mean for batchtopk, matryoshka, jumprelu)
    scale: float = 1.0  # input normalisation s
    model: str | None = None  # the model spec and layer the SAE was trained on
    layer: str | None = None
    pool: bool = False  # trained on per-image means instead of every position
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """From a saved config; files written before training settings moved out keep them (e.g.
        the L1 weight) in `training`."""
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict):
            raise SAEError("an SAE config must be a JSON object")
        try:
            config = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:  # a required field missing
            raise SAEError(f"SAE config is incomplete ({err})") from None
        wrong = [name for name, kind in (("d_in", int), ("d_sae", int), ("k", int), ("scale", (int, float)))
                 if not isinstance(getattr(config, name), kind) or isinstance(getattr(config, name), bool)]
        if wrong or config.d_in < 1 or config.d_sae < 1 or not math.isfinite(config.scale) or config.scale <= 0:
            raise SAEError(f"SAE config has invalid values ({', '.join(wrong) or 'sizes or scale'})")
        config.training = {**{k: v for k, v in data.items() if k not in known}, **config.training}
        return config


class SAEError(VizneuronError):
    """An SAE file that is missing, malformed or made for another layer."""


@dataclass(frozen=True)
class SAETrainConfig:
    """Everything that decides how an SAE is trained, with its defaults (the CLI's flags read them
    from here). `d_sae` defaults to `expansion` x the layer's width. Left unset, `batch_size` and
    `epochs` are chosen from the data: batches of about 1/64 of it (256-4096 rows), and passes until
    the FVU over a window of `train.WINDOW` steps falls by less than `plateau`, after at least
    `min_steps` steps."""

    expansion: int = 8
    d_sae: int | None = None
    kind: str = "topk"  # one of KINDS: "topk" | "relu" | "batchtopk" | "jumprelu" | "matryoshka"
    k: int = 16  # active latents per sample (topk; the target mean for the other kinds, relu included)
    l1: float | None = None  # relu's sparsity weight; None: steered during training to hold the mean L0 at k
    prefixes: int = 5  # matryoshka: nested prefixes d_sae/2**(prefixes-1), ..., d_sae/2, d_sae
    lr: float = 3e-3
    batch_size: int | None = None  # rows per optimiser step (default: scaled to the data, 256-4096)
    epochs: int | None = None  # passes over the data (default: until the FVU stops falling)
    min_steps: int = 600  # the fewest optimiser steps an automatic run takes (more passes on small data)
    max_epochs: int = 200  # the most passes an automatic run makes
    plateau: float = 0.01  # converged: the mean FVU fell by less than this fraction over the last window
    buffer: int | None = None  # shuffling buffer in rows (default ~256 MB of rows)
    aux_k: int | None = None  # AuxK latents (default min(d_in, d_sae) / 2)
    aux_weight: float = 1 / 32
    dead_after: int = 200_000  # samples without firing before a latent counts as dead
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SAEError(f"SAE kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        at_least_one = ("expansion", "k", "batch_size", "epochs", "dead_after", "d_sae", "buffer", "aux_k",
                        "min_steps", "max_epochs", "prefixes")
        for name in at_least_one:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise VizneuronError(f"SAE training: {name} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0:
            raise VizneuronError(f"SAE training: lr must be positive, not {self.lr}")
        if not ((self.l1 is None or self.l1 >= 0) and self.aux_weight >= 0 and 0 < self.plateau < 1):
            raise VizneuronError("SAE training: l1 and aux_weight must be 0 or more, plateau between 0 and 1")
        if not 0 <= self.seed < 2**63:
            raise VizneuronError(f"SAE training: seed must be between 0 and 2**63 - 1, not {self.seed}")
        if self.d_sae is not None and self.kind != "relu" and self.k > self.d_sae:
            raise VizneuronError(f"SAE training: k={self.k} active latents need d_sae of at least {self.k}")
        if self.d_sae is not None and self.kind == "matryoshka" and self.d_sae >> (self.prefixes - 1) < 1:
            raise VizneuronError(f"SAE training: {self.prefixes} nested prefixes need d_sae of at least "
                             f"{2 ** (self.prefixes - 1)}")

    def architecture(self, d_in: int, scale: float, **provenance: Any) -> SAEConfig:
        """The SAE these settings build on a `d_in`-wide layer (provenance: model, layer, pool)."""
        return SAEConfig(d_in=d_in, d_sae=self.d_sae or self.expansion * d_in, kind=self.kind, k=self.k,
                         scale=scale, training=asdict(self), **provenance)
