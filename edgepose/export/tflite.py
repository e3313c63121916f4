"""The TFLite lowering (Raspberry Pi 4, Snapdragon 855): fp32, fp16 weights, or full-integer int8.

Route (docs/tflite.md has the numbers): the BN-folded PyTorch model, wrapped to take NHWC and
return NHWC outputs by name, goes through Google's litert-torch straight to a .tflite (no
TensorFlow, no ONNX in between). fp16 and int8 are made from that fp32 flatbuffer by
ai-edge-quantizer: fp16 casts the weights (the GPU delegate runs fp16), int8 is static
full-integer PTQ (int8 input, output and activations, per-channel symmetric int8 weights: the
TFLite int8 spec the Hexagon delegate asks for) calibrated on ``--calib`` images. Every file is
run in ai-edge-litert's interpreter against PyTorch on the same photo before it is written; an
int8 file that misses the recipe's bar is judged against onnxruntime's int8 of the same network
(``int8_reference``), which tells a converter fault from a network that int8 cannot carry.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgepose.atomic import write_bytes
from edgepose.device.runtime.base import dequantize, quantize
from edgepose.errors import EdgeposeError
from edgepose.export import dwsplit, parity, subpixel
from edgepose.export.calibration import input_value_range, load_calibration
from edgepose.export.fold import fold_batchnorm

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

MODEL_FILE = "model.tflite"
SIGNATURE = "serving_default"
INPUT_NAME = "input"
PARITY_THREADS = 2
# fp16 may lose this much more than fp16-rounded (BN-folded) weights lose in PyTorch itself
# (measured gaps are within 3 dB and 0.05, docs/tflite.md).
FP16_MARGIN = {"sqnr_db": 6.0, "peak_agreement": 0.15}
# Where onnxruntime's int8 of the network also misses the bar, TFLite's int8 may be this much worse
# than it (two int8 implementations round differently; measured gaps in docs/tflite.md).
INT8_MARGIN = {"sqnr_db": 3.0, "peak_agreement": 0.15}


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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout/stderr at the file-descriptor level (the converters' C++ logs and progress bars).

    What was printed is re-emitted if the block fails, so a converter error is never hidden.
    """
    saved = [os.dup(1), os.dup(2)]
    text = io.StringIO()  # Python-level prints, in case sys.stdout does not write to fd 1 (pytest)
    with tempfile.TemporaryFile() as log:
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        except BaseException:
            _restore(saved)
            log.seek(0)
            tail = log.read()[-4000:].decode("utf-8", "replace") + text.getvalue()[-4000:]
            sys.stderr.write(tail)
            raise
        finally:
            _restore(saved)


def _restore(saved: list[int]) -> None:
    if saved[0] < 0:
        return
    sys.stdout.flush()  # Python-level buffers belong to the silenced block
    sys.stderr.flush()
    for fd, kept in zip((1, 2), saved):
        os.dup2(kept, fd)
        os.close(kept)
    saved[:] = [-1, -1]


def convert_fp32(model: nn.Module, names: list[str], input_size: tuple[int, int]) -> bytes:
    """fp32 .tflite bytes of ``model`` (NCHW, eval) with an NHWC ``input`` and NHWC named outputs."""
    h, w = input_size
    example = torch.zeros(1, h, w, 3)
    try:
        with quiet():
            import litert_torch  # its import logs torchao/oneDNN notices: keep them out of the CLI

            edge = litert_torch.convert(
                ChannelsLast(model, names).eval(), sample_kwargs={INPUT_NAME: example}
            )
            return edge.model_content()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgeposeError(
            f"litert-torch could not convert the model: {type(exc).__name__}: {first}"
        ) from None


def quantize_fp16(fp32: bytes) -> bytes:
    """fp16 weights (float casting); compute stays float, the GPU delegate runs it in fp16."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(bytearray(fp32))
    q.add_weight_only_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        num_bits=16,
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    with quiet():
        return bytes(q.quantize().quantized_model)


def quantize_int8(fp32: bytes, calib_nhwc: np.ndarray) -> bytes:
    """Full-integer int8 (int8 I/O) calibrated on ``calib_nhwc`` (N, H, W, 3) float32 inputs."""
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(bytearray(fp32), recipe.static_wi8_ai8())
    samples = [{INPUT_NAME: x[None].astype(np.float32)} for x in calib_nhwc]
    input_tensor = _interpreter(fp32, 1).get_input_details()[0]["name"]
    with quiet():
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


def thresholds(job: ExportJob) -> dict[str, float]:
    """The parity thresholds for this precision: ``[tflite.parity.<precision>]``, else ``[parity]``."""
    per_precision = job.recipe.options.get("parity", {}).get(job.precision)
    return {k: float(v) for k, v in per_precision.items()} if per_precision else dict(job.recipe.parity)


@torch.no_grad()
def fp16_floor(
    job: ExportJob, folded: nn.Module, x: np.ndarray, reference: dict[str, np.ndarray]
) -> dict[str, dict]:
    """Figures of the BN-folded model with its parameters rounded to fp16 (what the .tflite stores), vs fp32.

    That is what fp16 weights cost this network before any converter is involved; a network that is
    itself this sensitive gets a gate relative to this floor (``FP16_MARGIN``), not the fixed bar.
    """
    rounded = copy.deepcopy(folded)
    for tensor in [*rounded.parameters(), *rounded.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())
    out = rounded(torch.from_numpy(x))
    out = out if isinstance(out, tuple | list) else (out,)
    return {
        name: parity.output_figures(reference[name], t.numpy(), job.heatmap_channels[name])
        for name, t in zip(job.output_names, out)
    }


def relative_limits(
    thresholds: dict[str, float], floor: dict[str, dict], margin: dict[str, float]
) -> dict[str, float]:
    """The recipe's bars, lowered to (floor - margin) where the floor itself is below them.

    ``floor``: figures per output of what the network costs before this converter is involved
    (fp16-rounded weights in PyTorch; onnxruntime's int8 of the same network).
    """
    limits = dict(thresholds)
    worst_sqnr = min((f["sqnr_db"] for f in floor.values() if f["sqnr_db"] is not None), default=None)
    if "min_sqnr_db" in limits and worst_sqnr is not None:
        limits["min_sqnr_db"] = min(limits["min_sqnr_db"], worst_sqnr - margin["sqnr_db"])
    if "min_peak_agreement" in limits:
        worst_peaks = min(f["peak_agreement"] for f in floor.values())
        if worst_peaks < limits["min_peak_agreement"]:  # the floor itself moves peaks
            limits["min_peak_agreement"] = worst_peaks - margin["peak_agreement"]
    return limits


def compare(
    job: ExportJob, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], x: np.ndarray
) -> dict[str, Any]:
    """``job.check``, except where PyTorch's own fp32 noise already exceeds the fp32 ``max_abs_diff`` bar.

    A deep network with large outputs can be so sensitive to rounding that PyTorch fp32 is itself
    further than the bar from fp64 on the photo (Lite-HRNet with full-strength random gates: 0.05 at
    outputs ~250, and XNNPACK, summing in another order, 2-5x that far from PyTorch). An absolute bar
    then says nothing, so the gate becomes the recipe's ``[tflite] fp32_noisy_min_sqnr_db``
    (measured 70+ dB there; a wrong graph is far below). The float64 run that measures that noise
    is made only when there is a ``max_abs_diff`` bar (fp32): fp16 and int8 bars are in dB.
    """
    limits = dict(job.recipe.parity)
    bar = limits.get("max_abs_diff")
    if bar is None:
        return parity.compare(reference, candidate, limits, job.heatmap_channels)
    floor = parity.noise_floor(reference, job.run_torch64(x))
    noisy_sqnr = job.recipe.options.get("fp32_noisy_min_sqnr_db")
    if noisy_sqnr is not None and max(floor.values()) > bar:
        limits = {k: v for k, v in limits.items() if k != "max_abs_diff"}
        limits["min_sqnr_db"] = max(float(noisy_sqnr), limits.get("min_sqnr_db", -np.inf))
        job.recipe = replace(job.recipe, parity=limits)
    factor = float(job.recipe.options.get("fp32_noise_factor", parity.NOISE_FACTOR))
    return parity.compare(reference, candidate, limits, job.heatmap_channels, floor, factor)


def int8_second_opinion(
    job: ExportJob, reference: dict[str, np.ndarray], x: np.ndarray, calib: np.ndarray
) -> dict[str, Any]:
    """onnxruntime's int8 of the same network against PyTorch fp32: ``{"runtime", "outputs"}``, or ``{"error"}``.

    Where it meets the bar, the bar stands (a TFLite file below it is at fault). Where it misses
    too, the network is what int8 cannot carry: the gate becomes "no worse than onnxruntime's int8
    by ``INT8_MARGIN``" (:func:`relative_limits`), and the figures and a warning go into the manifest.
    """
    try:
        from edgepose.export import int8_reference  # onnx + onnxruntime: the export extra

        other = int8_reference.onnxruntime_int8(job, calib, x, PARITY_THREADS)
    except Exception as exc:  # no second opinion: the recipe's bar stands, and the message says why
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {"error": f"{type(exc).__name__}: {first}"}
    return {
        "runtime": int8_reference.describe(),
        "outputs": {
            name: parity.output_figures(reference[name], other[name], job.heatmap_channels[name])
            for name in job.output_names
        },
    }


def check_parity(
    job: ExportJob, model_bytes: bytes, folded: nn.Module, calib: np.ndarray | None = None
) -> dict[str, Any]:
    """ai-edge-litert vs PyTorch fp32 on the photo under this precision's thresholds; raises on failure."""
    from ai_edge_litert import __version__ as litert_version

    x = job.sample()
    reference = job.run_torch(x)
    extra: dict[str, Any] = {}
    if job.precision == "fp16":
        floor = fp16_floor(job, folded, x, reference)
        extra["fp16_weights_in_pytorch"] = floor
        job.recipe = replace(job.recipe, parity=relative_limits(job.recipe.parity, floor, FP16_MARGIN))
    try:
        candidate = run_tflite(model_bytes, x)
    except RuntimeError as exc:  # e.g. XNNPACK refusing the graph: the device would refuse it too
        first = (str(exc).strip().splitlines() or [""])[0]
        raise EdgeposeError(
            f"ai-edge-litert cannot run the {job.precision} {MODEL_FILE} of {job.model_name}: {first}"
        ) from None
    recipe_bar = dict(job.recipe.parity)
    result = compare(job, reference, candidate, x)
    if not result["passed"] and job.precision == "int8" and calib is not None:
        seen = extra["int8_reference"] = int8_second_opinion(job, reference, x, calib)
        if "outputs" in seen:
            job.recipe = replace(
                job.recipe, parity=relative_limits(job.recipe.parity, seen["outputs"], INT8_MARGIN)
            )
            result = parity.compare(reference, candidate, job.recipe.parity, job.heatmap_channels)
    if not result["passed"]:
        seen = extra.get("int8_reference")
        raise EdgeposeError(
            f"parity check failed for {job.model_name} {job.precision} ({MODEL_FILE} in ai-edge-litert vs PyTorch): "
            + "; ".join(result["failures"])
            + _second_opinion(seen)
        )
    figures = {
        "reference": "pytorch fp32",
        "runtime": f"ai-edge-litert {litert_version} (XNNPACK, {PARITY_THREADS} threads)",
        "input": parity.SAMPLE_NAME,
        **result,
        **extra,
    }
    if "outputs" in extra.get("int8_reference", {}):
        figures["warnings"] = [int8_warning(job, result, extra["int8_reference"], recipe_bar)]
    return figures


def int8_warning(job: ExportJob, result: dict, other: dict, recipe_bar: dict[str, float]) -> str:
    """Why an int8 file passed below the recipe's bar, and what to do about it."""
    then = (
        "these are random weights: judge int8 with your trained checkpoint (--weights) on your own data"
        if job.weights is None
        else "check int8 accuracy on your own data before deploying it, or deploy fp16"
    )
    return (
        f"int8 loses much of this network's signal: SQNR {_worst(result)} here, {_worst(other)} in "
        f"onnxruntime's int8 of the same network, both below the recipe's bar ({_bar(recipe_bar)}); "
        f"the gate only checked that this file is no worse than onnxruntime's int8 "
        f"(by {INT8_MARGIN['sqnr_db']:.0f} dB); {then}"
    )


def _second_opinion(seen: dict[str, Any] | None) -> str:
    if seen is None:
        return ""
    if "error" in seen:
        return f" (onnxruntime could not quantise the same network for comparison: {seen['error']})"
    return f" (onnxruntime's int8 of the same network: {_worst(seen)})"


def _bar(limits: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(limits.items()))


def _worst(figures: dict[str, Any]) -> str:
    """The lowest SQNR over the outputs of a figures block, as text."""
    values = [f["sqnr_db"] for f in figures["outputs"].values() if f["sqnr_db"] is not None]
    return f"{min(values):.1f} dB" if values else "exact"


def lower(job: ExportJob) -> dict[str, Any]:
    """Format "tflite": write model.tflite (NHWC) in the job's precision, checked against PyTorch."""
    if job.precision not in ("fp32", "fp16", "int8"):
        raise EdgeposeError(f"the tflite format writes fp32, fp16 or int8, not {job.precision}")
    options = job.recipe.options
    calib = None
    if job.precision == "int8":  # read the images first: a bad --calib fails before the slow conversion
        limit = int(options.get("calib_max_images", 200))
        calib = load_calibration(job.calib, job.input_size, job.spec.kind, limit)
    job.recipe = replace(job.recipe, parity=thresholds(job))

    folded, report = fold_batchnorm(job.model, torch.from_numpy(job.sample()))
    # -- XNNPACK rewrites (issue #13), exact: depthwise convs within 25 taps, deconvs as sub-pixel convs --
    folded, depthwise_split = dwsplit.apply(folded, options)
    folded, subpixel_deconv = subpixel.apply(folded, options)
    # --
    data = convert_fp32(folded, job.output_names, job.input_size)
    if job.precision == "fp16":
        data = quantize_fp16(data)
    elif job.precision == "int8":
        data = quantize_int8(data, calib.transpose(0, 2, 3, 1))
    figures = check_parity(job, data, folded, calib)
    write_bytes(job.stage / MODEL_FILE, data)
    job.notes.append(
        f"{MODEL_FILE}: {len(data) / 1e6:.2f} MB, {job.precision}; parity {parity.summary(figures)}"
    )
    result = fragment(job, data, report.as_dict(), figures, 0 if calib is None else len(calib))
    result["export"].update(depthwise_split=depthwise_split, subpixel_deconv=subpixel_deconv)  # issue #13
    return result


def fragment(job: ExportJob, data: bytes, bn_fold: dict, figures: dict, calib_images: int) -> dict[str, Any]:
    """The manifest fragments: NHWC tensors with their dtypes and int8 parameters, settings, tools."""
    import ai_edge_litert
    import ai_edge_quantizer
    import litert_torch

    info = tensor_info(data)
    inp = {"name": INPUT_NAME, "layout": "NHWC", **info[INPUT_NAME]}
    outputs = [{"name": name, "layout": "NHWC", **info[name]} for name in job.output_names]
    export = {
        "converter": f"litert-torch {litert_torch.__version__} (PyTorch -> TFLite, channels-last I/O)",
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
        "litert-torch": litert_torch.__version__,
        "ai-edge-litert": ai_edge_litert.__version__,
        "ai-edge-quantizer": _version("ai-edge-quantizer", ai_edge_quantizer),
    }
    return {
        "input": inp,
        "outputs": outputs,
        "export": export,
        "tools": tools,
        "parity": figures,
        "runtime": {"backend": "tflite", **benchmark_command(job)},
    }


def benchmark_command(job: ExportJob) -> dict[str, str]:
    """The target's native timing command for this precision (``[tflite.benchmark]``), if the recipe has one."""
    bench = job.recipe.options.get("benchmark", {})
    if "command" not in bench:
        return {}
    return {"benchmark_model": " ".join(filter(None, [bench["command"], bench.get(job.precision, "")]))}


def _version(dist: str, module: object) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))
