"""vizneuron: what does this neuron respond to, and is it one concept or several?

    import vizneuron as vz
    model = vz.load_model("default")
    result = vz.render(model, "layer3:5", samples=4)          # diversity weight 1 by default
    index = vz.mine(model, "layer2,layer3", "path/to/images", k=32, index="examples.sqlite")
    feeds = vz.circuit(model, "layer3:5", upstream="layer2", data="path/to/images")
    fixed = vz.shift(model, "layer3", "l3.safetensors", "train/", concepts={"cue": ..., "cat": ..., "dog": ...})
"""

from __future__ import annotations

from .capture import capture
from .circuit import Circuit, CircuitError, circuit, expanded_weights
from .edit import EditedModel, EditError, edit
from .mine import ExampleIndex, IndexMismatch, merge, mine
from .models import LayerError, Model, ModelSpec, WeightsUnavailable, load_model
from .optim import objectives
from .optim.cache import RenderCache
from .optim.config import PRESETS, RenderConfig
from .optim.render import RenderError, RenderResult, render
from .probe import ProbeReport, probe, probe_units
from .sae import SAE, SAETrainConfig, evaluate_sae, load_sae, train_layer_sae, train_layer_saes, train_sae
from .shift import ShiftResult, shift
from .stream import ActivationStream
from .units import Unit, UnitError, parse_unit, parse_units
from .version import __version__

__all__ = [
    "Model", "ModelSpec", "load_model", "Unit", "parse_unit", "parse_units", "capture", "ActivationStream",
    "render", "RenderConfig", "PRESETS", "RenderCache", "RenderResult", "objectives", "probe", "probe_units",
    "ProbeReport", "SAE", "SAETrainConfig", "train_sae", "train_layer_sae", "train_layer_saes", "load_sae",
    "evaluate_sae", "mine", "merge", "ExampleIndex", "IndexMismatch", "LayerError", "UnitError", "WeightsUnavailable",
    "RenderError", "circuit", "Circuit", "CircuitError", "expanded_weights", "edit", "EditedModel", "EditError", "shift", "ShiftResult",
    "__version__",
]
