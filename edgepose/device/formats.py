"""What an artifact format and a runtime backend are, written once.

A *format* is what ``edgepose export`` writes (its model file, the precisions it allows and the
lowering that makes it); a *backend* is what runs an artifact on a device (the file it loads and
the module under ``runtime/`` that wraps it). Recipe parsing, export, runtime selection, the bench,
the manifest and the CLI all read these two tables; no format or model-file name is spelled anywhere
else. Torch-free and Python 3.6 compatible: the device side reads it too.
"""

from collections import namedtuple
from typing import NamedTuple

from .errors import EdgeposeError

PRECISIONS = ("fp32", "fp16", "int8")

# name: the backend's name in manifests and records; model_file: the file it loads from an artifact
# folder; module: its module in runtime/ (imported only when used, so a Pi never imports TensorRT);
# packages: the Python packages that provide it, in the order they are tried.
Backend = namedtuple("Backend", "name model_file module packages description")

BACKENDS = {
    "onnxruntime": Backend(
        "onnxruntime", "model.onnx", "ort", ("onnxruntime",), "ONNX Runtime (CPU; GPU providers if asked)"
    ),
    "tflite": Backend(
        "tflite", "model.tflite", "litert", ("ai_edge_litert", "tflite_runtime"),
        "TFLite interpreter with XNNPACK (ai-edge-litert, or the frozen tflite-runtime)",
    ),
    "tensorrt": Backend("tensorrt", "model.engine", "trt", ("tensorrt",), "TensorRT engine built on the device"),
}  # fmt: skip

# The devices' own timing tools and the backend whose model each one times.
NATIVE_TOOLS = {"trtexec": "tensorrt", "benchmark_model": "tflite"}


class OnnxOptions(NamedTuple):
    """The onnx format has no options of its own."""


class TensorRTOptions(NamedTuple):
    """``[tensorrt]`` of a recipe: the ONNX parser to lint for and the engine build settings."""

    parser: str = "8.2"  # the TensorRT version whose ONNX parser must accept the graph
    workspace_mib: int = 256  # builder workspace: the Nano has 4 GB shared, big workspaces get OOM-killed
    max_batch: int = 4  # largest batch of the optimisation profile when the batch axis is dynamic
    builder: str = "python"  # how the device builds model.engine: "python" (build_engine.py) or "trtexec"
    trtexec: str = "/usr/src/tensorrt/bin/trtexec"


class TFLiteOptions(NamedTuple):
    """``[tflite]`` of a recipe: the device's native timing command and the XNNPACK graph rewrites."""

    benchmark_model: str = ""  # the on-device benchmark_model command line, written into the manifest
    benchmark_flags: dict = {}  # precision -> extra benchmark_model flags (e.g. the delegate)
    # Depthwise convs of more than 25 taps rewritten as sums of ones XNNPACK has kernels for
    # (edgepose/export/dwsplit.py: "ring", "columns", "rows", "centred", or "none"); docs/tflite.md.
    depthwise_split: str = "ring"
    # Upsampling transposed convs rewritten as conv + depth-to-space (edgepose/export/subpixel.py).
    subpixel_deconv: bool = True


# name: the format's name in recipes and manifests; model_file: the file the export writes;
# backends: what can run it (the first is the default); precisions: what the format can hold;
# options: its typed recipe table; lowering: the host module that writes it (never imported on a device).
Format = namedtuple("Format", "name model_file backends precisions needs_opset options lowering description")

FORMATS = {
    "onnx": Format(
        "onnx", "model.onnx", ("onnxruntime",), ("fp32",), True, OnnxOptions, "edgepose.export.onnx",
        "ONNX (opset 11-17), BN folded, simplified",
    ),
    "tensorrt": Format(
        # The ONNX is written on the host; the engine is built on the device (not portable). Where
        # TensorRT is absent, onnxruntime runs the same model.onnx as a labelled stand-in.
        "tensorrt", "model.onnx", ("tensorrt", "onnxruntime"), ("fp16", "fp32", "int8"), True,
        TensorRTOptions, "edgepose.export.tensorrt", "ONNX linted for a TensorRT parser + engine builder",
    ),
    "tflite": Format(
        "tflite", "model.tflite", ("tflite",), ("fp32", "fp16", "int8"), False, TFLiteOptions,
        "edgepose.export.tflite", "TFLite flatbuffer, NHWC, fp32 / fp16 weights / full-integer int8",
    ),
}  # fmt: skip


def get_format(name):
    """The :data:`FORMATS` row of ``name``; an unknown name is one clear line."""
    try:
        return FORMATS[name]
    except KeyError:
        raise EdgeposeError(
            "unknown format {!r}; known formats: {}".format(name, ", ".join(FORMATS))
        ) from None


def get_backend(name):
    """The :data:`BACKENDS` row of ``name``; an unknown name is one clear line."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise EdgeposeError(
            "unknown backend {!r}; choose one of: {}".format(name, ", ".join(BACKENDS))
        ) from None


def format_of_lowering(module):
    """The format whose lowering is ``module`` (a lowering's own ``__name__``)."""
    for fmt in FORMATS.values():
        if fmt.lowering == module:
            return fmt
    raise EdgeposeError("{} is not the lowering of any format".format(module))


def backend_of_module(module):
    """The backend whose runtime module is ``module`` (a runtime module's own ``__name__``)."""
    last = module.rsplit(".", 1)[-1]
    for backend in BACKENDS.values():
        if backend.module == last:
            return backend
    raise EdgeposeError("{} is not the runtime module of any backend".format(module))


def model_files():
    """Every model file name any format writes or any backend loads."""
    return sorted({f.model_file for f in FORMATS.values()} | {b.model_file for b in BACKENDS.values()})


def format_of_backend(backend):
    """The formats whose artifacts ``backend`` can run."""
    return [f.name for f in FORMATS.values() if backend in f.backends]
