"""The ONNX lowering: BN-folded model -> legacy exporter at an exact opset -> onnxslim -> checker -> parity.

onnxslim is the simplifier (rather than onnx-simplifier): it is pure Python (no native build on new
Pythons), keeps dynamic batch axes, and removes the Shape/Gather chains the legacy exporter
leaves around reshapes. The parity check runs the file in onnxruntime against PyTorch fp32 on a
real photo; a failure raises with the figures, so no artifact is written.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxslim
import torch

import edgepose
from edgepose.atomic import write_bytes
from edgepose.device.formats import format_of_lowering
from edgepose.errors import EdgeposeError
from edgepose.export import parity
from edgepose.export.fold import fold_batchnorm

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

MODEL_FILE = format_of_lowering(__name__).model_file


def export_onnx(job: ExportJob, opset: int, dynamic_batch: bool) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Fold BNs, export with the legacy exporter, simplify and check; returns the model and its settings."""
    example = torch.from_numpy(job.sample())
    folded, report = fold_batchnorm(job.model, example)
    names = job.output_names
    axes = {name: {0: "batch"} for name in ["input", *names]} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
            # Harmless: strided slices stay ops (onnxslim folds what is constant afterwards).
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            torch.onnx.export(
                folded,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter's own errors name the op that failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeposeError(
            f"torch.onnx.export failed for {job.model_name} at opset {opset}: {first}"
        ) from None
    model = onnxslim.slim(onnx.load_from_string(buffer.getvalue()))
    model.producer_name, model.producer_version = "edgepose", edgepose.__version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgeposeError(f"onnx.checker rejects the exported {job.model_name}: {exc}") from None
    settings = {
        "opset": opset,
        "dynamic_batch": dynamic_batch,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "bn_folded": not report.kept,
        "bn_fold": report.as_dict(),
        "simplifier": f"onnxslim {onnxslim.__version__}",
        "nodes": op_histogram(model),
    }
    return model, settings


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each op type the graph has (sorted by name)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def run_onnxruntime(model_bytes: bytes, x: np.ndarray, threads: int = 1) -> dict[str, np.ndarray]:
    """Outputs of the ONNX model on ``x`` in onnxruntime (CPU), keyed by name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


def check_parity(job: ExportJob, model_bytes: bytes, dynamic_batch: bool) -> dict[str, Any]:
    """onnxruntime vs PyTorch fp32 on the photo (two images when the batch is dynamic); raises on failure."""
    import onnxruntime as ort

    x = job.sample(batch=2 if dynamic_batch else 1)
    result = job.check(run_onnxruntime(model_bytes, x), x)
    if not result["passed"]:
        raise EdgeposeError(
            f"parity check failed for {job.model_name} ({MODEL_FILE} in onnxruntime vs PyTorch): "
            + "; ".join(result["failures"])
        )
    input_note = parity.SAMPLE_NAME + (" (batch of 2: photo and its mirror)" if dynamic_batch else "")
    return {
        "reference": "pytorch fp32",
        "runtime": f"onnxruntime {ort.__version__}",
        "input": input_note,
        "recipe_thresholds": job.recipe.parity,
        **result,
    }


def write_onnx(
    job: ExportJob, opset: int, dynamic_batch: bool, lint: Callable[[onnx.ModelProto], None] | None = None
) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """Export, lint (target-specific, optional), check parity and write ``model.onnx`` into the stage.

    Returns the file's bytes, the export settings and the parity figures.
    """
    model, settings = export_onnx(job, opset, dynamic_batch)
    if lint is not None:
        lint(model)
    data = model.SerializeToString()
    figures = check_parity(job, data, dynamic_batch)
    write_bytes(job.stage / MODEL_FILE, data)
    return data, settings, figures


def tool_versions() -> dict[str, str]:
    """Versions of the ONNX tools used, for the manifest."""
    import onnxruntime as ort

    return {module.__name__: module.__version__ for module in (onnx, ort, onnxslim)}


def lower(job: ExportJob) -> dict[str, Any]:
    """The ONNX format: write the fp32 ONNX checked against PyTorch; return manifest fragments."""
    _, settings, figures = write_onnx(job, job.recipe.opset, job.recipe.dynamic_batch)
    return {"export": settings, "tools": tool_versions(), "parity": figures}


def load(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file with a clear error for a missing or broken one."""
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise EdgeposeError(f"ONNX file not found: {path}") from None
    except Exception as exc:
        raise EdgeposeError(f"cannot read ONNX file {path}: {exc}") from None
