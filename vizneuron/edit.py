"""Edits: a model with some of its units ablated, usable everywhere a model is.

    edited = vz.edit(model, ablate=["layer3/sae:12", "layer3/sae:40"], saes={"sae": sae})
    edited.edits                  # what was changed
    edited.save("fix.json")       # base model spec, SAE files with their digests, ablated units
    vz.load_model("edit:fix.json")

Units are held at their values by `ablate.hold` (an SAE feature moves only its decoded
contribution, so the SAE's reconstruction error stays in). The edit is a
forward hook on a copy of the network: renders, the miner, the probe, circuits and the app all
see the edited layer, and its fingerprint differs from the base model's (caches and indexes keep
them apart).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors

from .ablate import hold
from .choices import MODES
from .errors import VizneuronError
from .files import readable
from .imageio import write_atomic
from .models.base import Model, weights_digest
from .models.registry import ModelSpec, load_model
from .models.weights import load_weights
from .sae.model import SAE, SAEError, load_sae
from .stream import ActivationStream
from .units import Unit, UnitError, parse_units, unit_maps

FORMAT = 1  # version of the edit file
MAX_UNITS = 65_536  # units one edit may hold: a bound on what an edit file can make a loader do


class EditError(VizneuronError):
    """An edit that cannot be made or read back, with what to change."""


@dataclass(frozen=True)
class Ablation:
    """One ablated unit and the value it is held at."""

    unit: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "value": self.value}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes: an edit file pins the SAE files it names."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unit_means(model: Model, units: Sequence[Unit], data: Any, *, batch_size: int = 64,
               max_images: int | None = None) -> list[float]:
    """Each unit's mean over `data`'s images (at most `max_images` of them, a seeded subset) and the
    layer's positions: what mean ablation holds it at."""
    layers = list(dict.fromkeys(unit.layer for unit in units))
    totals = torch.zeros(len(units), dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for batch in ActivationStream(model, layers, data, batch_size=batch_size, max_images=max_images):
            for i, unit in enumerate(units):
                totals[i] += unit_maps([unit], batch.activations[unit.layer])[:, 0].double().mean(1).sum()
            count += len(batch.ids)
    if count == 0:
        raise EditError("mean ablation needs images: the data given holds none that could be read")
    return (totals / count).tolist()


class EditedModel(Model):
    """A model whose listed units are held at fixed values in every forward pass."""

    def __init__(self, base: Model, base_spec: str, units: list[Unit], values: list[float], mode: str,
                 sae_files: Mapping[str, str | None],
                 weights: Mapping[str, dict[str, torch.Tensor]] | None = None) -> None:
        module = copy.deepcopy(base.module)
        super().__init__(module, name=f"{base.name}+edit", inputs=base.inputs)
        self.base, self.base_spec = base, base_spec
        self.weights = dict(weights or {})  # module -> its replaced state dict (e.g. a retrained head)
        for name, state in self.weights.items():
            try:
                target = self.module.get_submodule(name)
            except AttributeError:
                raise EditError(f"{base.name} has no module {name!r} to replace the weights of") from None
            load_weights(target, state, f"the replaced weights of {name}")
        self.mode = mode
        self.ablations = [Ablation(unit.name, float(value)) for unit, value in zip(units, values)]
        self.sae_files = dict(sae_files)
        self._units = units
        self._layers = base._layers  # same layers and shapes; measured once
        by_layer: dict[str, list[int]] = {}
        for i, unit in enumerate(units):
            by_layer.setdefault(unit.layer, []).append(i)
        for layer, members in by_layer.items():
            chosen, held = [units[i] for i in members], [values[i] for i in members]
            self.module_for(layer).register_forward_hook(
                lambda _m, _i, out, chosen=chosen, held=held: hold(out, chosen, held))

    @property
    def edits(self) -> list[dict[str, Any]]:
        """What was changed: each ablated unit and the value it is held at, and any module whose
        weights were replaced."""
        return [ablation.to_dict() for ablation in self.ablations] + [{"weights": name} for name in self.weights]

    def with_weights(self, weights: Mapping[str, dict[str, torch.Tensor]]) -> EditedModel:
        """The same edit with some modules' weights replaced (a head retrained with the edit in place)."""
        return EditedModel(self.base, self.base_spec, self._units, [a.value for a in self.ablations], self.mode,
                           self.sae_files, {**self.weights, **weights})

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            saes = {name: _sae_digest(self._units, name) for name in self.sae_files}
            text = json.dumps([super().fingerprint, self.mode, self.edits, saes], sort_keys=True)  # weights as edited
            self._fingerprint = hashlib.sha1(text.encode()).hexdigest()
        return self._fingerprint

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The edit file's content; SAE paths relative to the edit file's folder where they can be."""
        saes = {}
        for name, path in self.sae_files.items():
            if path is None:
                raise EditError(f"SAE {name!r} was given in memory: save it (sae.save(PATH)) and pass the path "
                                "in saes= so the edit file can name it")
            shown = Path(path).resolve()
            if relative_to is not None and shown.is_relative_to(relative_to.resolve()):
                shown = shown.relative_to(relative_to.resolve())
            saes[name] = {"file": str(shown), "sha256": file_digest(path)}
        return {"vizneuron_edit": FORMAT, "model": self.base_spec, "mode": self.mode, "saes": saes,
                "ablate": [ablation.to_dict() for ablation in self.ablations]}

    def save(self, path: str | Path) -> Path:
        """Write the edit as JSON (`load_model("edit:PATH")` reads it back); replaced weights go to
        `PATH.weights.safetensors` next to it, pinned by digest."""
        path = Path(path)
        content = self.to_dict(path.parent)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.weights:
                extra = path.with_suffix(".weights.safetensors")
                tensors = {f"{module}.{key}": value.detach().cpu().contiguous()
                           for module, state in self.weights.items() for key, value in state.items()}
                write_atomic(extra, save_tensors(tensors))
                content["weights"] = {"file": extra.name, "sha256": file_digest(extra), "modules": list(self.weights)}
            write_atomic(path, (json.dumps(content, indent=1) + "\n").encode())
        except OSError as err:
            raise EditError(f"cannot write the edit to {path}: {err.strerror or err}") from None
        return path


def _sae_digest(units: list[Unit], name: str) -> str:
    for unit in units:
        if unit.kind == "sae" and unit.source.split("?")[0] == name:
            return weights_digest(unit.sae)
    return ""


def edit(model: Model | str, ablate: str | Sequence[str], *, mode: str = "zero",
         saes: Mapping[str, SAE | str] | None = None,
         data: Any = None, values: Sequence[float] | None = None, batch_size: int = 64,
         max_images: int | None = None) -> EditedModel:
    """`model` with the units in `ablate` held at zero (`mode="zero"`) or at their mean over `data`
    (`mode="mean"`, over at most `max_images` of its images); `values` gives the values directly
    instead. Units are any channel, neuron, direction or SAE feature (`LAYER/NAME:F` with
    `saes={NAME: SAE or path}`; give paths to save the edit)."""
    if mode not in MODES:
        raise EditError(f"unknown ablation mode {mode!r}; choose {' or '.join(MODES)}")
    base_spec = model if isinstance(model, str) else model.name
    base = load_model(model)
    if isinstance(base, EditedModel):
        raise EditError("this model is already edited: give all the units to one edit of the base model")
    loaded: dict[str, SAE] = {}
    files: dict[str, str | None] = {}
    for name, sae in (saes or {}).items():
        if isinstance(sae, SAE):  # a frozen copy: the edit must not change with the caller's SAE
            loaded[name], files[name] = copy.deepcopy(sae).eval().requires_grad_(False), None
        else:
            try:
                loaded[name], files[name] = load_sae(sae).eval().requires_grad_(False), str(sae)
            except (SAEError, OSError) as err:
                raise EditError(f"SAE {name!r}: {err}") from None
    try:
        units = parse_units(ablate, base, loaded)
    except UnitError as err:
        raise EditError(str(err)) from None
    if len(units) > MAX_UNITS:
        raise EditError(f"{len(units):,} units to ablate; an edit holds at most {MAX_UNITS:,}")
    twice = _repeated([unit.name for unit in units])
    if twice:
        raise EditError(f"{twice} is listed more than once: name each unit once")
    for unit in units:
        if unit.kind == "logit":
            raise EditError(f"{unit.name}: ablating a class logit changes nothing downstream; ablate the units "
                            "that feed it")
    used = {unit.source.split("?")[0] for unit in units if unit.kind == "sae"}
    files = {name: path for name, path in files.items() if name in used}
    if values is not None:
        if len(values) != len(units):
            raise EditError(f"{len(values)} values for {len(units)} units")
        held = [float(v) for v in values]
    elif mode == "mean":
        if data is None:
            raise EditError("mean ablation needs data= (the images whose mean activation the units are held at)")
        try:
            held = unit_means(base, units, data, batch_size=batch_size, max_images=max_images)
        except ValueError as err:  # a source that holds no images
            raise EditError(f"mean ablation: {err}") from None
    else:
        held = [0.0] * len(units)
    return EditedModel(base, base_spec, units, held, mode, files)


def read_edit_file(path: str | Path, run_code: bool = False) -> tuple[dict[str, Any], str, dict[str, Path]]:
    """An edit file's content, checked whole against the edit schema before anything is loaded, its
    base model spec and its SAE files (paths as they resolve), so a server can check what loading it
    would read before it does. Edit files are shared as data: a base that runs code (`python:`) is
    refused unless `run_code`, and a base that is itself an edit is refused."""
    where = readable(path, "edit file")
    try:
        spec = json.loads(where.read_text())
    except FileNotFoundError:
        raise EditError(f"edit file {where} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise EditError(f"edit file {where} is not readable JSON ({err})") from None
    if not isinstance(spec, dict) or spec.get("vizneuron_edit") != FORMAT or not isinstance(spec.get("ablate"), list):
        raise EditError(f"{where} is not a vizneuron edit file (written by EditedModel.save)")
    _check_schema(spec, where, run_code)
    files = {}
    for name, entry in (spec.get("saes") or {}).items():
        file = Path(entry["file"])
        files[name] = readable(file if file.is_absolute() else where.parent / file, "SAE file")
    return spec, str(spec.get("model", "default")), files


def _check_schema(spec: dict[str, Any], where: Path, run_code: bool) -> None:
    """Every field of an edit file, with one line for the first that is wrong."""
    def wrong(field: str, why: str) -> EditError:
        return EditError(f"{where}: `{field}` {why}")

    base = spec.get("model", "default")
    if not isinstance(base, str) or not base.strip():
        raise wrong("model", "must be a model spec such as default or tflite:m.tflite")
    parsed = ModelSpec.parse(base)
    if parsed.source == "edit":
        raise wrong("model", f"is another edit ({base}); an edit's base is a model: give all the units to one edit")
    if parsed.runs_code and not run_code:
        raise wrong("model", f"{base!r} imports and runs code; an edit file is data, so this is refused (load it "
                             "with run_code=True, or `edit:PATH?run_code=yes`, only if you trust the file)")
    if spec.get("mode", "zero") not in MODES:
        raise wrong("mode", f"must be {' or '.join(MODES)}")
    saes = spec.get("saes") or {}
    if not isinstance(saes, dict) or not all(_pinned_file(entry) for entry in saes.values()):
        raise wrong("saes", 'must map each SAE name to {"file": PATH, "sha256": DIGEST}')
    ablate = spec["ablate"]
    if len(ablate) > MAX_UNITS:
        raise wrong("ablate", f"lists {len(ablate):,} units; an edit holds at most {MAX_UNITS:,}")
    if not all(isinstance(item, dict) and isinstance(item.get("unit"), str) and _finite(item.get("value"))
               for item in ablate):
        raise wrong("ablate", 'entries must each be {"unit": SPEC, "value": a finite number}')
    twice = _repeated([item["unit"] for item in ablate])
    if twice:
        raise wrong("ablate", f"lists {twice} more than once")
    weights = spec.get("weights")
    modules = weights.get("modules") if isinstance(weights, dict) else None
    if weights is not None and not (_pinned_file(weights) and isinstance(modules, list) and modules
                                    and all(isinstance(m, str) for m in modules)):
        raise wrong("weights", 'must be {"file": PATH, "sha256": DIGEST, "modules": [MODULE, ...]}')


def _pinned_file(entry: Any) -> bool:
    """`{"file": PATH, "sha256": DIGEST}`: a file named with the digest it was saved with."""
    return isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _repeated(names: Sequence[str]) -> str | None:
    """The first name that appears twice, if any."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def load_edit(path: str, options: dict[str, str] | None = None) -> EditedModel:
    """Read an edit file (see `EditedModel.save`), checked whole first, then its SAE files and replaced
    weights against the digests it was saved with. `edit:PATH?run_code=yes` allows a `python:` base."""
    where = readable(path, "edit file")
    run_code = (options or {}).get("run_code", "no").lower() in ("yes", "true", "1")
    spec, base, files = read_edit_file(where, run_code)
    saes = {}
    for name, entry in (spec.get("saes") or {}).items():
        file = files[name]
        if not file.is_file():
            raise EditError(f"{where}: SAE {name!r} file {file} not found")
        if file_digest(file) != entry["sha256"]:
            raise EditError(f"{where}: SAE {name!r} file {file} changed since the edit was saved (digest differs)")
        saes[name] = str(file)
    ablate = [item["unit"] for item in spec["ablate"]]
    values = [float(item["value"]) for item in spec["ablate"]]
    edited = edit(base, ablate, mode=spec.get("mode", "zero"), saes=saes, values=values)
    if spec.get("weights"):
        entry = spec["weights"]
        file = readable(where.parent / entry["file"], "replaced weights")
        if not file.is_file() or file_digest(file) != entry["sha256"]:
            raise EditError(f"{where}: replaced weights {file} missing or changed since the edit was saved")
        tensors = load_file(str(file))
        if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
            raise EditError(f"{where}: replaced weights {file} hold NaN or infinite values")
        edited = edited.with_weights({module: {key[len(module) + 1:]: value for key, value in tensors.items()
                                               if key.startswith(module + ".")} for module in entry["modules"]})
    edited.name = f"edit:{path}"
    return edited
