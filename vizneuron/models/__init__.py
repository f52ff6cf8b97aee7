"""Where models come from: `load_model(spec)` -> `Model`, one small loader per source."""

from .base import OUTPUT_LAYER, InputConfig, LayerError, LayerInfo, Model, TokenLayout
from .default import bundled_saes
from .registry import MODEL_PRESETS, SOURCES, ModelPreset, ModelSpec, list_sources, load_model
from .weights import WeightsUnavailable

__all__ = ["Model", "InputConfig", "TokenLayout", "LayerInfo", "LayerError", "OUTPUT_LAYER", "WeightsUnavailable",
           "SOURCES", "MODEL_PRESETS", "ModelPreset", "ModelSpec", "list_sources", "load_model", "bundled_saes"]
