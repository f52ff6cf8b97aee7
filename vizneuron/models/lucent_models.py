"""`lucent:inceptionv1[?weights=default|none|PATH&relu=plain|redirected]`: lucid's InceptionV1.

The weights file is fetched with torch.hub's downloader into its cache, then read with
`weights_only=True` (lucent's own loader unpickles it unchecked).
"""

from __future__ import annotations

import torch.hub

from ..errors import MissingDependency, VizneuronError
from .base import InputConfig, Model
from .weights import download_dir, download_errors, load_state_dict, load_weights


def load_lucent(name: str, options: dict[str, str]) -> Model:
    if name != "inceptionv1":
        raise VizneuronError(f"unknown lucent model {name!r}; available: inceptionv1")
    try:
        from lucent.modelzoo.inceptionv1 import InceptionV1  # optional extra: vizneuron[lucent]
        from lucent.modelzoo.inceptionv1.InceptionV1 import model_urls
    except ImportError:
        raise MissingDependency("lucent models need the extra: pip install 'vizneuron[lucent]'") from None
    module = InceptionV1(pretrained=False, redirected_ReLU=options.get("relu", "plain") == "redirected")
    choice = options.get("weights", "default")
    if choice == "default":
        url = model_urls["inceptionv1"]
        target = download_dir() / "checkpoints" / url.rsplit("/", 1)[-1]
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with download_errors("lucent inceptionv1", "lucent:inceptionv1?weights=/path/to/inception5h.pth"):
                torch.hub.download_url_to_file(url, str(target))
        choice = str(target)
    if choice != "none":
        load_weights(module, load_state_dict(choice), choice)
    # lucid's InceptionV1 takes x * 255 - 117, i.e. mean 117/255 and std 1/255 in [0, 1] terms.
    return Model(module, name="lucent:inceptionv1",
                 inputs=InputConfig((224, 224), (117 / 255,) * 3, (1 / 255,) * 3))
