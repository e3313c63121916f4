"""The parity gate of each precision: what an exported file is compared against, and what it may lose.

- fp32: the recipe's absolute bar (``max_abs_diff``), with the fp32 noise allowance of the pure gate
  (:func:`edgepose.export.parity.gate`).
- fp16: the recipe's SQNR / peak bars, lowered to what fp16 weights cost this network in PyTorch itself
  (the BN-folded model with fp16-rounded weights) minus ``FP16_MARGIN``, where that floor is lower.
- int8: the recipe's bars; a file below them gets a second opinion from onnxruntime's own int8 of the
  same network (``int8_reference``). If that meets the bar, the converter is at fault and the export
  fails; if it misses too, the file must be no worse than it by ``INT8_MARGIN``, with a warning.

Nothing here changes the job or its recipe: each step returns the verdict and its effective limits.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgepose.errors import EdgeposeError
from edgepose.export import parity

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

PARITY_THREADS = 2
# Segmentation: a file may give this many more pixels another class than the floor (fp16-rounded weights
# in PyTorch, or onnxruntime's int8) does (measured gaps in docs/segmentation.md).
PIXEL_MARGIN = 0.05
# fp16 may lose this much more than fp16-rounded (BN-folded) weights lose in PyTorch itself
# (measured gaps are within 3 dB and 0.05, docs/tflite.md).
FP16_MARGIN = {"sqnr_db": 6.0, "peak_agreement": 0.15, "pixel_agreement": PIXEL_MARGIN}
# Where onnxruntime's int8 of the network also misses the bar, an int8 file may be this much worse
# than it (two int8 implementations round differently; measured gaps in docs/tflite.md).
INT8_MARGIN = {"sqnr_db": 3.0, "peak_agreement": 0.15, "pixel_agreement": PIXEL_MARGIN}


@torch.no_grad()
def fp16_floor(
    job: ExportJob, folded: nn.Module, x: np.ndarray, reference: dict[str, np.ndarray]
) -> dict[str, dict]:
    """Figures of the BN-folded model with its parameters rounded to fp16 (what the file stores), vs fp32."""
    rounded = copy.deepcopy(folded)
    for tensor in [*rounded.parameters(), *rounded.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())
    out = rounded(torch.from_numpy(x))
    out = out if isinstance(out, tuple | list) else (out,)
    return job.figures(reference, {name: t.numpy() for name, t in zip(job.output_names, out)})


def int8_second_opinion(
    job: ExportJob, reference: dict[str, np.ndarray], x: np.ndarray, calib: np.ndarray
) -> dict[str, Any]:
    """onnxruntime's int8 of the same network against PyTorch fp32: ``{"runtime", "outputs"}``, or ``{"error"}``."""
    try:
        from edgepose.export import int8_reference  # onnx + onnxruntime: the export extra

        other = int8_reference.onnxruntime_int8(job, calib, x, PARITY_THREADS)
    except Exception as exc:  # no second opinion: the recipe's bar stands, and the message says why
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {"error": f"{type(exc).__name__}: {first}"}
    return {
        "runtime": int8_reference.describe(),
        "outputs": job.figures(reference, other),
    }


def verdict(
    job: ExportJob,
    candidate: dict[str, np.ndarray],
    x: np.ndarray,
    folded: nn.Module,
    calib: np.ndarray | None,
    what: str,
    runtime: str,
) -> dict[str, Any]:
    """Gate ``candidate`` (outputs of the exported file on ``x``) for the job's precision; raises on failure.

    Returns the manifest's parity figures: the effective limits, per-output figures, the floors used and
    any warning. ``what`` names the file and runtime in the error message.
    """
    reference = job.run_torch(x)
    extra: dict[str, Any] = {}
    floor = None
    if job.precision == "fp16":
        extra["fp16_weights_in_pytorch"] = figures = fp16_floor(job, folded, x, reference)
        floor = parity.Floor(figures, FP16_MARGIN)
    result = job.check(candidate, x, reference, floor)
    if not result["passed"] and job.precision == "int8" and calib is not None:
        seen = extra["int8_reference"] = int8_second_opinion(job, reference, x, calib)
        if "outputs" in seen:
            result = job.check(candidate, x, reference, parity.Floor(seen["outputs"], INT8_MARGIN))
            if result["passed"]:
                extra["warnings"] = [int8_warning(job, result, seen)]
    if not result["passed"]:
        raise EdgeposeError(
            f"parity check failed for {job.model_name} {job.precision} ({what} vs PyTorch): "
            + "; ".join(result["failures"])
            + _second_opinion(extra.get("int8_reference"))
        )
    return {
        "reference": "pytorch fp32",
        "runtime": runtime,
        "input": parity.SAMPLE_NAME,
        "recipe_thresholds": job.recipe.parity,
        **result,
        **extra,
    }


def int8_warning(job: ExportJob, result: dict, other: dict) -> str:
    """Why an int8 file passed below the recipe's bar, and what to do about it."""
    then = (
        "these are random weights: judge int8 with your trained checkpoint (--weights) on your own data"
        if job.weights is None
        else "check int8 accuracy on your own data before deploying it, or deploy fp16"
    )
    return (
        f"int8 loses much of this network's signal: SQNR {_worst(result)} here, {_worst(other)} in "
        f"onnxruntime's int8 of the same network, both below the recipe's bar ({_bar(job.recipe.parity)}); "
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
