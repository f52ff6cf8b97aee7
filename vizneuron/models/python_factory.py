"""`python:MODULE:FACTORY[?size=224&mean=a,b,c&std=a,b,c]`: any network your own code builds."""

from __future__ import annotations

import importlib
import os
import sys

from torch import nn

from ..errors import VizneuronError
from .base import InputConfig, Model


def load_python(target: str, options: dict[str, str]) -> Model:
    if ":" not in target:
        raise VizneuronError(f"python models need python:MODULE:FACTORY, got python:{target}")
    module_name, factory_name = target.rsplit(":", 1)
    if os.getcwd() not in sys.path:  # let `python:mymodels:build` find mymodels.py where the user is
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise VizneuronError(f"python:{target}: cannot import {module_name} ({err})") from None
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise VizneuronError(f"python:{target}: {module_name} has no {factory_name}")
    if not callable(factory):
        raise VizneuronError(f"python:{target}: {factory_name} is a {type(factory).__name__}, not a function that "
                         "builds a model")
    try:
        built = factory()
    except TypeError as err:  # it wants arguments
        raise VizneuronError(f"python:{target}: calling {factory_name}() failed ({err}); it must build the model "
                         "without arguments") from None
    if isinstance(built, Model):
        return built
    if not isinstance(built, nn.Module):
        raise VizneuronError(f"python:{target} returned {type(built).__name__}, not an nn.Module or vizneuron.Model")
    size = int(options.get("size", 224))

    def floats(key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(float(v) for v in options[key].split(",")) if key in options else default

    return Model(built, name=f"python:{target}", inputs=InputConfig(
        (size, size), floats("mean", (0.0, 0.0, 0.0)), floats("std", (1.0, 1.0, 1.0))))
