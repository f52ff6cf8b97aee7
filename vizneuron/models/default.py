"""The bundled models, whose weights ship inside the package: `default` (a CIFAR-10 classifier)
and the SHIFT benchmark's cat-vs-dog pair `default:cue-biased` / `default:cue-oracle`.

Trained by `scripts/train_default_model.py` (see weights/MODEL_CARD.md); no network needed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ..errors import VizneuronError
from .base import InputConfig, Model
from .cifar_net import CifarNet
from .weights import WeightsUnavailable, load_state_dict, load_weights

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Bundled:
    """One bundled model: its CifarNet widths, classes and weights file (stem of `WEIGHTS_DIR/*.safetensors`)."""

    widths: tuple[int, int, int, int]
    classes: tuple[str, ...]
    weights: str


#: name after `default:` -> the bundled model ("" is the default model itself)
BUNDLED = {
    "": Bundled((32, 64, 128, 128), CIFAR10_CLASSES, "default_cifar"),
    "cue-biased": Bundled((32, 64, 128, 128), ("cat", "dog"), "cue_biased"),
    "cue-oracle": Bundled((32, 64, 128, 128), ("cat", "dog"), "cue_oracle"),
}
WEIGHTS_FILE = WEIGHTS_DIR / "default_cifar.safetensors"
#: SAEs that ship with a bundled model: its name -> {layer: file stem in WEIGHTS_DIR}
BUNDLED_SAES = {"default:cue-biased": {"layer3": "cue_biased_layer3_sae"}}


def bundled_saes(model_name: str, layer: str) -> dict[str, Path]:
    """The SAE files shipped for `model_name`'s `layer`, by name (none for most models)."""
    stem = BUNDLED_SAES.get(model_name, {}).get(layer)
    return {stem: WEIGHTS_DIR / f"{stem}.safetensors"} if stem else {}


def load_default(name: str = "", options: dict[str, str] | None = None) -> Model:
    options = options or {}
    if name not in BUNDLED:
        close = difflib.get_close_matches(name, [n for n in BUNDLED if n], n=3, cutoff=0.3)
        raise VizneuronError(f"no bundled model {name!r}; bundled: default, "
                         f"{', '.join('default:' + n for n in BUNDLED if n)}"
                         + (f" (closest: {', '.join(close)})" if close else ""))
    bundled = BUNDLED[name]
    module = CifarNet(bundled.widths, len(bundled.classes))
    weights = options.get("weights", str(WEIGHTS_DIR / f"{bundled.weights}.safetensors"))
    if "weights" not in options and not Path(weights).exists():
        raise WeightsUnavailable(f"bundled weights missing at {weights}; reinstall vizneuron or run "
                                 "scripts/train_default_model.py")
    if weights != "none":  # a file of the user's is found (or not) through the file access
        load_weights(module, load_state_dict(weights), weights)
    return Model(module, name="default" + (f":{name}" if name else ""),
                 inputs=InputConfig((32, 32), CIFAR_MEAN, CIFAR_STD, labels=bundled.classes))
