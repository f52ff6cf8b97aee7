"""vizneuron: what does this neuron respond to, and is it one concept or several?

    import vizneuron as vz
    model = vz.load_model("default")
    result = vz.render(model, "layer3:5", samples=4)          # diversity weight 1 by default
    index = vz.mine(model, "layer2,layer3", "path/to/images", k=32, index="examples.sqlite")
    feeds = vz.circuit(model, "layer3:5", upstream="layer2", data="path/to/images")
    fixed = vz.shift(model, "layer3", "l3.safetensors", "train/", concepts={"cue": ..., "cat": ..., "dog": ...})

Members are imported on first use (`vizneuron.lazy`), so importing the package costs no torch.
"""

from __future__ import annotations

from .lazy import make_lazy
from .version import __version__

_MEMBERS = {
    ".capture": ("capture",),
    ".circuit": ("Circuit", "CircuitError", "circuit", "expanded_weights"),
    ".edit": ("EditedModel", "EditError", "edit"),
    ".mine": ("ExampleIndex", "IndexMismatch", "merge", "mine"),
    ".models": ("LayerError", "Model", "ModelSpec", "WeightsUnavailable", "load_model"),
    ".optim.objectives": ("objectives",),
    ".optim.cache": ("RenderCache",),
    ".optim.config": ("PRESETS", "RenderConfig"),
    ".optim.render": ("RenderError", "RenderResult", "render"),
    ".probe": ("ProbeReport", "probe", "probe_units"),
    ".sae": ("SAE", "SAETrainConfig", "evaluate_sae", "load_sae", "train_layer_sae", "train_layer_saes", "train_sae"),
    ".shift": ("ShiftResult", "shift"),
    ".site": ("SiteResult", "site"),
    ".stream": ("ActivationStream",),
    ".units": ("Unit", "UnitError", "parse_unit", "parse_units"),
}
make_lazy(__name__, _MEMBERS)

__all__ = [name for names in _MEMBERS.values() for name in names] + ["__version__"]
