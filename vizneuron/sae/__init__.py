"""Sparse autoencoders on a layer's activations; their features are units like any other.

Members load on first use (`vizneuron.lazy`), so `sae.config` is readable without torch."""

from __future__ import annotations

from ..lazy import make_lazy

_MEMBERS = {
    ".config": ("KINDS", "SAEConfig", "SAEError", "SAETrainConfig"),
    ".data": ("ActivationFolder", "extract_activations", "layer_activations"),
    ".metrics": ("evaluate_sae",),
    ".model": ("SAE", "find_saes", "load_sae", "random_decoder", "read_sae_config"),
    ".toy": ("absorption", "mean_max_cosine", "toy_hierarchy", "toy_superposition"),
    ".train": ("NotConverged", "train_layer_sae", "train_layer_saes", "train_sae"),
}
make_lazy(__name__, _MEMBERS)

__all__ = [name for names in _MEMBERS.values() for name in names]
