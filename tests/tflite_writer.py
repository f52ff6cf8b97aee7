"""Writes small TFLite classifiers for tests, in each storage scheme the importer must read.

Schemes: `float` (float32 everywhere), `float16` (float16 constants behind DEQUANTIZE ops, as the
converter's fp16 mode writes them), `uint8` (quantisation-aware style: uint8 per-tensor weights and
activations, uint8 input) and `int8` (post-training style: int8 per-channel weights, int8
activations, float input and output through QUANTIZE / DEQUANTIZE). Quantised files take their
activation ranges from a calibration run of the float file in LiteRT, as the real converter does.
Field slots follow TFLite's schema.fbs; the flatbuffer is assembled with the `flatbuffers` runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np

FLOAT32, FLOAT16, INT32, UINT8, INT8 = 0, 1, 2, 3, 9
SAME, VALID = 0, 1
NO_ACT, RELU, RELU6 = 0, 1, 3
OPCODES = {"ADD": 0, "AVERAGE_POOL_2D": 1, "CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 4,
           "DEQUANTIZE": 6, "FULLY_CONNECTED": 9, "LOGISTIC": 14, "MAX_POOL_2D": 17, "MUL": 18,
           "RESHAPE": 22, "SOFTMAX": 25, "PAD": 34, "MEAN": 40, "QUANTIZE": 114, "HARD_SWISH": 117}
# op -> (BuiltinOptions union type, [(field slot, flatbuffers type, option name)])
OPTIONS = {
    "CONV_2D": (1, [(0, "Int8", "padding"), (1, "Int32", "stride"), (2, "Int32", "stride"),
                    (3, "Int8", "act"), (4, "Int32", "dilation"), (5, "Int32", "dilation")]),
    "DEPTHWISE_CONV_2D": (2, [(0, "Int8", "padding"), (1, "Int32", "stride"), (2, "Int32", "stride"),
                              (3, "Int32", "multiplier"), (4, "Int8", "act"), (5, "Int32", "dilation"),
                              (6, "Int32", "dilation")]),
    "AVERAGE_POOL_2D": (5, [(0, "Int8", "padding"), (1, "Int32", "stride"), (2, "Int32", "stride"),
                            (3, "Int32", "kernel"), (4, "Int32", "kernel"), (5, "Int8", "act")]),
    "FULLY_CONNECTED": (8, [(0, "Int8", "act")]),
    "SOFTMAX": (9, [(0, "Float32", "beta")]),
    "CONCATENATION": (10, [(0, "Int32", "axis"), (1, "Int8", "act")]),
    "ADD": (11, [(0, "Int8", "act")]),
    "MUL": (21, [(0, "Int8", "act")]),
    "MEAN": (27, [(0, "Bool", "keep_dims")]),
}
OPTIONS["MAX_POOL_2D"] = OPTIONS["AVERAGE_POOL_2D"]
_NUMPY = {FLOAT32: np.float32, FLOAT16: np.float16, INT32: np.int32, UINT8: np.uint8, INT8: np.int8}


@dataclass
class Tensor:
    name: str
    shape: list[int]
    dtype: int = FLOAT32
    data: np.ndarray | None = None  # constants only
    scale: np.ndarray | None = None
    zero: np.ndarray | None = None
    axis: int = 0  # quantised dimension of per-channel scales


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


def quant_params(low: float, high: float, dtype: int) -> tuple[float, int]:
    """Affine (scale, zero point) covering [low, high] and exactly representing 0."""
    low, high = min(low, 0.0), max(high, 0.0)
    qmin = -128 if dtype == INT8 else 0
    scale = max(high - low, 1e-8) / 255
    return scale, int(np.clip(round(qmin - low / scale), qmin, qmin + 255))


class Graph:
    """Builds one subgraph; in quantised schemes activations take ranges by tensor name."""

    def __init__(self, scheme: str, ranges: dict[str, tuple[float, float]] | None = None) -> None:
        self.scheme, self.ranges = scheme, ranges or {}
        self.quantised = scheme in ("uint8", "int8")
        self.act_type = {"uint8": UINT8, "int8": INT8}.get(scheme, FLOAT32)
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    # -- tensors --------------------------------------------------------------------------------
    def _add(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def activation(self, name: str, shape: list[int], like: int | None = None,
                   fixed: tuple[float, int] | None = None) -> int:
        """A runtime tensor; `like` shares another's quantisation (ops that cannot requantise)."""
        tensor = Tensor(name, shape, self.act_type)
        if self.quantised:
            if like is not None:
                tensor.scale, tensor.zero = self.tensors[like].scale, self.tensors[like].zero
            else:
                scale, zero = fixed or quant_params(*self.ranges[name], self.act_type)
                tensor.scale, tensor.zero = np.array([scale]), np.array([zero])
        return self._add(tensor)

    def constant(self, name: str, array: np.ndarray, dtype: int = INT32) -> int:
        return self._add(Tensor(name, list(array.shape), dtype, array.astype(_NUMPY[dtype])))

    def weight(self, name: str, array: np.ndarray, channel_axis: int) -> int:
        """Float weights stored as the scheme stores them."""
        if self.scheme == "float16":
            stored = self.constant(name + "_fp16", array, FLOAT16)
            out = self._add(Tensor(name, list(array.shape)))
            self.ops.append(Op("DEQUANTIZE", [stored], [out]))
            return out
        if self.scheme == "int8":  # symmetric, per output channel
            axes = tuple(i for i in range(array.ndim) if i != channel_axis)
            scale = np.maximum(np.abs(array).max(axis=axes), 1e-8) / 127
            shape = [1] * array.ndim
            shape[channel_axis] = -1
            q = np.clip(np.round(array / scale.reshape(shape)), -127, 127)
            return self._add(Tensor(name, list(array.shape), INT8, q.astype(np.int8), scale,
                                    np.zeros(len(scale), np.int64), channel_axis))
        if self.scheme == "uint8":  # asymmetric, per tensor
            scale, zero = quant_params(float(array.min()), float(array.max()), UINT8)
            q = np.clip(np.round(array / scale) + zero, 0, 255)
            return self._add(Tensor(name, list(array.shape), UINT8, q.astype(np.uint8), np.array([scale]),
                                    np.array([zero])))
        return self.constant(name, array, FLOAT32)

    def bias(self, name: str, array: np.ndarray, x: int, w: int) -> int:
        if not self.quantised:
            return self.weight(name, array, 0)
        weight = self.tensors[w]
        scale = self.tensors[x].scale[0] * weight.scale
        q = np.round(array / scale).astype(np.int32)
        return self._add(Tensor(name, list(array.shape), INT32, q, scale, np.zeros(len(scale), np.int64)))

    # -- ops -------------------------------------------------------------------------------------
    def op(self, kind: str, name: str, inputs: list[int], shape: list[int], like: int | None = None,
           fixed: tuple[float, int] | None = None, **options) -> int:
        out = self.activation(name, shape, like, fixed)
        self.ops.append(Op(kind, inputs, [out], options))
        return out

    def conv(self, name: str, x: int, weight: np.ndarray, bias: np.ndarray, stride: int, act: int,
             depthwise: bool = False) -> int:
        n, h, w, _ = self.tensors[x].shape
        out_channels = weight.shape[3] if depthwise else weight.shape[0]
        wt = self.weight(name + "/weights", weight, 3 if depthwise else 0)
        b = self.bias(name + "/bias", bias, x, wt)
        shape = [n, -(-h // stride), -(-w // stride), out_channels]
        if depthwise:
            return self.op("DEPTHWISE_CONV_2D", name + "/out", [x, wt, b], shape, padding=SAME, stride=stride,
                           multiplier=1, act=act, dilation=1)
        return self.op("CONV_2D", name + "/out", [x, wt, b], shape, padding=SAME, stride=stride, act=act,
                       dilation=1)

    def fully_connected(self, name: str, x: int, weight: np.ndarray, bias: np.ndarray) -> int:
        wt = self.weight(name + "/weights", weight, 0)
        b = self.bias(name + "/bias", bias, x, wt)
        return self.op("FULLY_CONNECTED", name + "/out", [x, wt, b], [1, weight.shape[0]], act=NO_ACT)

    # -- serialising -----------------------------------------------------------------------------
    def serialise(self, inputs: list[int], outputs: list[int]) -> bytes:
        b = flatbuffers.Builder(1024)
        b.ForceDefaults(True)
        buffers = [self._table(b, [])]  # buffer 0 is the empty sentinel
        tensors = []
        for tensor in self.tensors:
            buffer = 0
            if tensor.data is not None:
                data = b.CreateNumpyVector(np.frombuffer(np.ascontiguousarray(tensor.data).tobytes(), np.uint8))
                buffers.append(self._table(b, [(0, "UOffsetTRelative", data)]))
                buffer = len(buffers) - 1
            quant = None
            if tensor.scale is not None:
                scale = b.CreateNumpyVector(np.asarray(tensor.scale, np.float32))
                zero = b.CreateNumpyVector(np.asarray(tensor.zero, np.int64))
                quant = self._table(b, [(2, "UOffsetTRelative", scale), (3, "UOffsetTRelative", zero),
                                        (6, "Int32", tensor.axis)])
            name = b.CreateString(tensor.name)
            shape = b.CreateNumpyVector(np.asarray(tensor.shape, np.int32))
            fields = [(0, "UOffsetTRelative", shape), (1, "Int8", tensor.dtype), (2, "Uint32", buffer),
                      (3, "UOffsetTRelative", name)]
            tensors.append(self._table(b, fields + ([(4, "UOffsetTRelative", quant)] if quant else [])))
        kinds = sorted({op.kind for op in self.ops}, key=lambda k: OPCODES[k])
        operators = []
        for op in self.ops:
            fields = [(0, "Uint32", kinds.index(op.kind)),
                      (1, "UOffsetTRelative", b.CreateNumpyVector(np.asarray(op.inputs, np.int32))),
                      (2, "UOffsetTRelative", b.CreateNumpyVector(np.asarray(op.outputs, np.int32)))]
            if op.kind in OPTIONS:
                union, slots = OPTIONS[op.kind]
                options = self._table(b, [(slot, kind, op.options[key]) for slot, kind, key in slots])
                fields += [(3, "Uint8", union), (4, "UOffsetTRelative", options)]
            operators.append(self._table(b, fields))
        codes = [self._table(b, [(0, "Int8", min(OPCODES[k], 127)), (2, "Int32", 1), (3, "Int32", OPCODES[k])])
                 for k in kinds]
        subgraph = self._table(b, [(0, "UOffsetTRelative", self._vector(b, tensors)),
                                   (1, "UOffsetTRelative", b.CreateNumpyVector(np.asarray(inputs, np.int32))),
                                   (2, "UOffsetTRelative", b.CreateNumpyVector(np.asarray(outputs, np.int32))),
                                   (3, "UOffsetTRelative", self._vector(b, operators))])
        model = self._table(b, [(0, "Uint32", 3), (1, "UOffsetTRelative", self._vector(b, codes)),
                                (2, "UOffsetTRelative", self._vector(b, [subgraph])),
                                (4, "UOffsetTRelative", self._vector(b, buffers))])
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _table(b: flatbuffers.Builder, fields: list[tuple[int, str, object]]) -> int:
        b.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
        for slot, kind, value in fields:
            getattr(b, f"Prepend{kind}Slot")(slot, value, 0)
        return b.EndObject()

    @staticmethod
    def _vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()


def small_classifier(scheme: str, ranges: dict[str, tuple[float, float]] | None = None) -> bytes:
    """16x16 RGB -> 10 classes, touching every op MobileNet-style classifiers use (and a few more)."""
    rng = np.random.default_rng(0)

    def he(*shape: int, fan_in: int) -> np.ndarray:
        return rng.normal(0, (2 / fan_in) ** 0.5, shape).astype(np.float32)

    g = Graph(scheme, ranges)
    if scheme == "uint8":  # quantisation-aware MobileNets: real = (q - 128) / 128
        x = entry = g._add(Tensor("input", [1, 16, 16, 3], UINT8, scale=np.array([1 / 128]), zero=np.array([128])))
    elif scheme == "int8":  # post-training quantisation keeps a float interface
        entry = g._add(Tensor("input", [1, 16, 16, 3]))
        x = g.op("QUANTIZE", "input/quantised", [entry], [1, 16, 16, 3], fixed=(2 / 255, -1))
    else:
        x = entry = g._add(Tensor("input", [1, 16, 16, 3]))
    a = g.conv("block1/expand", x, he(8, 3, 3, 3, fan_in=27), rng.normal(0, 0.1, 8), 2, RELU6)
    b = g.conv("block1/depthwise", a, he(1, 3, 3, 8, fan_in=9), rng.normal(0, 0.1, 8), 1, RELU, depthwise=True)
    c = g.conv("block1/project", b, he(8, 1, 1, 8, fan_in=8), rng.normal(0, 0.1, 8), 1, NO_ACT)
    d = g.op("ADD", "block1/add/out", [a, c], [1, 8, 8, 8], act=NO_ACT)
    e = g.op("PAD", "block2/pad/out",
             [d, g.constant("block2/pad/paddings", np.array([[0, 0], [1, 1], [1, 1], [0, 0]]))],
             [1, 10, 10, 8], like=d)
    f = g.op("MAX_POOL_2D", "block2/maxpool/out", [e], [1, 5, 5, 8], like=e, padding=VALID, stride=2, kernel=2,
             act=NO_ACT)
    h = g.op("HARD_SWISH", "block2/hswish/out", [f], [1, 5, 5, 8])
    p = g.op("AVERAGE_POOL_2D", "block2/avgpool/out", [h], [1, 3, 3, 8], like=h, padding=SAME, stride=2, kernel=3,
             act=NO_ACT)
    s = g.op("LOGISTIC", "block3/gate/out", [p], [1, 3, 3, 8], fixed=(1 / 256, -128 if scheme == "int8" else 0))
    m = g.op("MUL", "block3/mul/out", [p, s], [1, 3, 3, 8], like=p, act=NO_ACT)  # |p * s| <= |p|
    cat = g.op("CONCATENATION", "block3/concat/out", [p, m], [1, 3, 3, 16], like=p, axis=3, act=NO_ACT)
    mean = g.op("MEAN", "head/mean/out", [cat, g.constant("head/mean/axes", np.array([1, 2]))], [1, 1, 1, 16],
                keep_dims=True)
    flat = g.op("RESHAPE", "head/reshape/out", [mean, g.constant("head/reshape/shape", np.array([1, 16]))],
                [1, 16], like=mean)
    logits = g.fully_connected("head/logits", flat, he(10, 16, fan_in=16), rng.normal(0, 0.1, 10))
    if not g.quantised:  # a constant runtime operand (per-class offset), as float converters emit
        offset = g.weight("head/offset/value", rng.normal(0, 0.5, 10).astype(np.float32), 0)
        logits = g.op("ADD", "head/offset/out", [logits, offset], [1, 10], act=NO_ACT)
    probs = g.op("SOFTMAX", "head/softmax/out", [logits], [1, 10], fixed=(1 / 256, -128 if scheme == "int8" else 0),
                 beta=1.0)
    if scheme == "int8":
        out = g._add(Tensor("output", [1, 10]))
        g.ops.append(Op("DEQUANTIZE", [probs], [out]))
        probs = out
    return g.serialise([entry], [probs])


def calibrated_classifier(scheme: str, images: np.ndarray) -> bytes:
    """`small_classifier` with activation ranges measured on `images` (NHWC, in [-1, 1]) in LiteRT."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    if scheme not in ("uint8", "int8"):
        return small_classifier(scheme)
    with warnings.catch_warnings():  # keeping every intermediate tensor is exactly what calibration needs
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=small_classifier("float"), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    ranges: dict[str, tuple[float, float]] = {}
    for image in images:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32))
        interpreter.invoke()
        for d in details:
            value = interpreter.get_tensor(d["index"])
            low, high = ranges.get(d["name"], (np.inf, -np.inf))
            ranges[d["name"]] = (min(low, float(value.min())), max(high, float(value.max())))
    return small_classifier(scheme, ranges)
