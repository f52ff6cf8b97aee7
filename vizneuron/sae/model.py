"""The sparse autoencoder: unit-norm decoder rows, pre-encoder bias, and one of five activations.

    z     = act(W_enc^T (s x - b_dec) + b_enc)
    x_hat = (W_dec^T z + b_dec) / s

- topk (default): the k largest pre-activations of each row, ReLU'd (Gao et al. 2024).
- relu: ReLU, sparsity from an L1 penalty.
- batchtopk: the k x batch largest of a whole training batch (rows share the budget); at inference
  every activation above one threshold, learnt as the running mean of the smallest kept activation,
  so L0 is k on average rather than exactly (Bussmann et al. 2024).
- jumprelu: pre * [pre > theta_i] with a learnt threshold per latent, trained through a
  straight-through estimator with an L0 penalty (Rajamanoharan et al. 2024); training shifts the
  thresholds' common level after each step so the mean L0 is k.
- matryoshka: batchtopk whose nested dictionary prefixes (the first d_sae/16, /8, ... latents) must
  each reconstruct the input on their own, so general features stay in the early latents instead
  of being absorbed into specific ones (Bussmann et al. 2025).

`s` is one scalar fixed at training start so that E||s x||^2 = d_in: losses, learning rates and
the L1 weight then mean the same on every layer, whatever its activation scale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

from ..errors import VizneuronError
from ..files import readable
from ..imageio import write_atomic
from ..redirect import redirect_gradient
from .config import KINDS, THRESHOLDED, SAEConfig, SAEError
from .formats import (
    DL_CONFIG,
    DL_WEIGHTS,
    SAELENS,
    SAELENS_CONFIG,
    SAELENS_WEIGHTS,
    detect_format,
    foreign_config,
    layer_for_hook,
    read_foreign,
    split_reference,
    write_saelens,
)

BANDWIDTH = 0.1  # JumpReLU: width of the window around a threshold that passes it gradient
CHECKSUM = "vizneuron_sha256"


class SAE(nn.Module):
    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        if config.kind not in KINDS:
            raise SAEError(f"SAE kind must be one of {', '.join(KINDS)}, not {config.kind!r}")
        if config.kind != "relu" and not 0 < config.k <= config.d_sae:
            raise SAEError(f"k={config.k} must be in 1..d_sae={config.d_sae}")
        self.config = config
        self.redirecting = False  # set by render's redirected-ReLU phase
        self.W_enc = nn.Parameter(torch.zeros(config.d_in, config.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(config.d_sae))
        self.W_dec = nn.Parameter(torch.zeros(config.d_sae, config.d_in))
        self.b_dec = nn.Parameter(torch.zeros(config.d_in))
        if config.kind in THRESHOLDED:  # the inference threshold, estimated while training
            self.register_buffer("threshold", torch.zeros(()))
        if config.kind == "jumprelu":  # per-latent thresholds, log-parametrised to stay positive
            self.log_threshold = nn.Parameter(torch.zeros(config.d_sae))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder input of every latent, on normalised activations (N, d_in) -> (N, d_sae)."""
        return (x * self.config.scale - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.config.kind == "relu":
            z = torch.relu(pre)
            inside = pre > 0
        elif self.config.kind == "jumprelu":
            z = _JumpReLU.apply(pre, self.log_threshold.exp())
            inside = z > 0
        elif self.config.kind in THRESHOLDED:
            if self.training:  # the k x batch largest over the whole batch: rows share a budget
                flat = torch.relu(pre).flatten()
                values, indices = flat.topk(min(self.config.k * pre.shape[0], flat.numel()))
                z = torch.zeros_like(flat).scatter(0, indices, values).view_as(pre)
            else:  # one threshold for every latent (Bussmann et al. 2024)
                z = pre * (pre > self.threshold.clamp(min=0))
            inside = z > 0
        else:
            values, indices = self.top(pre)
            z = torch.zeros_like(pre).scatter(-1, indices, values)
            inside = z > 0
        if self.redirecting:  # early in a render: latents outside the top-k still get gradient
            return redirect_gradient(pre, z, inside, ~inside)
        return z

    def top(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TopK: each row's k largest pre-activations, ReLU'd, and their latents (N, k) each."""
        values, indices = pre.topk(self.config.k, dim=-1)
        return torch.relu(values), indices

    def decode_top(self, values: torch.Tensor, indices: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """Normalised reconstruction from `top`'s output (N, k), reading only k decoder rows per row:
        what `decode(z, normalised=True)` gives for the dense z, at a fraction of the cost."""
        rows = nn.functional.embedding_bag(indices, self.W_dec, per_sample_weights=values, mode="sum")
        return rows + self.b_dec if bias else rows

    def l0_estimate(self, pre: torch.Tensor) -> torch.Tensor:
        """JumpReLU: latents firing per row, with a straight-through gradient for the thresholds."""
        return _Step.apply(pre, self.log_threshold.exp()).sum(1).mean()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations (N, d_sae) of activations x (N, d_in)."""
        return self.activate(self.pre_activations(x))

    def decode(self, z: torch.Tensor, normalised: bool = False) -> torch.Tensor:
        """Reconstruction in the layer's own units, (N, d_in) (`normalised`: in the scaled space
        the SAE works in, where E||s x||^2 = d_in; what training measures its error in)."""
        scaled = z @ self.W_dec + self.b_dec
        return scaled if normalised else scaled / self.config.scale

    def directions(self, features: torch.Tensor | list[int]) -> torch.Tensor:
        """Each feature's decoded direction in the layer's own units, (F, d_in): how far the
        reconstruction moves per unit of the feature (what ablating or attributing it uses)."""
        return self.W_dec[features] / self.config.scale

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(encode(x)): the SAE's stand-in for activations x (N, d_in)."""
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    @torch.no_grad()
    def initialise(self, gen: torch.Generator, b_dec: torch.Tensor) -> None:
        """Training's starting point: decoder rows random unit vectors, the encoder their
        transpose, `b_dec` given (the data's mean)."""
        self.W_dec.copy_(torch.randn(self.config.d_sae, self.config.d_in, generator=gen))
        self.normalise_decoder()
        self.W_enc.copy_(self.W_dec.T)
        self.b_dec.copy_(b_dec)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))

    def save(self, path: str | Path, format: str = "vizneuron") -> Path:
        """Write the SAE: `vizneuron` (default), one safetensors file with its config in the
        metadata and beside it as JSON; `saelens`, a folder SAELens loads (`formats.write_saelens`).
        Returns what was written."""
        path = Path(path)
        if format == SAELENS:
            return write_saelens(self.config, self.state_dict(), path)
        if format != "vizneuron":
            raise SAEError(f"SAE format must be vizneuron or {SAELENS}, not {format!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        config = json.dumps(asdict(self.config), indent=1)
        tensors = {n: p.detach().cpu().contiguous() for n, p in self.state_dict().items()}
        write_atomic(path, save_tensors(tensors, metadata={"vizneuron_sae": config,
                                                           CHECKSUM: _checksum(config, tensors)}))
        write_atomic(path.with_suffix(".json"), (config + "\n").encode())
        return path


def random_decoder(like: SAE, seed: int = 0) -> SAE:
    """The baseline an SAE's features must beat: a TopK SAE of the same shape, k, input scale and
    decoder bias whose decoder rows are random unit directions (the encoder their transpose), so
    its features are random directions in the layer, chosen by the same top-k."""
    config = replace(like.config, kind="topk", training={"baseline": "random decoder", "seed": seed}, metrics={})
    sae = SAE(config)
    sae.initialise(torch.Generator().manual_seed(seed), like.b_dec.detach().cpu())
    return sae.eval().requires_grad_(False)


def _window(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Rectangle kernel: 1/BANDWIDTH where pre is within BANDWIDTH/2 of the threshold, else 0."""
    return ((pre - threshold).abs() < BANDWIDTH / 2).to(pre.dtype) / BANDWIDTH


class _JumpReLU(torch.autograd.Function):
    """pre * [pre > theta]. Gradient to pre where it passes; to theta, the kernel estimate of how
    the expected output changes as theta moves (Rajamanoharan et al. 2024, eq. 11)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre, threshold = ctx.saved_tensors
        return grad * (pre > threshold), -(threshold * _window(pre, threshold) * grad).sum(0)


class _Step(torch.autograd.Function):
    """[pre > theta], with the kernel pseudo-gradient to theta only (the L0 penalty's)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        pre, threshold = ctx.saved_tensors
        return None, -(_window(pre, threshold) * grad).sum(0)


def _checksum(config: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the config text and every tensor: an edited config or weight no longer matches."""
    digest = hashlib.sha256(config.encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _read_metadata(path: Path) -> tuple[dict[str, str], SAEConfig]:
    if not path.exists():
        raise SAEError(f"SAE file {path} not found")
    if path.is_dir():
        raise SAEError(f"{path} is a folder but holds no SAE vizneuron reads: a SAELens SAE has {SAELENS_CONFIG} "
                       f"and {SAELENS_WEIGHTS}, a dictionary_learning one {DL_CONFIG} and {DL_WEIGHTS}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types on foreign files
        raise SAEError(f"{path} is not a safetensors file ({err})") from None
    if "vizneuron_sae" not in meta:
        raise SAEError(f"{path} is not a vizneuron SAE (no config in its metadata)")
    try:
        data = json.loads(meta["vizneuron_sae"])
    except ValueError:
        raise SAEError(f"{path}: the config in its metadata is not valid JSON (the file was edited or "
                       "damaged)") from None
    try:
        return meta, SAEConfig.from_dict(data)
    except SAEError as err:
        raise SAEError(f"{path}: {err}") from None


def read_sae_config(path: str | Path) -> SAEConfig:
    """An SAE's config (model, layer, sizes, metrics) without loading its weights: a vizneuron file,
    or a SAELens / dictionary_learning folder (`saelens:DIR`, `dictionary_learning:DIR`, or found by
    its files)."""
    fmt, where, options = _locate(path)
    if fmt is not None:
        return foreign_config(fmt, where, options.get("layer"))
    return _read_metadata(where)[1]


def _locate(path: str | Path) -> tuple[str | None, Path, dict[str, str]]:
    """(foreign format or None, the path the access allows, options) for an SAE reference."""
    fmt, where, options = split_reference(path)
    where = readable(where, "SAE file")
    return fmt or detect_format(where), where, options


def load_sae(path: str | Path, d_in: int | None = None) -> SAE:
    """An SAE from a file `SAE.save` wrote, or from a SAELens or dictionary_learning folder
    (`saelens:DIR?layer=NAME`, `dictionary_learning:DIR`, or a folder recognised by its files;
    `layer` names the vizneuron layer it reads when its config's hook name is not one). Ours are
    refused if their config or weights changed after saving (the checksum in the file) or if the
    JSON beside disagrees with the file's own config; any is refused if its width is not `d_in`
    (the layer's, when given)."""
    fmt, path, options = _locate(path)
    if fmt is not None:
        config, tensors = read_foreign(fmt, path, options.get("layer"))
    else:
        config, tensors = _read_vizneuron(path)
    if d_in is not None and config.d_in != d_in:
        raise SAEError(f"{path} was trained on a {config.d_in}-wide layer ({config.model or 'model unrecorded'} "
                       f"{config.layer or ''}); this layer has {d_in} channels")
    sae = SAE(config)
    shapes = {name: tuple(p.shape) for name, p in sae.state_dict().items()}
    if {name: tuple(t.shape) for name, t in tensors.items()} != shapes:
        raise SAEError(f"{path}: its weights do not have the shapes its config says ({config.d_in} -> {config.d_sae})")
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise SAEError(f"{path}: its weights hold NaN or infinite values")
    sae.load_state_dict(tensors)
    return sae.eval().requires_grad_(False)


def _read_vizneuron(path: Path) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
    """A file `SAE.save` wrote, checked against its checksum and the JSON beside it."""
    meta, config = _read_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as err:  # truncated or damaged tensor data
        raise SAEError(f"{path}: cannot read its weights ({err})") from None
    if CHECKSUM in meta and meta[CHECKSUM] != _checksum(meta["vizneuron_sae"], tensors):
        raise SAEError(f"{path} was modified after it was saved (its checksum does not match its config and "
                       "weights): retrain it, or restore the original file")
    sidecar = readable(path.with_suffix(".json"), "SAE config")
    if sidecar.is_file():
        try:
            beside = SAEConfig.from_dict(json.loads(sidecar.read_text()))
        except (ValueError, OSError):
            beside = None
        if beside != config:
            raise SAEError(f"{sidecar} does not match the config inside {path.name} (edited?): the file's own "
                           f"config is what counts; restore {sidecar.name} or delete it")
    return config, tensors


def find_saes(folders: list[Path], layer: str, d_in: int, layers: Iterable[str] | None = None) -> dict[str, Path]:
    """SAEs trained on `layer` (with `d_in` channels) in `folders`: vizneuron files by stem, SAELens
    and dictionary_learning folders by name; the first folder that has a name wins. Other and broken
    files are passed over. With the model's `layers`, a foreign SAE's hook name counts as the layer it
    maps to (`formats.layer_for_hook`)."""
    found: dict[str, Path] = {}
    for folder in map(Path, folders):
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
        for path in (p for p in entries if p.suffix == ".safetensors" or (p.is_dir() and detect_format(p))):
            try:
                config = read_sae_config(path)  # a file the access refuses (a symlink out) is passed over too
            except VizneuronError:
                continue
            reads = layer_for_hook(layers, config.layer) if layers is not None else config.layer
            if reads == layer and config.d_in == d_in:
                found.setdefault(path.stem, path)
    return found
