"""Packages whose members load on first use (PEP 562 style): `import vizneuron` and the CLI's parser
stay free of torch until something needs it, while `vz.render` and friends work as usual."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class LazyPackage(types.ModuleType):
    """A package module whose public names are imported from their submodules when first read."""

    def __getattr__(self, name: str) -> Any:
        where = self.__dict__.get("_lazy_members", {})
        if name not in where:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        module = importlib.import_module(where[name], self.__name__)
        value = getattr(module, name) if hasattr(module, name) else module  # `objectives` is a module
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # importing a submodule binds it on its package; where the package exports a member of the
        # same name (the function `mine` of the package `mine`), the member wins, as with eager imports
        where = self.__dict__.get("_lazy_members", {})
        if isinstance(value, types.ModuleType) and where.get(name) == f".{name}" and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(self.__dict__.get("_lazy_members", {})))


def make_lazy(package: str, members: dict[str, tuple[str, ...]]) -> None:
    """Turn the package `package` lazy: `members` maps a relative module (".capture") to the names it
    provides (a name that is the module itself, like ".optim.objectives": ("objectives",), gives the
    module)."""
    module = sys.modules[package]
    module._lazy_members = {name: source for source, names in members.items() for name in names}
    module.__class__ = LazyPackage
