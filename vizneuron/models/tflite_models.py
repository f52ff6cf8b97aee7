"""`tflite:PATH[?labels=PATH]`: a TFLite image classifier rebuilt as a float, differentiable torch module.

Weights are dequantised ((q - zero_point) * scale, per tensor or per output channel; float16
constants behind DEQUANTIZE ops are folded in); activations run in float. Every graph op becomes
a named submodule (named after its TensorFlow scope, e.g. `expanded_conv_1.depthwise` -> module
`expanded_conv_1_depthwise`), so units, hooks and `vizneuron layers` work as on any other network.
Tensors of rank 4 are kept NCHW inside; ops that care about layout (reshape, pad, concatenation,
fully connected, mean) translate their NHWC axes.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VizneuronError
from ..files import readable
from .base import InputConfig, Model

_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}
_IDENTITY_OPS = {"SOFTMAX", "QUANTIZE", "DEQUANTIZE"}
SUPPORTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "RESHAPE",
                 "SQUEEZE", "FULLY_CONNECTED", "PAD", "CONCATENATION", "RELU", "RELU6", "HARD_SWISH", "LOGISTIC",
                 "MUL"} | _IDENTITY_OPS


class TFLiteError(VizneuronError):
    """A TFLite file this importer cannot turn into a faithful torch module."""


def activation_module(kind: str | None) -> nn.Module | None:
    """A fused TFLite activation as a module (`<op>.act`), so hooks such as redirected ReLU see it."""
    if kind is None:
        return None
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "tanh": nn.Tanh,
            "relu_n1_to_1": lambda: nn.Hardtanh(-1.0, 1.0)}[kind]()


def _activate(act: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if act is None else act(x)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME padding: the extra pixel goes after (stride 2 pads (0, 1), not (1, 1))."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _nchw_axis(axis: int, rank: int) -> int:
    axis = axis % rank
    return {0: 0, 1: 2, 2: 3, 3: 1}[axis] if rank == 4 else axis


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.ndim == 4 else x


def _from_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x


class Conv(nn.Module):
    """CONV_2D or DEPTHWISE_CONV_2D with TF padding and a fused activation."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                 dilation: tuple[int, int], same: bool, groups: int, activation: str | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.stride, self.dilation, self.same, self.groups = stride, dilation, same, groups
        self.act = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            kh, kw = self.weight.shape[2:]
            top, bottom = _same_padding(x.shape[2], kh, self.stride[0], self.dilation[0])
            left, right = _same_padding(x.shape[3], kw, self.stride[1], self.dilation[1])
            x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return _activate(self.act, y)


class Pool(nn.Module):
    def __init__(self, kind: str, kernel: tuple[int, int], stride: tuple[int, int], same: bool,
                 activation: str | None) -> None:
        super().__init__()
        self.kind, self.kernel, self.stride, self.same = kind, kernel, stride, same
        self.act = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh = min(self.kernel[0], x.shape[2]) if not self.same else self.kernel[0]
        kw = min(self.kernel[1], x.shape[3]) if not self.same else self.kernel[1]
        if self.same:
            top, bottom = _same_padding(x.shape[2], kh, self.stride[0], 1)
            left, right = _same_padding(x.shape[3], kw, self.stride[1], 1)
            if self.kind == "max":
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
                return _activate(self.act, F.max_pool2d(x, (kh, kw), self.stride))
            # TF averages over the valid pixels only
            ones = F.pad(torch.ones_like(x[:1, :1]), (left, right, top, bottom))
            x = F.pad(x, (left, right, top, bottom))
            y = F.avg_pool2d(x, (kh, kw), self.stride) / F.avg_pool2d(ones, (kh, kw), self.stride)
            return _activate(self.act, y)
        pool = F.max_pool2d if self.kind == "max" else F.avg_pool2d
        return _activate(self.act, pool(x, (kh, kw), self.stride))


class Elementwise(nn.Module):
    def __init__(self, kind: str, activation: str | None) -> None:
        super().__init__()
        self.kind = kind
        self.act = activation_module(activation)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = _broadcastable(a, b), _broadcastable(b, a)
        return _activate(self.act, a + b if self.kind == "add" else a * b)


def _broadcastable(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """A lower-rank operand (e.g. a per-channel constant) broadcast as TFLite does against NHWC."""
    if other.ndim == 4 and x.ndim < 4:
        return _from_nhwc(x.reshape((1,) * (4 - x.ndim) + tuple(x.shape)))
    return x


class Identity(nn.Module):
    """Softmax (the model outputs logits), quantize and dequantize (activations are float)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mean(nn.Module):
    def __init__(self, axes: list[int], keep_dims: bool) -> None:
        super().__init__()
        self.axes, self.keep_dims = axes, keep_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _to_nhwc(x).mean(dim=self.axes, keepdim=self.keep_dims)
        return _from_nhwc(y)


class Reshape(nn.Module):
    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _from_nhwc(_to_nhwc(x).reshape(x.shape[0], *self.shape[1:]))


class Pad(nn.Module):
    def __init__(self, paddings: np.ndarray) -> None:
        super().__init__()
        self.paddings = [int(v) for v in paddings.reshape(-1)]  # NHWC (before, after) pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.paddings
        if x.ndim == 4:
            return F.pad(x, (p[4], p[5], p[2], p[3], p[6], p[7]))
        flat = [v for i in reversed(range(1, x.ndim)) for v in (p[2 * i], p[2 * i + 1])]
        return F.pad(x, flat)


class Concat(nn.Module):
    def __init__(self, axis: int, activation: str | None) -> None:
        super().__init__()
        self.axis = axis
        self.act = activation_module(activation)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return _activate(self.act, torch.cat(xs, dim=_nchw_axis(self.axis, xs[0].ndim)))


class FullyConnected(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.act = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = _to_nhwc(x).reshape(x.shape[0], -1)
        return _activate(self.act, F.linear(flat, self.weight, self.bias))


class TFLiteNet(nn.Module):
    """Runs the graph in file order; each op is a submodule named after its TF scope."""

    def __init__(self, steps: list[tuple[str, list[int], int]], input_index: int, output_index: int) -> None:
        super().__init__()
        self.steps = steps  # (module name, input tensor indices, output tensor index)
        self.input_index, self.output_index = input_index, output_index
        self.constant_indices: list[int] = []
        self.drop_background = False

    def add_constant(self, index: int, value: torch.Tensor) -> None:
        """A constant that an op takes as a runtime operand (e.g. ADD with a fixed tensor)."""
        self.register_buffer(f"constant_{index}", _from_nhwc(value[None] if value.ndim == 3 else value))
        self.constant_indices.append(index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tensors = {i: getattr(self, f"constant_{i}") for i in self.constant_indices}
        tensors[self.input_index] = x
        for name, inputs, output in self.steps:
            tensors[output] = getattr(self, name)(*(tensors[i] for i in inputs))
        out = tensors[self.output_index]
        out = out.reshape(out.shape[0], -1)
        return out[:, 1:] if self.drop_background else out


# -- reading the flatbuffer -------------------------------------------------------------------------

def _op_names() -> dict[int, str]:
    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _is_constant(graph, model, index: int) -> bool:
    return model.Buffers(graph.Tensors(index).Buffer()).DataLength() > 0


def _dequantised(graph, model, index: int) -> torch.Tensor:
    """A constant tensor as float32 (dequantised when it carries quantisation parameters)."""
    tensor = graph.Tensors(index)
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    dtypes = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
    if tensor.Type() not in dtypes:
        raise TFLiteError(f"tensor {tensor.Name().decode()} has unsupported type {tensor.Type()}")
    array = np.frombuffer(data.tobytes(), dtype=dtypes[tensor.Type()]).reshape(tensor.ShapeAsNumpy())
    q = tensor.Quantization()
    if q is not None and q.ScaleLength() > 0 and tensor.Type() != 0:
        scale = q.ScaleAsNumpy().astype(np.float32)
        zero = q.ZeroPointAsNumpy().astype(np.float32) if q.ZeroPointLength() else np.zeros_like(scale)
        shape = [1] * array.ndim
        if scale.size > 1:
            shape[q.QuantizedDimension()] = -1
        array = (array.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)
    return torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy


def _layer_names(graph, ops: list) -> list[str]:
    """Readable, unique module names from the output tensors' TF scopes."""
    scopes = []
    for op in ops:
        raw = graph.Tensors(op.Outputs(0)).Name().decode().split(";")[0]
        parts = raw.split("/")
        scopes.append(parts[:-1] if len(parts) > 1 else parts)
    common = 0
    while all(len(s) > common + 1 and s[common] == scopes[0][common] for s in scopes):
        common += 1
    names, seen = [], {}
    for scope in scopes:
        base = re.sub(r"\W", "_", "_".join(scope[common:]) or "op")
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def load_tflite(path: str, options: dict[str, str]) -> Model:
    file = readable(path, "TFLite model")
    if not file.exists():
        raise FileNotFoundError(f"TFLite file {file} not found")
    data = file.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":  # the flatbuffer's file identifier
        empty = "; the file is empty" if not data else ""
        raise TFLiteError(f"{file.name} is not a TFLite model (no TFL3 identifier{empty})")
    try:
        return _import(path, file, data, options)
    except VizneuronError:  # the file's own errors, and a labels file the file access refuses
        raise
    except (struct.error, IndexError, KeyError, ValueError, TypeError, AttributeError, RuntimeError) as err:
        raise TFLiteError(f"{file.name} is truncated or damaged: its graph cannot be read ({type(err).__name__}: "
                          f"{err})") from None


def _import(path: str, file: Path, data: bytes, options: dict[str, str]) -> Model:
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    names_by_code = _op_names()
    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    kinds = []
    for op in ops:
        code = model.OperatorCodes(op.OpcodeIndex())
        kinds.append(names_by_code.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
    missing = sorted(set(kinds) - SUPPORTED_OPS)
    if missing:
        raise TFLiteError(f"{file.name} uses ops this importer does not support: {', '.join(missing)} "
                          f"(ops found: {', '.join(sorted(set(kinds)))})")

    # float16 files keep weights as fp16 constants behind DEQUANTIZE ops: fold those into constants
    folded = {op.Outputs(0): op.Inputs(0) for op, kind in zip(ops, kinds)
              if kind == "DEQUANTIZE" and _is_constant(graph, model, op.Inputs(0))}
    kept = [(op, kind) for op, kind in zip(ops, kinds) if op.Outputs(0) not in folded]

    def constant(index: int) -> torch.Tensor:
        return _dequantised(graph, model, folded.get(index, index))

    steps = []
    net = TFLiteNet([], graph.Inputs(0), graph.Outputs(0))
    for (op, kind), name in zip(kept, _layer_names(graph, [op for op, _ in kept])):
        module, inputs = _build(op, kind, graph, constant)
        net.add_module(name, module)
        steps.append((name, inputs, op.Outputs(0)))
        for index in inputs:
            if (index in folded or _is_constant(graph, model, index)) and index not in net.constant_indices:
                net.add_constant(index, constant(index))
    net.steps = steps

    input_tensor = graph.Tensors(graph.Inputs(0))
    _, height, width, _ = input_tensor.ShapeAsNumpy()
    mean, std = _input_normalisation(input_tensor)
    labels = _labels(file, options)
    n_out = int(np.prod(graph.Tensors(graph.Outputs(0)).ShapeAsNumpy()[1:]))
    if labels is not None and len(labels) == n_out and labels[0].lower() == "background":
        net.drop_background, labels = True, labels[1:]  # output index i is ILSVRC class i
    return Model(net, name=f"tflite:{path}", inputs=InputConfig(
        (int(height), int(width)), mean, std, crop_fraction=0.875, fixed_size=True, labels=labels))


def _input_normalisation(tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """uint8 input q = 255 x, real = (q - zero) * scale  =>  mean zero/255, std 1/(255 scale)."""
    q = tensor.Quantization()
    if tensor.Type() in (3, 9) and q is not None and q.ScaleLength():
        scale, zero = float(q.ScaleAsNumpy()[0]), float(q.ZeroPointAsNumpy()[0])
        if tensor.Type() == 9:  # int8 input: q = 255 x - 128
            zero += 128
        return (zero / 255,) * 3, (1 / (255 * scale),) * 3
    return (0.5,) * 3, (0.5,) * 3  # float MobileNets take x * 2 - 1


def _labels(file: Path, options: dict[str, str]) -> list[str] | None:
    """`labels=FILE` (must exist), else an imagenet_labels.txt beside the model, if there is one."""
    path = readable(options["labels"] if "labels" in options else file.parent / "imagenet_labels.txt", "labels file")
    if not path.is_file():
        if "labels" in options:
            raise FileNotFoundError(f"labels file {path} not found")
        return None
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise TFLiteError(f"labels file {path} is not text (one label per line)") from None


def _build(op, kind: str, graph, constant) -> tuple[nn.Module, list[int]]:
    inputs = [op.Inputs(i) for i in range(op.InputsLength())]
    opts = op.BuiltinOptions()

    def options(cls):
        o = cls()
        o.Init(opts.Bytes, opts.Pos)
        return o

    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = options(tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        weight = constant(inputs[1])
        bias = constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
        if kind == "CONV_2D":
            weight, groups = weight.permute(0, 3, 1, 2).contiguous(), 1  # [out, kh, kw, in] -> OIHW
        else:
            weight = weight.permute(3, 0, 1, 2).contiguous()  # [1, kh, kw, C*m] -> [C*m, 1, kh, kw]
            groups = graph.Tensors(inputs[0]).ShapeAsNumpy()[3]
        same = o.Padding() == tflite.Padding.SAME
        return Conv(weight, bias, (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor()), same,
                    int(groups), _ACTIVATIONS[o.FusedActivationFunction()]), [inputs[0]]
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = options(tflite.Pool2DOptions)
        return Pool("avg" if kind == "AVERAGE_POOL_2D" else "max", (o.FilterHeight(), o.FilterWidth()),
                    (o.StrideH(), o.StrideW()), o.Padding() == tflite.Padding.SAME,
                    _ACTIVATIONS[o.FusedActivationFunction()]), [inputs[0]]
    if kind in ("ADD", "MUL"):
        o = options(tflite.AddOptions if kind == "ADD" else tflite.MulOptions)
        return Elementwise(kind.lower(), _ACTIVATIONS[o.FusedActivationFunction()]), inputs[:2]
    if kind == "MEAN":
        o = options(tflite.ReducerOptions)
        axes = [int(a) for a in constant(inputs[1]).long().reshape(-1)]
        return Mean(axes, bool(o.KeepDims())), [inputs[0]]
    if kind in ("RESHAPE", "SQUEEZE"):
        shape = [int(v) for v in graph.Tensors(op.Outputs(0)).ShapeAsNumpy()]
        return Reshape(shape), [inputs[0]]
    if kind == "FULLY_CONNECTED":
        o = options(tflite.FullyConnectedOptions)
        weight = constant(inputs[1])
        bias = constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
        return FullyConnected(weight, bias, _ACTIVATIONS[o.FusedActivationFunction()]), [inputs[0]]
    if kind == "PAD":
        return Pad(constant(inputs[1]).long().numpy()), [inputs[0]]
    if kind == "CONCATENATION":
        o = options(tflite.ConcatenationOptions)
        return Concat(o.Axis(), _ACTIVATIONS[o.FusedActivationFunction()]), inputs
    if kind in _IDENTITY_OPS:
        return Identity(), [inputs[0]]
    standalone = {"RELU": nn.ReLU, "RELU6": nn.ReLU6, "HARD_SWISH": nn.Hardswish, "LOGISTIC": nn.Sigmoid}
    return standalone[kind](), [inputs[0]]
