"""vizneuron: what does this neuron respond to, and is it one concept or several?

    import vizneuron as vz
    model = vz.load_model("default")
    result = vz.render(model, "layer3:5", samples=4, diversity=1e2)
    index = vz.mine(model, "layer2,layer3", "path/to/images", k=32, index="examples.sqlite")
"""

from __future__ import annotations

__version__ = "0.1.0"

from .capture import capture
from .mine import ExampleIndex, IndexMismatch, merge, mine
from .models import LayerError, Model, WeightsUnavailable, load_model
from .probe import ProbeReport, probe, probe_units
from .sae import SAE, evaluate_sae, load_sae, train_layer_sae, train_sae
from .optim import objectives
from .optim.render import RenderError, RenderResult, render
from .units import Unit, UnitError, parse_unit, parse_units

__all__ = [
    "Model", "load_model", "Unit", "parse_unit", "parse_units", "capture", "render", "RenderResult",
    "objectives", "probe", "probe_units", "ProbeReport", "SAE", "train_sae", "train_layer_sae", "load_sae", "evaluate_sae", "mine", "merge", "ExampleIndex", "IndexMismatch", "LayerError", "UnitError", "WeightsUnavailable", "RenderError", "__version__",
]
