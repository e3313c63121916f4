"""A second, independent int8 implementation of the same network: onnxruntime's static quantisation.

When a TFLite int8 model misses the recipe's bar, two different things can be wrong: the converter
or quantiser (wrong scales, a mis-lowered op, bad calibration plumbing), or the network itself (some
networks lose most of their signal in any int8 implementation: random-weight Lite-HRNet does, its
untrained blocks amplify rounding noise). This module tells them apart: the same BN-folded model,
exported to ONNX, is quantised by onnxruntime (QDQ, per-channel symmetric int8 weights, per-tensor int8
activations, min/max ranges from the same calibration images: the settings of the TFLite int8 spec)
and run on the same photo. If onnxruntime's int8 meets the bar, the TFLite file is at fault.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from edgepose.export.onnx import export_onnx, run_onnxruntime

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

OPSET = 17


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an (N, 3, H, W) array, one image at a time."""

    def __init__(self, calib: np.ndarray, input_name: str) -> None:
        self._items = iter([{input_name: image[None].astype(np.float32)} for image in calib])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def describe() -> str:
    import onnxruntime

    return (
        f"onnxruntime {onnxruntime.__version__} static int8 (QDQ, per-channel symmetric int8 weights, "
        "per-tensor int8 activations, min/max on the same calibration images)"
    )


def onnxruntime_int8(job: ExportJob, calib: np.ndarray, x: np.ndarray, threads: int) -> dict[str, np.ndarray]:
    """Outputs on ``x`` (NCHW) of the job's model quantised to int8 by onnxruntime, keyed by output name."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model, _ = export_onnx(job, OPSET, dynamic_batch=False)
    with tempfile.TemporaryDirectory(prefix="edgepose-int8-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        quiet = logging.getLogger()  # the quantiser logs advice ("consider pre-processing") at WARNING
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            quantize_static(
                str(src),
                str(dst),
                _Batches(calib, model.graph.input[0].name),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        finally:
            quiet.setLevel(level)
        return run_onnxruntime(dst.read_bytes(), x, threads)
