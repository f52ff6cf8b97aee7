"""Sparse autoencoders on a layer's activations; their features are units like any other."""

from .data import ActivationFolder, extract_activations, layer_activations
from .metrics import evaluate_sae
from .model import SAE, SAEConfig, SAEError, find_saes, load_sae, random_decoder, read_sae_config
from .toy import absorption, mean_max_cosine, toy_hierarchy, toy_superposition
from .train import NotConverged, SAETrainConfig, train_layer_sae, train_layer_saes, train_sae

__all__ = ["ActivationFolder", "extract_activations", "NotConverged", "absorption", "toy_hierarchy", "SAE", "SAEConfig", "SAETrainConfig", "SAEError", "evaluate_sae", "find_saes",
           "layer_activations", "load_sae", "mean_max_cosine", "random_decoder", "read_sae_config", "toy_superposition",
           "train_layer_sae", "train_layer_saes", "train_sae"]
