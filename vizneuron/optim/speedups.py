"""The frozen model made cheaper to differentiate for the length of a render, then put back as it was.

A render runs the same eval-mode network hundreds of times, forward and backward, and on a CPU a
third of that time is elementwise passes over large activations, not convolutions. Two exact
rewrites help: convolutions on channels-last weights (1.2x on the bundled model), and each eval-mode
BatchNorm folded into the convolution that feeds it (its scale into the weights, its shift into the
bias), so the pair costs one pass forward and one backward instead of two of each.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_PAIRS: weakref.WeakKeyDictionary[nn.Module, list[tuple[str, str]]] = weakref.WeakKeyDictionary()


@contextmanager
def channels_last(module: nn.Module) -> Iterator[None]:
    """The module's 4-d weights in channels-last layout for the duration (faster convolutions),
    then contiguous again; a module already holding channels-last weights is left alone."""
    weights = [t for t in (*module.parameters(), *module.buffers()) if t.dim() == 4]
    if not weights or any(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
                          for t in weights):
        yield
        return
    module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        module.to(memory_format=torch.contiguous_format)


@contextmanager
def folded_batchnorm(module: nn.Module, keep: Iterable[str] = ()) -> Iterator[int]:
    """Each eval-mode BatchNorm2d whose input is a Conv2d's output that nothing else reads, folded
    into that convolution for the duration; yields how many pairs were folded. The BatchNorm then
    passes its input through, so its output (and any hook on it) is what it was, up to rounding.
    A convolution named in `keep` (a layer the caller reads) keeps its own output and is not
    folded. Models that torch.fx cannot trace are left as they are. The original weight and bias
    objects go back on exit."""
    keep = set(keep)
    pairs = [(c, b) for c, b in _conv_bn_pairs(module) if c not in keep]
    saved: list[tuple[nn.Module, nn.Module, nn.Parameter, nn.Parameter | None]] = []
    try:
        for conv_name, bn_name in pairs:
            conv, bn = module.get_submodule(conv_name), module.get_submodule(bn_name)
            saved.append((conv, bn, conv.weight, conv.bias))
            with torch.no_grad():
                scale = bn.running_var.add(bn.eps).rsqrt()
                if bn.weight is not None:
                    scale = scale * bn.weight
                shift = -bn.running_mean * scale
                if bn.bias is not None:
                    shift = shift + bn.bias
                if conv.bias is not None:
                    shift = shift + conv.bias * scale
                weight = conv.weight * scale.view(-1, 1, 1, 1)
            conv.weight = nn.Parameter(weight, requires_grad=False)
            conv.bias = nn.Parameter(shift, requires_grad=False)
            bn.forward = _passthrough  # an instance attribute: hooks on the module still run
        yield len(pairs)
    finally:
        for conv, bn, weight, bias in saved:
            conv.weight, conv.bias = weight, bias
            del bn.forward


def _passthrough(x: torch.Tensor) -> torch.Tensor:
    return x


class _HookFreeTracer(torch.fx.Tracer):
    """torch.fx's tracer, entering only modules that hold a convolution or a BatchNorm (the rest
    are leaves: their code, and its side effects, never run), and without running hooks: a
    render's capture hooks are in place when it traces, and the deepest one ends the pass."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or not any(
            isinstance(sub, (nn.Conv2d, nn.BatchNorm2d)) for sub in m.modules())

    def call_module(self, m: nn.Module, forward, args, kwargs):
        if self.is_leaf_module(m, self.path_of_module(m)):
            return super().call_module(m, forward, args, kwargs)
        return m.forward(*args, **kwargs)


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where the BatchNorm (eval mode, running statistics) is the
    only reader of the convolution's output and each module runs once; found by tracing the model
    with torch.fx once per module (hooks ignored)."""
    if module in _PAIRS:
        return _PAIRS[module]
    try:
        graph = _HookFreeTracer().trace(module)
    except Exception:  # dynamic control flow, custom ops: no folding, the render is only slower
        graph = None
    pairs: list[tuple[str, str]] = []
    if graph is not None:
        calls: dict[str, int] = {}
        for node in graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1
        for node in graph.nodes:
            if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
                continue
            source = node.args[0]
            if not isinstance(source, torch.fx.Node) or source.op != "call_module" or len(source.users) != 1:
                continue
            bn, conv = module.get_submodule(node.target), module.get_submodule(source.target)
            if (type(bn) is nn.BatchNorm2d and type(conv) is nn.Conv2d and not bn.training
                    and bn.running_mean is not None and bn.num_features == conv.out_channels
                    and calls[node.target] == 1 and calls[source.target] == 1):
                pairs.append((source.target, node.target))
    _PAIRS[module] = pairs
    return pairs
