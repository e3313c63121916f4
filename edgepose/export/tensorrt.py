"""The TensorRT lowering (Jetson Nano): a static ONNX linted for TensorRT 8.2, plus what builds the engine on the device.

Engines are not portable across TensorRT versions or GPUs, so the host writes ``model.onnx`` (opset
13, checked against PyTorch in onnxruntime), ``build_engine.py`` (runs the device-side
``edgepose_device.build_engine`` with the Jetson's own TensorRT bindings) and ``trtexec.sh`` (the
equivalent trtexec command line). With ``build=True`` and an importable ``tensorrt`` the engine is
built right here as well.
"""

from __future__ import annotations

import shlex
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepose.atomic import write_text
from edgepose.errors import EdgeposeError
from edgepose.export import trt_ops
from edgepose.export.onnx import MODEL_FILE, tool_versions, write_onnx

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

ENGINE_FILE = "model.engine"
CALIB_CACHE = "calib.cache"
CALIB_DATA = "calib.npy"
DEFAULT_WORKSPACE_MIB = 256
DEFAULT_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
BUILD_ENGINE_PY = """\
import os, sys; HERE = os.path.dirname(os.path.abspath(__file__)); sys.path.insert(0, HERE); \
from edgepose_device.build_engine import main; sys.exit(main(model_dir=HERE))
"""
MAX_CALIB_IMAGES = 200


def trtexec_args(job: ExportJob, workspace_mib: int, calib: str | None) -> list[str]:
    """trtexec arguments equivalent to build_engine.py (TensorRT 8.2 flag names)."""
    h, w = job.input_size
    args = [f"--onnx={MODEL_FILE}", f"--saveEngine={ENGINE_FILE}", f"--workspace={workspace_mib}"]
    if job.precision == "fp16":
        args.append("--fp16")
    elif job.precision == "int8":
        args += ["--int8"] + ([f"--calib={calib}"] if calib else [])
    if job.recipe.dynamic_batch:
        max_batch = int(job.recipe.options.get("max_batch", 4))
        args += [
            f"--minShapes=input:1x3x{h}x{w}",
            f"--optShapes=input:1x3x{h}x{w}",
            f"--maxShapes=input:{max_batch}x3x{h}x{w}",
        ]
    return args


def trtexec_script(trtexec: str, args: list[str]) -> str:
    """trtexec.sh: builds model.engine next to it and prints trtexec's timing summary."""
    return (
        "#!/bin/sh\n"
        "# Build model.engine from model.onnx with trtexec (TensorRT 8.2 flags; on TensorRT >= 8.4 use\n"
        "# --memPoolSize=workspace:<MiB> instead of --workspace) and time it. Extra arguments are passed on.\n"
        "# Before timing on a Jetson: sudo nvpmodel -m 0 && sudo jetson_clocks\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        f'TRTEXEC="${{TRTEXEC:-{trtexec}}}"\n'
        f'"$TRTEXEC" {" ".join(shlex.quote(a) for a in args)} "$@"\n'
    )


def stage_calibration(job: ExportJob) -> str | None:
    """For int8: put the calibration cache or data into the folder; returns the file name used."""
    if job.precision != "int8":
        return None
    src = job.calib
    if src is None:
        raise EdgeposeError(
            "int8 needs calibration: --calib DIR (images), --calib data.npy (N,3,H,W float32, preprocessed)"
            " or --calib FILE.cache (a TensorRT calibration cache)"
        )
    if src.is_dir():  # preprocessed exactly like on-device inference (shared with the TFLite int8 path)
        from edgepose.export.calibration import load_calibration

        np.save(
            job.stage / CALIB_DATA, load_calibration(src, job.input_size, job.spec.kind, MAX_CALIB_IMAGES)
        )
        return CALIB_DATA
    if src.suffix == ".npy":
        data = np.load(src)
        if data.ndim != 4 or tuple(data.shape[1:]) != (3, *job.input_size):
            raise EdgeposeError(
                f"{src} holds {data.shape}; expected (N, 3, {job.input_size[0]}, {job.input_size[1]})"
            )
        np.save(job.stage / CALIB_DATA, data.astype(np.float32))
        return CALIB_DATA
    shutil.copyfile(src, job.stage / CALIB_CACHE)
    return CALIB_CACHE


def build_here(job: ExportJob, workspace_mib: int, calib: str | None) -> dict[str, Any]:
    """Build the engine on this machine with the device-side builder (needs ``tensorrt``)."""
    from edgepose.device import build_engine

    stage = job.stage
    return build_engine.build_engine(
        str(stage / MODEL_FILE),
        str(stage / ENGINE_FILE),
        precision=job.precision,
        workspace_mib=workspace_mib,
        calib_cache=str(stage / CALIB_CACHE) if calib == CALIB_CACHE else None,
        calib_data=str(stage / CALIB_DATA) if calib == CALIB_DATA else None,
        max_batch=int(job.recipe.options.get("max_batch", 4)) if job.recipe.dynamic_batch else 1,
    )


def lower(job: ExportJob) -> dict[str, Any]:
    """Format "tensorrt": linted ONNX + build_engine.py + trtexec.sh (+ model.engine with ``build``)."""
    options = job.recipe.options
    parser = str(options.get("parser", "8.2"))
    workspace = int(options.get("workspace_mib", DEFAULT_WORKSPACE_MIB))
    static = not job.recipe.dynamic_batch

    def lint(model) -> None:
        trt_ops.check(model, parser=parser, static_shapes=static, what=f"{job.model_name} ({MODEL_FILE})")

    if job.build:  # fail before the slow export when the engine cannot be built here
        from edgepose.device.build_engine import require_tensorrt

        require_tensorrt()
    calib = stage_calibration(job)  # likewise: a missing calibration set fails first
    _, settings, figures = write_onnx(job, job.recipe.opset, job.recipe.dynamic_batch, lint=lint)
    args = trtexec_args(job, workspace, calib)
    write_text(job.stage / "trtexec.sh", trtexec_script(str(options.get("trtexec", DEFAULT_TRTEXEC)), args))
    (job.stage / "trtexec.sh").chmod(0o755)
    write_text(job.stage / "build_engine.py", BUILD_ENGINE_PY)
    engine = None
    if job.build:
        engine = build_here(job, workspace, calib)
    settings["tensorrt"] = {
        "parser": parser,
        "lint": "passed",
        "workspace_mib": workspace,
        "calibration": calib,
        "trtexec": "trtexec " + " ".join(args),
        "engine": engine,  # null: built on the device by build_engine.py
    }
    return {
        "export": settings,
        "tools": tool_versions(),
        "parity": figures,
        "runtime": {"backend": "tensorrt", "engine": ENGINE_FILE, "onnx": MODEL_FILE},
    }
