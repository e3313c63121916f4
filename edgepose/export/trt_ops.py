"""Lint an ONNX graph against what a TensorRT version's ONNX parser accepts, before it reaches the device.

Data: the operator support matrix of onnx/onnx-tensorrt ``docs/operators.md``. TensorRT 8.2
(JetPack 4.6.1-4.6.6 on the Jetson Nano) "supports operators up to Opset 13"; its list is the
8.4 matrix minus ``Xor`` and ``Shrink`` (added in 8.4 per the onnx-tensorrt changelog).
``Mod``, ``GridSample``, ``NonZero``, ``RoiAlign`` and ``LayerNormalization`` came later (8.5/8.6).
Also checked: restrictions from the same matrix that an exporter can violate (Resize modes,
Conv/ConvTranspose weights as initializers) and static input shapes where the recipe wants them.
"""

from __future__ import annotations

import onnx

from edgepose.errors import EdgeposeError

_TRT82_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
    Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
    GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU
    HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg NonMaxSuppression
    Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform RandomUniformLike Range ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements
    ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split
    Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where
    """.split()
)

# parser version -> (supported op types, highest ONNX opset)
PARSERS = {"8.2": (_TRT82_OPS, 13)}
RESIZE_MODES = ("nearest", "linear")
RESIZE_TRANSFORMS = (
    "half_pixel",
    "pytorch_half_pixel",
    "tf_half_pixel_for_nn",
    "asymmetric",
    "align_corners",
)


def _attr(node: onnx.NodeProto, name: str, default: str) -> str:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a).decode()
    return default


def lint(model: onnx.ModelProto, parser: str = "8.2", static_shapes: bool = True) -> list[str]:
    """Problems that stop TensorRT ``parser`` from parsing ``model``; empty when it is fine."""
    if parser not in PARSERS:
        raise EdgeposeError(f"no op list for TensorRT {parser!r}; known: {', '.join(PARSERS)}")
    ops, max_opset = PARSERS[parser]
    problems = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > max_opset:
            problems.append(f"opset {imp.version} (TensorRT {parser} parses ONNX up to opset {max_opset})")
    unsupported: dict[str, int] = {}
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            key = f"{node.domain}::{node.op_type} (custom domain: needs a TensorRT plugin)"
            unsupported[key] = unsupported.get(key, 0) + 1
        elif node.op_type not in ops:
            unsupported[node.op_type] = unsupported.get(node.op_type, 0) + 1
        elif node.op_type == "Resize":
            mode = _attr(node, "mode", "nearest")
            transform = _attr(node, "coordinate_transformation_mode", "half_pixel")
            if mode not in RESIZE_MODES or transform not in RESIZE_TRANSFORMS:
                problems.append(
                    f"Resize {node.name!r} with mode={mode}, coordinate_transformation_mode={transform}"
                )
        elif node.op_type in ("Conv", "ConvTranspose") and node.input[1] not in constants:
            problems.append(
                f"{node.op_type} {node.name!r} takes its weights from a tensor, not an initializer"
            )
    problems += [
        f"op {op} x{n} (not supported by TensorRT {parser})" for op, n in sorted(unsupported.items())
    ]
    if static_shapes:
        for value in model.graph.input:
            dims = value.type.tensor_type.shape.dim
            if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
                shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
                problems.append(
                    f"input {value.name!r} has a dynamic shape {shape} (the target wants static shapes)"
                )
    return problems


def check(
    model: onnx.ModelProto, parser: str = "8.2", static_shapes: bool = True, what: str = "model"
) -> None:
    """Raise one clear error naming every problem :func:`lint` finds."""
    problems = lint(model, parser, static_shapes)
    if problems:
        raise EdgeposeError(f"{what} will not parse in TensorRT {parser}: " + "; ".join(problems))
