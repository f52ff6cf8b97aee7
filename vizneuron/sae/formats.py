"""SAEs in the community's formats: SAELens (read and write) and dictionary_learning (read), mapped
onto vizneuron's SAE (`model.py`) exactly, or refused by name where their maths is not ours.

Every format's encoder is one of z = act(W_enc^T (x - b_dec) + b_enc) with an optional pre-encoder
bias, so a foreign SAE becomes ours by re-expressing its biases:

- no pre-encoder bias (SAELens `apply_b_dec_to_input: false`, dictionary_learning's JumpReLU):
  b_enc' = b_enc + b_dec W_enc, and the encoder input is again x - b_dec;
- SAELens TopK with `rescale_acts_by_decoder_norm`: the decoder norms n are folded in
  (W_enc n, b_enc n, W_dec / n), which leaves the selected latents and the output unchanged;
- JumpReLU thresholds become our log-thresholds (a threshold <= 0 acts as a plain ReLU, as the
  smallest positive float does for us);
- dictionary_learning's BatchTopK keeps its one inference threshold.

Writing SAELens folds our input scale s into the weights (SAELens applies no scale at inference),
and writes BatchTopK / Matryoshka SAEs as JumpReLU with one shared threshold, as SAELens itself
saves its BatchTopK SAEs for inference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors

from ..imageio import write_atomic
from .config import THRESHOLDED, SAEConfig, SAEError

SAELENS, DICTIONARY_LEARNING = "saelens", "dictionary_learning"
FOREIGN = (SAELENS, DICTIONARY_LEARNING)
SAELENS_CONFIG, SAELENS_WEIGHTS = "cfg.json", "sae_weights.safetensors"
DL_CONFIG, DL_WEIGHTS = "config.json", "ae.pt"
#: the SAELens format version written (the 6.x config layout)
SAELENS_FORMAT_VERSION = "6.0.0"
#: SAELens architectures that map onto a vizneuron kind
SAELENS_KINDS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
#: dictionary_learning dictionary classes that map onto a vizneuron kind
DL_KINDS = {"AutoEncoder": "relu", "AutoEncoderNew": "relu", "AutoEncoderTopK": "topk", "BatchTopKSAE": "batchtopk",
            "MatryoshkaBatchTopKSAE": "matryoshka", "JumpReluAutoEncoder": "jumprelu"}
#: SAELens activation normalisations that are the identity at inference (SAELens's own reading)
SAELENS_PLAIN_INPUT = ("none", "expected_average_only_in")
UNKNOWN_K = 16  # relu / jumprelu SAEs from elsewhere record no target L0; ours needs one (training only)


#: TransformerLens hook names whose tensor is a block's output (`blocks.N.hook_resid_post`) or its
#: input (`blocks.N.hook_resid_pre`, the output of block N - 1)
RESIDUAL_HOOK = re.compile(r"blocks\.(\d+)\.hook_resid_(pre|post)")
BLOCK_NAME = re.compile(r"(?:.+\.)?(?:blocks|layers|layer|resblocks)\.(\d+)")


def layer_for_hook(layers: Iterable[str], hook: str | None) -> str | None:
    """The layer (among a model's `layers`) a foreign SAE's hook reads: the hook itself when it is
    one, else a TransformerLens residual hook mapped to the model's one list of blocks (timm
    `blocks.N`, OpenCLIP `transformer.resblocks.N`, transformers `...layers.N` / `layer.N`); None
    when it does not map (then the user names the layer)."""
    names = list(layers)
    if hook is None or hook in names:
        return hook
    match = RESIDUAL_HOOK.fullmatch(hook)
    if not match:
        return None
    block = int(match.group(1)) - (match.group(2) == "pre")
    if block < 0:
        return None
    lists = {BLOCK_NAME.fullmatch(name).group(0).rsplit(".", 1)[0] for name in names if BLOCK_NAME.fullmatch(name)}
    found = [name for name in names if name.rsplit(".", 1)[0] in lists and name.endswith(f".{block}")]
    return found[0] if len(lists) == 1 and len(found) == 1 else None


def split_reference(reference: str | Path) -> tuple[str | None, Path, dict[str, str]]:
    """`saelens:DIR?layer=NAME`, `dictionary_learning:DIR` or a plain path -> (format or None, path,
    options). The only option is `layer`: the vizneuron layer the SAE reads, when its config's hook
    name is not one."""
    text = str(reference)
    fmt, colon, rest = text.partition(":")
    if not colon or fmt not in FOREIGN:
        return None, Path(text), {}
    path, _, query = rest.partition("?")
    options = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key != "layer" or not eq or not value:
            raise SAEError(f"{text!r}: the only option is layer=NAME, not {item!r}")
        options[key] = value
    return fmt, Path(path), options


def detect_format(path: Path) -> str | None:
    """Which foreign format a folder (or one of its weight files) holds, by its files; None otherwise."""
    folder = path.parent if path.name in (SAELENS_WEIGHTS, DL_WEIGHTS) else path
    if not folder.is_dir():
        return None
    if (folder / SAELENS_CONFIG).is_file() and (folder / SAELENS_WEIGHTS).is_file():
        return SAELENS
    if (folder / DL_CONFIG).is_file() and (folder / DL_WEIGHTS).is_file():
        return DICTIONARY_LEARNING
    return None


def foreign_folder(fmt: str, path: Path) -> Path:
    """The folder holding an SAE of format `fmt`, checked to have its two files."""
    folder = path.parent if path.name in (SAELENS_WEIGHTS, DL_WEIGHTS) else path
    files = (SAELENS_CONFIG, SAELENS_WEIGHTS) if fmt == SAELENS else (DL_CONFIG, DL_WEIGHTS)
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise SAEError(f"{folder} is not a {fmt} SAE folder: {' and '.join(missing)} not found there "
                       f"(it needs {files[0]} and {files[1]})")
    return folder


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SAEError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise SAEError(f"{path}: not a JSON object")
    return data


def _sizes(source: str, d_in: Any, d_sae: Any) -> tuple[int, int]:
    if not (isinstance(d_in, int) and isinstance(d_sae, int) and d_in > 0 and d_sae > 0):
        raise SAEError(f"{source}: its sizes are missing or invalid (d_in={d_in!r}, d_sae={d_sae!r})")
    return d_in, d_sae


def saelens_config(folder: Path, layer: str | None = None) -> SAEConfig:
    """Our config for a SAELens folder (6.x `cfg.json`, or the pre-6 layout), or the reason it does
    not map: another architecture, a per-row input normalisation, attention-head reshaping."""
    path = folder / SAELENS_CONFIG
    cfg = _json(path)
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    architecture = cfg.get("architecture", "standard")
    k = cfg.get("k")
    if cfg.get("activation_fn", cfg.get("activation_fn_str")) == "topk":  # the pre-6 way of saying TopK
        architecture, k = "topk", (cfg.get("activation_fn_kwargs") or {}).get("k")
    if architecture not in SAELENS_KINDS:
        raise SAEError(f"{path}: SAELens architecture {architecture!r} is not one vizneuron reads "
                       f"(it reads {', '.join(SAELENS_KINDS)})")
    normalise = cfg.get("normalize_activations", "none") or "none"
    if normalise not in SAELENS_PLAIN_INPUT:
        raise SAEError(f"{path}: normalize_activations={normalise!r} rescales each input row on its own, which "
                       "vizneuron's SAE (one fixed input scale) does not do; fold it into the weights first")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise SAEError(f"{path}: reshape_activations={cfg['reshape_activations']!r} (attention heads) has no "
                       "vision-layer counterpart here")
    d_in, d_sae = _sizes(str(path), cfg.get("d_in"), cfg.get("d_sae"))
    kind = SAELENS_KINDS[architecture]
    if kind == "topk" and not (isinstance(k, int) and 0 < k <= d_sae):
        raise SAEError(f"{path}: a TopK SAE needs k between 1 and d_sae={d_sae}, not {k!r}")
    hook = metadata.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    model = metadata.get("model_name") or cfg.get("model_name")
    return SAEConfig(d_in=d_in, d_sae=d_sae, kind=kind, k=k if kind == "topk" else min(UNKNOWN_K, d_sae),
                     layer=layer or hook, training={
                         "format": SAELENS, "architecture": architecture, "hook_name": hook, "model_name": model,
                         "apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True)),
                         "rescale_acts_by_decoder_norm": bool(cfg.get("rescale_acts_by_decoder_norm", False)),
                         "normalize_activations": normalise, "from": str(folder)})


def read_saelens(folder: Path, layer: str | None = None) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
    """A SAELens folder as our config and state dict (float32), its maths unchanged."""
    config = saelens_config(folder, layer)
    try:
        weights = {name: t.float() for name, t in load_file(str(folder / SAELENS_WEIGHTS)).items()}
    except Exception as err:  # safetensors raises its own error types on damaged files
        raise SAEError(f"{folder / SAELENS_WEIGHTS}: cannot read its weights ({err})") from None
    if "log_threshold" in weights:  # older JumpReLU checkpoints (SAELens converts them the same way)
        weights["threshold"] = weights.pop("log_threshold").exp()
    scaling = weights.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise SAEError(f"{folder}: a fine-tuning scaling factor (scaling_factor) is not supported")
    needed = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if config.kind == "jumprelu" else [])
    _require(folder / SAELENS_WEIGHTS, weights, needed)
    W_enc, b_enc, W_dec, b_dec = (weights[n] for n in needed[:4])
    if config.training["rescale_acts_by_decoder_norm"]:
        norms = W_dec.norm(dim=1).clamp(min=1e-8)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    if not config.training["apply_b_dec_to_input"]:
        b_enc = b_enc + b_dec @ W_enc
    state = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if config.kind == "jumprelu":
        state["log_threshold"] = _log_threshold(weights["threshold"])
    return config, state


def dictionary_learning_config(folder: Path, layer: str | None = None) -> SAEConfig:
    """Our config for a dictionary_learning folder (`config.json`'s `trainer` section)."""
    path = folder / DL_CONFIG
    trainer = _json(path).get("trainer")
    if not isinstance(trainer, dict):
        raise SAEError(f"{path}: no 'trainer' section (not a dictionary_learning config)")
    dict_class = trainer.get("dict_class")
    if dict_class not in DL_KINDS:
        raise SAEError(f"{path}: dictionary class {dict_class!r} is not one vizneuron reads "
                       f"(it reads {', '.join(DL_KINDS)})")
    d_in, d_sae = _sizes(str(path), trainer.get("activation_dim"), trainer.get("dict_size"))
    kind = DL_KINDS[dict_class]
    k = trainer.get("k")
    if kind in ("topk", *THRESHOLDED) and not (isinstance(k, int) and 0 < k <= d_sae):
        raise SAEError(f"{path}: a {dict_class} needs k between 1 and dict_size={d_sae}, not {k!r}")
    submodule = trainer.get("submodule_name")
    hook = submodule or (f"layer {trainer['layer']}" if trainer.get("layer") is not None else None)
    return SAEConfig(d_in=d_in, d_sae=d_sae, kind=kind, k=k if isinstance(k, int) else min(UNKNOWN_K, d_sae),
                     layer=layer or submodule, training={
                         "format": DICTIONARY_LEARNING, "dict_class": dict_class, "hook_name": hook,
                         "model_name": trainer.get("lm_name"), "from": str(folder)})


def read_dictionary_learning(folder: Path, layer: str | None = None) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
    """A dictionary_learning folder as our config and state dict. `ae.pt` is read with
    `weights_only=True`: tensors only, no code runs."""
    config = dictionary_learning_config(folder, layer)
    try:
        weights = torch.load(folder / DL_WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling refusal, a damaged or foreign file
        raise SAEError(f"{folder / DL_WEIGHTS}: cannot read it as tensors ({err})") from None
    if not isinstance(weights, dict):
        raise SAEError(f"{folder / DL_WEIGHTS}: not a state dict")
    weights = {name: t.float() if t.is_floating_point() else t for name, t in weights.items()}
    dict_class = config.training["dict_class"]
    if dict_class in ("AutoEncoder", "AutoEncoderNew"):
        linear = ["encoder.weight", "encoder.bias", "decoder.weight"]
        _require(folder / DL_WEIGHTS, weights, linear + (["bias"] if dict_class == "AutoEncoder" else ["decoder.bias"]))
        W_enc, b_enc, W_dec = weights["encoder.weight"].T, weights["encoder.bias"], weights["decoder.weight"].T
        if dict_class == "AutoEncoder":  # relu(enc(x - bias)), dec(f) + bias
            b_dec = weights["bias"]
        else:  # relu(enc(x)), dec(f) with its own bias: no pre-encoder bias
            b_dec = weights["decoder.bias"]
            b_enc = b_enc + b_dec @ W_enc
    elif dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):  # relu(enc(x - b_dec)), dec(f) + b_dec
        _require(folder / DL_WEIGHTS, weights, ["encoder.weight", "encoder.bias", "decoder.weight", "b_dec"])
        W_enc, b_enc, W_dec = weights["encoder.weight"].T, weights["encoder.bias"], weights["decoder.weight"].T
        b_dec = weights["b_dec"]
    else:  # Matryoshka and JumpReLU hold W_enc (d_in, d_sae), W_dec (d_sae, d_in) as we do
        _require(folder / DL_WEIGHTS, weights, ["W_enc", "b_enc", "W_dec", "b_dec"])
        W_enc, b_enc, W_dec, b_dec = weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"]
        if dict_class == "JumpReluAutoEncoder":  # trained without the pre-encoder bias
            b_enc = b_enc + b_dec @ W_enc
    if "k" in weights and config.kind != "relu" and int(weights["k"]) != config.k:
        raise SAEError(f"{folder}: k={config.k} in its config but {int(weights['k'])} in its weights")
    state = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if config.kind == "jumprelu":
        _require(folder / DL_WEIGHTS, weights, ["threshold"])
        state["log_threshold"] = _log_threshold(weights["threshold"])
    elif config.kind in THRESHOLDED:
        _require(folder / DL_WEIGHTS, weights, ["threshold"])
        state["threshold"] = weights["threshold"].reshape(())
    return config, state


def read_foreign(fmt: str, path: Path, layer: str | None = None) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
    """An SAE of a foreign format as our config and state dict (contiguous float32)."""
    folder = foreign_folder(fmt, path)
    config, state = (read_saelens if fmt == SAELENS else read_dictionary_learning)(folder, layer)
    return config, {name: t.contiguous() for name, t in state.items()}


def foreign_config(fmt: str, path: Path, layer: str | None = None) -> SAEConfig:
    """A foreign SAE's config alone, without its weights."""
    folder = foreign_folder(fmt, path)
    return (saelens_config if fmt == SAELENS else dictionary_learning_config)(folder, layer)


def _require(path: Path, weights: dict[str, torch.Tensor], names: list[str]) -> None:
    missing = [name for name in names if name not in weights]
    if missing:
        raise SAEError(f"{path}: missing {', '.join(missing)} (has {', '.join(sorted(weights))})")


def _log_threshold(threshold: torch.Tensor) -> torch.Tensor:
    """Our log-parametrised JumpReLU threshold; a threshold <= 0 passes every positive value, as the
    smallest positive float does."""
    return threshold.float().clamp(min=torch.finfo(torch.float32).tiny).log()


def write_saelens(config: SAEConfig, state: dict[str, torch.Tensor], folder: Path) -> Path:
    """Write an SAE (our config and state dict) as a folder SAELens loads with `SAE.load_from_disk`,
    giving the same latents and reconstructions on the layer's raw activations."""
    s = config.scale
    W_enc, b_enc, W_dec, b_dec = (state[n].detach().float().cpu() for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    tensors = {"W_enc": W_enc * s, "b_enc": b_enc, "W_dec": W_dec / s, "b_dec": b_dec / s}
    extra: dict[str, Any] = {}
    if config.kind == "topk":
        architecture, extra = "topk", {"k": config.k, "rescale_acts_by_decoder_norm": False}
    elif config.kind == "relu":
        architecture = "standard"
    else:
        architecture = "jumprelu"
        if config.kind == "jumprelu":
            threshold = state["log_threshold"].detach().float().cpu().exp()
        else:  # one shared threshold, clamped at 0 as our inference does
            threshold = state["threshold"].detach().float().cpu().clamp(min=0).expand(config.d_sae)
        tensors["threshold"] = threshold.contiguous()
    cfg = {"architecture": architecture, "d_in": config.d_in, "d_sae": config.d_sae, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none", **extra,
           "metadata": {"sae_lens_version": SAELENS_FORMAT_VERSION, "model_name": config.model,
                        "hook_name": config.layer, "vizneuron_kind": config.kind,
                        "vizneuron_metrics": config.metrics}}
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / SAELENS_WEIGHTS, save_tensors({n: t.contiguous() for n, t in tensors.items()}))
    write_atomic(folder / SAELENS_CONFIG, (json.dumps(cfg, indent=1, default=_plain) + "\n").encode())
    return folder


def _plain(value: Any) -> Any:
    """JSON for metric values that are not plain (numpy or torch scalars); NaN stays a float."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)

