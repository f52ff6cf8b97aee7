"""Unit specs: the one currency of vizneuron. Parse once, resolve against a model, then measure.

Grammar (API, CLI and app alike):
    LAYER:C            channel C, mean over space (or tokens)
    LAYER:C@Y,X        the single neuron of channel C at row Y, column X
    LAYER:dir=PATH.npy a direction in the layer's channel space
    logit:K | logit:NAME  a class logit, by index or label
and, for the CLI, ranges that expand to many units: LAYER:0-15, LAYER:3,7,9, LAYER:*.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .errors import VizneuronError
from .files import readable
from .models.base import OUTPUT_LAYER, PLAIN, LayerError, Model, TokenLayout
from .sae.formats import detect_format, layer_for_hook
from .sae.model import SAE, SAEError, load_sae

#: SAEs by the name unit specs use for them (`LAYER/NAME:F`), handed to the parser by the caller
SAEs = Mapping[str, SAE]
TRANSFER = "?transfer"  # `LAYER/SAE?transfer:F`: use an SAE on a model or layer it was not trained on


class UnitError(VizneuronError):
    """A unit spec that does not parse or does not fit the model."""


@dataclass(frozen=True)
class Unit:
    """One thing to visualise. `layer` is resolved to a dotted module path by `resolve`."""

    layer: str
    kind: str  # "channel" | "neuron" | "direction" | "logit"
    index: int | None = None  # channel or logit index
    position: tuple[int, int] | None = None  # (y, x) for neurons
    direction: torch.Tensor | None = field(default=None, compare=False, repr=False)
    source: str = ""  # direction file or logit label, for display
    tokens: TokenLayout = field(default=PLAIN, compare=False)  # how a token layer is read
    sae: SAE | None = field(default=None, compare=False, repr=False)  # the SAE of an "sae" feature unit

    @property
    def name(self) -> str:
        if self.kind == "channel":
            return f"{self.layer}:{self.index}"
        if self.kind == "neuron":
            return f"{self.layer}:{self.index}@{self.position[0]},{self.position[1]}"
        if self.kind == "direction":
            return f"{self.layer}:dir={self.source}"
        if self.kind == "sae":
            return f"{self.layer}/{self.source}:{self.index}"
        return f"logit:{self.index}"

    def __str__(self) -> str:
        return self.name

    def view(self, act: torch.Tensor) -> torch.Tensor:
        """The layer output as (N, C, ...), token layouts resolved as this unit reads them."""
        return self.tokens.channels_first(act)

    def activation(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The unit's value for every image in the batch, shape (N,)."""
        if self.kind == "sae":
            return unit_maps([self], acts[self.layer])[:, 0].mean(1)
        act = self.view(acts[self.layer])
        if self.kind == "direction":
            direction = self.direction.to(act.device, act.dtype).view(1, -1, *([1] * (act.ndim - 2)))
            return (act * direction).sum(1).flatten(1).mean(1)
        if self.kind == "neuron":
            return act[:, self.index, self.position[0], self.position[1]]
        return act[:, self.index].flatten(1).mean(1) if act.ndim > 2 else act[:, self.index]


def map_group(unit: Unit) -> tuple:
    """Units with equal keys read the same view of the same layer and can be mapped together."""
    return (unit.layer, unit.kind == "neuron", unit.tokens, id(unit.sae))


def unit_maps(units: Sequence[Unit], act: torch.Tensor) -> torch.Tensor:
    """Every unit's response over the layer's positions, (N, U, S), for units of one `map_group`.

    S is H*W for spatial layers, the patch tokens for token layers, and 1 for neurons, logits and
    vector layers. A unit's mean over S is its `activation`; the miner also wants the max and where.
    """
    view = units[0].view(act)
    if units[0].kind == "sae":  # encode every position once, keep the features asked for
        sae = units[0].sae
        features = sae.encode(units[0].tokens.rows(act, sae.config.pool))
        features = features[:, torch.tensor([u.index for u in units], device=features.device)]
        return features.reshape(view.shape[0], -1, len(units)).transpose(1, 2)
    flat = view.flatten(2) if view.ndim > 2 else view[..., None]
    if units[0].kind == "neuron":
        c = torch.tensor([u.index for u in units], device=act.device)
        y = torch.tensor([u.position[0] for u in units], device=act.device)
        x = torch.tensor([u.position[1] for u in units], device=act.device)
        return view[:, c, y, x][..., None]
    indices = [u.index for u in units if u.kind != "direction"]
    if len(indices) == len(units):  # channels or logits only: a view, or one gather
        if indices == list(range(flat.shape[1])):
            return flat
        return flat[:, torch.tensor(indices, device=act.device)]
    maps = [flat[:, u.index] if u.kind != "direction" else torch.einsum("ncs,c->ns", flat, u.direction.to(flat))
            for u in units]
    return torch.stack(maps, 1)


def unit_peaks(units: Sequence[Unit], acts: dict[str, torch.Tensor], reduce: str = "max",
               on_maps: Callable[[list[int], torch.Tensor], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's value on each image, (N, U) in the order given: its peak over positions (or the
    mean, `reduce="mean"`), and the flat position of the peak. Units sharing a view are mapped once;
    `on_maps(columns, maps)` sees each such group's maps (N, len(columns), S), e.g. to keep heatmaps."""
    groups: dict[tuple, list[int]] = {}
    for i, unit in enumerate(units):
        groups.setdefault(map_group(unit), []).append(i)
    values = where = None
    for members in groups.values():
        maps = unit_maps([units[i] for i in members], acts[units[members[0]].layer]).float()
        if on_maps is not None:
            on_maps(members, maps)
        peak, position = maps.max(2)
        if values is None:
            values = peak.new_empty(peak.shape[0], len(units))
            where = position.new_empty(peak.shape[0], len(units))
        columns = torch.tensor(members, device=peak.device)
        values[:, columns] = peak if reduce == "max" else maps.mean(2)
        where[:, columns] = position
    return values, where


_RANGE = re.compile(r"^(\d+)-(\d+)$")


def _split(spec: str) -> tuple[str, str]:
    if ":" not in spec:
        raise UnitError(f"unit {spec!r} needs the form LAYER:CHANNEL (e.g. layer3:5) or logit:K")
    layer, rest = spec.split(":", 1)
    if not layer or not rest:
        raise UnitError(f"unit {spec!r} needs the form LAYER:CHANNEL (e.g. layer3:5) or logit:K")
    return layer.strip(), rest.strip()


def parse_unit(spec: str, model: Model, saes: SAEs | None = None) -> Unit:
    """Parse one unit spec and check it against `model`."""
    units = parse_units(spec, model, saes)
    if len(units) != 1:
        raise UnitError(f"{spec!r} names {len(units)} units; give exactly one")
    return units[0]


def parse_units(specs: str | Unit | Sequence[str | Unit], model: Model, saes: SAEs | None = None) -> list[Unit]:
    """Parse specs (a list, or one string with `;` between specs) into resolved units, ranges expanded.
    `saes` names the SAEs that `LAYER/NAME:F` specs may use; a NAME that is not there is read as an
    SAE file. Parsing never changes the model."""
    if isinstance(specs, (str, Unit)):
        specs = [specs]
    units: list[Unit] = []
    for spec in specs:
        if isinstance(spec, Unit):
            units.append(spec)
            continue
        for part in (p.strip() for p in spec.split(";")):
            if part:
                units.extend(_parse_one(part, model, saes or {}))
    if not units and any(isinstance(spec, str) for spec in specs):  # text that names nothing (";;")
        raise UnitError(f"no units given in {specs!r}: name at least one, e.g. {model.default_layer}:0")
    return units


def _parse_one(spec: str, model: Model, saes: SAEs) -> list[Unit]:
    layer_name, rest = _split(spec)
    if "/" in layer_name:
        return _sae_features(spec, *layer_name.split("/", 1), rest, model, saes)
    if layer_name == "logit":
        if not (rest == "*" or _RANGE.match(rest) or all(p.strip().isdigit() for p in rest.split(","))):
            return [_logit_by_name(rest, model)]
        info, kind = model.layer(OUTPUT_LAYER), "logit"
    else:
        try:
            info = model.layer(layer_name)
        except LayerError as err:
            raise UnitError(str(err)) from None
        kind = "logit" if info.name == OUTPUT_LAYER else "channel"
    layer, channels = info.name, info.channels
    tokens = _tokens(info, model)
    if rest.startswith("dir="):
        return [replace(_direction(layer, rest[4:], channels), tokens=tokens)]
    if "@" in rest:
        return [_neuron(spec, rest, info, model)]
    where = layer if kind == "channel" else "the output"
    return [Unit(layer, kind, c, tokens=tokens) for c in _indices(spec, rest, channels, where)]


def _indices(spec: str, rest: str, count: int, where: str) -> list[int]:
    """`*`, `A-B` or `A,B,C` as indices checked against `count`."""
    if rest == "*":
        return list(range(count))
    if _RANGE.match(rest):
        lo, hi = (int(v) for v in _RANGE.match(rest).groups())
        if lo > hi:
            raise UnitError(f"{spec!r}: empty range {lo}-{hi}")
        _channel(hi, count, where)  # bounds first: a huge range is refused before it is expanded
        return list(range(lo, hi + 1))
    return [_channel(int_or_fail(part, spec), count, where) for part in rest.split(",")]


def _sae_features(spec: str, layer_name: str, sae_ref: str, rest: str, model: Model, saes: SAEs) -> list[Unit]:
    """`LAYER/SAE:F`: features of an SAE handed to the parser by name, or saved at a path. An SAE
    whose config names another model or layer is refused unless the spec says `LAYER/SAE?transfer:F`
    (a deliberate transfer)."""
    try:
        info = model.layer(layer_name)
    except LayerError as err:
        raise UnitError(str(err)) from None
    name, transfer = (sae_ref[: -len(TRANSFER)], True) if sae_ref.endswith(TRANSFER) else (sae_ref, False)
    sae = saes.get(name)
    if sae is None:
        path = next((p for p in (readable(name, "SAE file"), readable(name + ".safetensors", "SAE file"))
                     if p.is_file() or detect_format(p)), None)
        if path is None:
            known = f"; given: {', '.join(saes)}" if saes else ""
            raise UnitError(f"{spec!r}: no SAE named {name!r} (neither given nor a file){known}")
        try:
            sae = load_sae(path, d_in=info.channels)
        except SAEError as err:
            raise UnitError(str(err)) from None
    if sae.config.d_in != info.channels:
        raise UnitError(f"{spec!r}: SAE {name!r} reads {sae.config.d_in} channels; {info.name} has {info.channels}")
    trained_model, trained_layer = _trained_on(sae, model)
    if not transfer and (trained_model not in (None, model.name) or trained_layer not in (None, info.name)):
        raise UnitError(f"{spec!r}: SAE {name!r} was trained on {trained_model or model.name} "
                        f"{trained_layer or info.name}, not {model.name} {info.name}; to use it here anyway say "
                        f"{info.name}/{name}{TRANSFER}:{rest}")
    sae = sae.to(model.device)
    return [Unit(info.name, "sae", f, source=sae_ref, sae=sae, tokens=_tokens(info, model))
            for f in _indices(spec, rest, sae.config.d_sae, f"SAE {name}")]


def _trained_on(sae: SAE, model: Model) -> tuple[str | None, str | None]:
    """The model name and (resolved) layer the SAE's config records, each None when unrecorded; a
    foreign SAE's hook name maps to this model's layer where it can (`layer_for_hook`)."""
    layer = sae.config.layer
    try:
        layer = model.resolve_layer(layer) if layer else None
    except LayerError:
        layer = layer_for_hook(model.layers, layer) or layer  # a layer this model does not have: a mismatch
    return sae.config.model, layer


def _tokens(info, model: Model) -> TokenLayout:
    return model.inputs.tokens if info.layout == "tokens" else PLAIN


def _neuron(spec: str, rest: str, info, model: Model) -> Unit:
    layer, shape = info.name, info.shape
    channel_text, pos_text = rest.split("@", 1)
    channel = _channel(int_or_fail(channel_text, spec), info.channels, layer)
    if len(shape) != 3:
        raise UnitError(f"{spec!r}: neurons need a spatial layer; {layer} outputs shape {shape}")
    try:
        y, x = (int(v) for v in pos_text.split(","))
    except ValueError:
        raise UnitError(f"{spec!r}: position must be Y,X (e.g. {layer}:{channel}@2,3)") from None
    if not (0 <= y < shape[1] and 0 <= x < shape[2]):
        raise UnitError(
            f"{spec!r}: position ({y},{x}) outside {layer}'s {shape[1]}x{shape[2]} grid at "
            f"{model.input_size[0]}x{model.input_size[1]} input (valid Y 0-{shape[1] - 1}, X 0-{shape[2] - 1})"
        )
    return Unit(layer, "neuron", channel, (y, x))


def int_or_fail(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UnitError(f"{spec!r}: {text!r} is not a channel number") from None


def _channel(c: int, channels: int | None, layer: str) -> int:
    if channels is None or not 0 <= c < channels:
        raise UnitError(f"channel {c} out of range for {layer}: valid channels are 0-{(channels or 1) - 1}")
    return c


def _direction(layer: str, path_text: str, channels: int | None) -> Unit:
    path = readable(path_text, "direction file")
    if not path.exists():
        raise UnitError(f"direction file {path} not found")
    try:
        vector = np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)
    except (ValueError, OSError, TypeError, EOFError) as err:  # pickled, truncated, empty, not .npy, not numbers
        raise UnitError(f"direction file {path} is not a plain numeric .npy array ({err})") from None
    if vector.shape[0] != channels:
        raise UnitError(f"direction {path} has {vector.shape[0]} values but {layer} has {channels} channels")
    if not np.isfinite(vector).all():
        raise UnitError(f"direction {path} holds NaN or infinite values")
    if not np.any(vector):
        raise UnitError(f"direction {path} is all zeros: it measures nothing")
    return Unit(layer, "direction", direction=torch.from_numpy(vector), source=str(path))


def _logit_by_name(text: str, model: Model) -> Unit:
    index = model.class_index(text)
    if index is not None:
        return Unit(OUTPUT_LAYER, "logit", index, source=text)
    n = model.layer(OUTPUT_LAYER).channels
    labels = [label.lower() for label in model.labels or []]
    close = difflib.get_close_matches(text.lower(), labels, n=5, cutoff=0.5)
    hint = f"; closest labels: {', '.join(close)}" if close else (
        "" if labels else f"; {model.name} has no class labels, use logit:0-{n - 1}"
    )
    raise UnitError(f"unknown class {text!r}{hint}")
