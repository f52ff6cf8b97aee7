"""The bundled default model: a CIFAR-10 classifier whose weights ship inside the package.

Trained by `scripts/train_default_model.py` (see weights/MODEL_CARD.md); no network needed.
"""

from __future__ import annotations

from pathlib import Path

from .base import InputConfig, Model
from .cifar_net import CifarNet
from .weights import WeightsUnavailable, load_state_dict

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "default_cifar.safetensors"


def load_default(name: str = "", options: dict[str, str] | None = None) -> Model:
    options = options or {}
    module = CifarNet()
    weights = options.get("weights", str(WEIGHTS_FILE))
    if weights != "none":
        if not Path(weights).exists():
            raise WeightsUnavailable(f"bundled weights missing at {weights}; reinstall vizneuron or run "
                                     "scripts/train_default_model.py")
        module.load_state_dict(load_state_dict(weights))
    return Model(module, name="default", inputs=InputConfig((32, 32), CIFAR_MEAN, CIFAR_STD, labels=CIFAR10_CLASSES))
