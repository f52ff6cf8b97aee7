"""The one way vizneuron reads activations: hook exactly the layers a job needs, stop early.

    with capture(model, ["layer2", "layer3"]) as cap:
        acts = cap.run(images)        # {"layer2": tensor, "layer3": tensor}

The forward pass is cut short right after the deepest requested layer (nothing after it runs),
and every hook is removed when the block exits, errors included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch

from .errors import VizneuronError
from .models.base import OUTPUT_LAYER, Model


class _StopForward(Exception):
    """Raised from the deepest hook to skip the rest of the network."""


class Capture:
    """Holds the hooked layers' outputs of the latest `run`."""

    def __init__(self, model: Model, layers: list[str], stop_early: bool, aliases: dict[str, str],
                 edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> None:
        self.model = model
        self.layers = layers
        self.aliases = aliases  # names as the caller wrote them -> resolved names
        self.edits = edits or {}  # layer -> function replacing its output for the rest of the pass
        self.activations: dict[str, torch.Tensor] = {}
        infos = [model.layer(name) for name in layers]
        deepest = max(infos, key=lambda info: info.order)
        # A module called several times per pass (e.g. a shared ReLU) cannot stop the pass at its
        # first call, and the final output has nothing after it to skip.
        self.stop_at = deepest.name if stop_early and deepest.calls == 1 and deepest.name != OUTPUT_LAYER else None
        edited = [model.layer(name).order for name in self.edits]
        if edited and deepest.order <= max(edited):  # an edit with nothing captured after it: run for the output
            self.stop_at = None

    def hook_for(self, name: str):
        def hook(_module, _inputs, output):
            self.activations[name] = output
            if name == self.stop_at:
                raise _StopForward
            if name in self.edits:
                return self.edits[name](output)

        return hook

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward `images` (RGB in [0, 1]) and return the captured activations by layer name."""
        self.activations = {}
        self.output = None
        try:
            self.output = self.model(images)
        except _StopForward:
            pass
        acts = dict(self.activations)
        acts.update({alias: acts[name] for alias, name in self.aliases.items() if name in acts})
        return acts


@contextmanager
def capture(model: Model, layers: Iterable[str], stop_early: bool = True,
            edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> Iterator[Capture]:
    """Hook `layers` (names or lucent-style aliases) of `model` for the duration of the block.

    `edits` maps layers to functions whose result replaces that layer's output for the rest of
    the pass (e.g. an SAE reconstruction spliced in); `run` then returns the unedited outputs and
    `cap.output` holds the edited network's output.
    """
    edits = {model.resolve_layer(name): fn for name, fn in (edits or {}).items()}
    requested = list(layers) + [name for name in edits if name not in layers]
    resolved = {name: model.resolve_layer(name) for name in requested}
    names = list(dict.fromkeys(resolved.values()))
    if not names:
        raise VizneuronError("capture needs at least one layer")
    cap = Capture(model, names, stop_early, {a: n for a, n in resolved.items() if a != n}, edits)
    handles = []
    try:
        for name in names:
            handles.append(model.module_for(name).register_forward_hook(cap.hook_for(name)))
        yield cap
    finally:
        for handle in handles:
            handle.remove()
