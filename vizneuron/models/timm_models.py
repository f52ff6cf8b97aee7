"""`timm:NAME[?weights=default|none|PATH&pretrained=false&tokens=patches|cls]` via timm's `create_model`.

For ViTs, a channel of a token layer is the feature averaged over patch tokens, or with
`tokens=cls` the CLS token's feature."""

from __future__ import annotations

from pathlib import Path

from .base import Model
from .weights import download_errors, load_state_dict


def load_timm(name: str, options: dict[str, str]) -> Model:
    import timm

    if not timm.list_models(name.split(".")[0]) and not timm.list_models(name.split(".")[0], pretrained=True):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ValueError(f"unknown timm model {name!r}; closest: {', '.join(close)}")
    choice = options.get("weights", "default")
    if options.get("pretrained", "true").lower() in ("false", "0", "no"):
        choice = "none"
    hint = f"timm:{name}?weights=/path/to/model.safetensors"
    with download_errors(f"timm {name}", hint):
        module = timm.create_model(name, pretrained=choice == "default")
    if Path(choice).suffix:
        module.load_state_dict(load_state_dict(choice))
    cfg = module.pretrained_cfg or {}
    size = cfg.get("input_size", (3, 224, 224))[1:]
    return Model(module, name=f"timm:{name}", input_size=tuple(size),
                 mean=cfg.get("mean", (0.485, 0.456, 0.406)), std=cfg.get("std", (0.229, 0.224, 0.225)),
                 labels=_labels(module), crop_fraction=float(cfg.get("crop_pct", 0.875)),
                 prefix_tokens=int(getattr(module, "num_prefix_tokens", 0)),
                 cls_token=options.get("tokens", "patches") == "cls",
                 fixed_input=hasattr(module, "patch_embed") and not getattr(module, "dynamic_img_size", False))


def _labels(module) -> list[str] | None:
    """Class names from timm's bundled ImageNet metadata, when the head is an ImageNet one."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(module)
    return [d.split(",")[0] for d in ImageNetInfo(subset).label_descriptions()] if subset else None
