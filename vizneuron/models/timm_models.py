"""`timm:NAME[?weights=default|none|PATH&pretrained=false&tokens=patches|cls]` via timm's `create_model`.

For ViTs, a channel of a token layer is the feature averaged over patch tokens, or with
`tokens=cls` the CLS token's feature."""

from __future__ import annotations

import difflib

from ..errors import VizneuronError
from .base import InputConfig, Model, TokenLayout
from .weights import download_dir, download_errors, load_state_dict, load_weights


def load_timm(name: str, options: dict[str, str]) -> Model:
    import timm  # optional at import time: ~3 s to import, paid only when a timm model is asked for

    if not timm.list_models(name.split(".")[0]) and not timm.list_models(name.split(".")[0], pretrained=True):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise VizneuronError(f"unknown timm model {name!r}; closest: {', '.join(close)}")
    choice = options.get("weights", "default")
    if options.get("pretrained", "true").lower() in ("false", "0", "no"):
        choice = "none"
    hint = f"timm:{name}?weights=/path/to/model.safetensors"
    with download_errors(f"timm {name}", hint):
        module = timm.create_model(name, pretrained=choice == "default", cache_dir=download_dir())
    if choice not in ("default", "none"):  # anything else names a weights file
        load_weights(module, load_state_dict(choice), choice)
    cfg = module.pretrained_cfg or {}
    size = cfg.get("input_size", (3, 224, 224))[1:]
    return Model(module, name=f"timm:{name}", inputs=InputConfig(
        tuple(size), cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)),
        crop_fraction=float(cfg.get("crop_pct", 0.875)),
        fixed_size=hasattr(module, "patch_embed") and not getattr(module, "dynamic_img_size", False),
        tokens=TokenLayout(int(getattr(module, "num_prefix_tokens", 0)), options.get("tokens", "patches") == "cls"),
        labels=_labels(module)))


def _labels(module) -> list[str] | None:
    """Class names from timm's bundled ImageNet metadata, when the head is an ImageNet one."""
    from timm.data import ImageNetInfo, infer_imagenet_subset  # timm: see load_timm

    subset = infer_imagenet_subset(module)
    return [d.split(",")[0] for d in ImageNetInfo(subset).label_descriptions()] if subset else None
