"""The TFLite lowering (Raspberry Pi 4, Snapdragon 855): fp32, fp16 weights, or full-integer int8.

Route (docs/tflite.md has the numbers): the BN-folded PyTorch model, wrapped to take NHWC and
return NHWC outputs by name, goes through Google's litert-torch straight to a .tflite (no
TensorFlow, no ONNX in between). fp16 and int8 are made from that fp32 flatbuffer by
ai-edge-quantizer: fp16 casts the weights (the GPU delegate runs fp16), int8 is static
full-integer PTQ (int8 input, output and activations, per-channel symmetric int8 weights: the
TFLite int8 spec the Hexagon delegate asks for) calibrated on ``--calib`` images. Every file is
run in ai-edge-litert's interpreter against PyTorch on the same photo before it is written, under
the gate of its precision (``precision_gates``: fp16 against what fp16 weights cost the network in
PyTorch, int8 with onnxruntime's int8 of the same network as a second opinion).

The conversion and the quantisation run in a child process (:func:`edgepose.export.isolated.run_isolated`):
litert-torch imports jax, whose garbage-collection callback can swallow Ctrl-C, and a converter interrupted
half-way can abort the process. This process never imports litert-torch (versions come from package
metadata), so a Ctrl-C always ends the export at once. The child gets the folded model itself and this
process's torch thread count, so the bytes are those of an in-process conversion.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgepose.atomic import write_bytes
from edgepose.device.formats import format_of_lowering
from edgepose.device.runtime.base import dequantize, quantize
from edgepose.errors import EdgeposeError
from edgepose.export import dwsplit, precision_gates, subpixel
from edgepose.export.calibration import input_value_range, load_calibration
from edgepose.export.fold import fold_batchnorm
from edgepose.export.isolated import run_isolated

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

MODEL_FILE = format_of_lowering(__name__).model_file
SIGNATURE = "serving_default"
INPUT_NAME = "input"
PARITY_THREADS = precision_gates.PARITY_THREADS


class ChannelsLast(nn.Module):
    """NHWC input -> the NCHW model -> NHWC outputs in a dict keyed by the registry's output names.

    The dict keys become the TFLite signature's output names; the permutes at both ends are
    absorbed by the converter's layout passes, so the graph itself is NHWC throughout.
    """

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 - the signature name
        out = self.model(input.permute(0, 3, 1, 2))
        out = out if isinstance(out, tuple | list) else (out,)
        return {name: t.permute(0, 2, 3, 1) for name, t in zip(self.names, out)}


def convert_fp32(model: nn.Module, names: list[str], input_size: tuple[int, int]) -> bytes:
    """fp32 .tflite bytes of ``model`` (NCHW, eval) with an NHWC ``input`` and NHWC named outputs (in a child)."""
    return run_isolated(_convert_fp32, model, names, input_size, torch.get_num_threads(), what="litert-torch")


def quantize_fp16(fp32: bytes) -> bytes:
    """fp16 weights (float casting); compute stays float, the GPU delegate runs it in fp16 (in a child)."""
    return run_isolated(_quantize_fp16, fp32, what="ai-edge-quantizer")


def quantize_int8(fp32: bytes, calib_nhwc: np.ndarray) -> bytes:
    """Full-integer int8 (int8 I/O) calibrated on ``calib_nhwc`` (N, H, W, 3) float32 inputs (in a child)."""
    return run_isolated(_quantize_int8, fp32, calib_nhwc, what="ai-edge-quantizer")


# --- what the child runs (module-level: the child finds them by name) ------------------------------------


def _convert_fp32(model: nn.Module, names: list[str], input_size: tuple[int, int], threads: int) -> bytes:
    torch.set_num_threads(threads)
    h, w = input_size
    example = torch.zeros(1, h, w, 3)
    try:
        import litert_torch

        edge = litert_torch.convert(ChannelsLast(model, names).eval(), sample_kwargs={INPUT_NAME: example})
        return edge.model_content()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgeposeError(
            f"litert-torch could not convert the model: {type(exc).__name__}: {first}"
        ) from None


def _quantize_fp16(fp32: bytes) -> bytes:
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(bytearray(fp32))
    q.add_weight_only_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        num_bits=16,
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    return bytes(q.quantize().quantized_model)


def _quantize_int8(fp32: bytes, calib_nhwc: np.ndarray) -> bytes:
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(bytearray(fp32), recipe.static_wi8_ai8())
    samples = [{INPUT_NAME: x[None].astype(np.float32)} for x in calib_nhwc]
    input_tensor = _interpreter(fp32, 1).get_input_details()[0]["name"]
    ranges = widen_constant_ranges(q.calibrate({SIGNATURE: samples}))
    pin_range(ranges, input_tensor, *input_value_range())
    return bytes(q.quantize(ranges).quantized_model)


def pin_range(ranges: dict[str, dict[str, Any]], tensor: str, low: float, high: float) -> None:
    """Set one tensor's calibration range to ``[low, high]`` (the input: every value a pixel can take)."""
    if tensor not in ranges:
        raise EdgeposeError(f"int8 calibration has no range for tensor {tensor!r}")
    stats = ranges[tensor]
    shape = np.shape(stats["min"])
    stats["min"] = np.full(shape, low, np.float32)
    stats["max"] = np.full(shape, high, np.float32)


def widen_constant_ranges(ranges: dict[str, dict[str, Any]], eps: float = 1e-6) -> dict[str, dict[str, Any]]:
    """Give every tensor that was constant during calibration a range of width >= 1 that still holds its value.

    A dead branch (e.g. an SE bottleneck whose ReLU outputs are all <= 0, seen in Lite-HRNet) calibrates to
    min == max; the quantizer turns that into a ~1e-12 scale, and XNNPACK refuses the resulting
    requantisation ratios ("failed to prepare"). The tensor is constant, so widening changes no value.
    """
    for stats in ranges.values():
        lo, hi = np.asarray(stats["min"]), np.asarray(stats["max"])
        flat = (hi - lo) < eps
        if flat.any():
            new_lo = np.where(flat, np.minimum(lo, 0.0), lo)
            stats["min"] = new_lo.astype(np.float32)
            stats["max"] = np.where(flat, np.maximum(hi, new_lo + 1.0), hi).astype(np.float32)
    return ranges


def _interpreter(model_bytes: bytes, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def tensor_info(model_bytes: bytes) -> dict[str, dict[str, Any]]:
    """Shape, dtype, per-tensor quantisation and tensor name of the signature's input and outputs, by name."""
    interpreter = _interpreter(model_bytes, 1)
    runner = interpreter.get_signature_runner(SIGNATURE)
    details = {**runner.get_input_details(), **runner.get_output_details()}
    tensors = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    info = {}
    for name, d in details.items():
        scale, zero_point = d["quantization"]
        integer = np.issubdtype(d["dtype"], np.integer)
        info[name] = {
            "shape": [int(v) for v in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if integer else None,
            "tensor": tensors.get(d["index"]),
        }
    return info


def run_tflite(
    model_bytes: bytes, x_nchw: np.ndarray, threads: int = PARITY_THREADS
) -> dict[str, np.ndarray]:
    """Run the .tflite on an NCHW float32 batch of 1; return NCHW float32 outputs by name (int8 dequantised)."""
    runner = _interpreter(model_bytes, threads).get_signature_runner(SIGNATURE)
    detail = runner.get_input_details()[INPUT_NAME]
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    scale, zero_point = detail["quantization"]
    x = quantize(x, scale, zero_point, detail["dtype"]) if np.issubdtype(detail["dtype"], np.integer) else x
    outputs = runner(**{INPUT_NAME: x})
    out_details = runner.get_output_details()
    result = {}
    for name, value in outputs.items():
        scale, zero_point = out_details[name]["quantization"]
        if np.issubdtype(value.dtype, np.integer):
            value = dequantize(value, scale, zero_point)
        result[name] = np.ascontiguousarray(value.transpose(0, 3, 1, 2), dtype=np.float32)
    return result


def check_parity(
    job: ExportJob, model_bytes: bytes, folded: nn.Module, calib: np.ndarray | None
) -> dict[str, Any]:
    """ai-edge-litert vs PyTorch fp32 on the photo under this precision's gate; raises on failure."""
    from ai_edge_litert import __version__ as litert_version

    x = job.sample()
    try:
        candidate = run_tflite(model_bytes, x)
    except RuntimeError as exc:  # e.g. XNNPACK refusing the graph: the device would refuse it too
        first = (str(exc).strip().splitlines() or [""])[0]
        raise EdgeposeError(
            f"ai-edge-litert cannot run the {job.precision} {MODEL_FILE} of {job.model_name}: {first}"
        ) from None
    runtime = f"ai-edge-litert {litert_version} (XNNPACK, {PARITY_THREADS} threads)"
    return precision_gates.verdict(job, candidate, x, folded, calib, f"{MODEL_FILE} in {runtime}", runtime)


def lower(job: ExportJob) -> dict[str, Any]:
    """The TFLite format: convert, quantize, gate, write ``model.tflite`` (NHWC) in the job's precision."""
    calib = None
    if job.precision == "int8":  # read the images first: a bad --calib fails before the slow conversion
        calib = load_calibration(job.calib, job.input_size, job.spec.kind, job.recipe.calib_max_images)
    folded, report = fold_batchnorm(job.model, torch.from_numpy(job.sample()))
    # XNNPACK rewrites (issue #13, docs/tflite.md), exact: every depthwise conv within 25 taps, every
    # upsampling deconv as conv + depth-to-space. The child converts the rewritten graph; the gates
    # compare the file with the unrewritten model.
    graph, depthwise_split = dwsplit.apply(folded, job.recipe.options)
    graph, subpixel_deconv = subpixel.apply(graph, job.recipe.options)
    data = convert_fp32(graph, job.output_names, job.input_size)
    if job.precision == "fp16":
        data = quantize_fp16(data)
    elif job.precision == "int8":
        data = quantize_int8(data, calib.transpose(0, 2, 3, 1))
    figures = check_parity(job, data, folded, calib)
    write_bytes(job.stage / MODEL_FILE, data)
    result = fragment(job, data, report.as_dict(), figures, 0 if calib is None else len(calib))
    result["export"].update(depthwise_split=depthwise_split, subpixel_deconv=subpixel_deconv)
    return result


def fragment(job: ExportJob, data: bytes, bn_fold: dict, figures: dict, calib_images: int) -> dict[str, Any]:
    """The manifest fragments: NHWC tensors with their dtypes and int8 parameters, settings, tools."""
    info = tensor_info(data)
    inp = {"name": INPUT_NAME, "layout": "NHWC", **info[INPUT_NAME]}
    outputs = [{"name": name, "layout": "NHWC", **info[name]} for name in job.output_names]
    export = {
        "converter": f"litert-torch {_version('litert-torch')} (PyTorch -> TFLite, channels-last I/O)",
        "bn_folded": not bn_fold["kept"],
        "bn_fold": bn_fold,
        "quantizer": {
            "fp32": None,
            "fp16": "ai-edge-quantizer float casting: fp16 weights, float compute",
            "int8": "ai-edge-quantizer static_wi8_ai8: full-integer, int8 I/O, per-channel symmetric weights",
        }[job.precision],
        "calibration": {"images": calib_images, "folder": str(job.calib)} if calib_images else None,
    }
    tools = {
        "litert-torch": _version("litert-torch"),
        "ai-edge-litert": _version("ai-edge-litert"),
        "ai-edge-quantizer": _version("ai-edge-quantizer"),
    }
    return {
        "input": inp,
        "outputs": outputs,
        "export": export,
        "tools": tools,
        "parity": figures,
        "runtime": benchmark_command(job),
    }


def benchmark_command(job: ExportJob) -> dict[str, str]:
    """The target's native timing command for this precision (``[tflite] benchmark_model``), if the recipe has one."""
    options = job.recipe.options
    if not options.benchmark_model:
        return {}
    flags = options.benchmark_flags.get(job.precision, "")
    return {"benchmark_model": " ".join(filter(None, [options.benchmark_model, flags]))}


def _version(dist: str) -> str:
    """A package's version from its metadata: importing litert-torch here would import jax (see above)."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
