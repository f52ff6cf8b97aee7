"""`torchvision:NAME[?weights=default|none|ENUM|PATH]` through torchvision's own model registry."""

from __future__ import annotations

import difflib

from ..errors import VizneuronError
from .base import InputConfig, Model, TokenLayout
from .weights import download_errors, load_state_dict, load_weights


def load_torchvision(name: str, options: dict[str, str]) -> Model:
    import torchvision  # heavy (about 2 s to import, most of it torch._dynamo): paid only by torchvision: specs

    try:
        weights_enum = torchvision.models.get_model_weights(name)
    except ValueError:
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=5)
        raise VizneuronError(f"unknown torchvision model {name!r}; closest: {', '.join(close)}") from None
    choice = options.get("weights", "default")
    reference = weights_enum.DEFAULT  # metadata (labels, size, normalisation) needs no download
    is_file = choice not in ("default", "none") and choice not in weights_enum.__members__
    if choice in ("default", "none") or is_file:
        weights = weights_enum.DEFAULT if choice == "default" else None
    else:
        weights = reference = weights_enum[choice]
    hint = f"torchvision:{name}?weights=/path/to/{name}.pth"
    with download_errors(f"torchvision {name}", hint):
        module = torchvision.models.get_model(name, weights=weights)
    if is_file:
        load_weights(module, load_state_dict(choice), choice)
    preset = reference.transforms()
    size = preset.crop_size[0] if hasattr(preset, "crop_size") else 224
    return Model(module, name=f"torchvision:{name}", inputs=InputConfig(
        (size, size), getattr(preset, "mean", (0.485, 0.456, 0.406)), getattr(preset, "std", (0.229, 0.224, 0.225)),
        crop_fraction=size / preset.resize_size[0] if getattr(preset, "resize_size", None) else 0.875,
        fixed_size=name.startswith(("vit_", "swin_", "maxvit")),
        # torchvision ViTs prepend a class token
        tokens=TokenLayout(1 if name.startswith("vit_") else 0, options.get("tokens", "patches") == "cls"),
        labels=reference.meta.get("categories")))
