"""The TensorRT lowering (Jetson Nano): a static ONNX linted for TensorRT 8.2, plus what builds the engine on the device.

Engines are not portable across TensorRT versions or GPUs, so the host writes the ONNX (opset 13,
checked against PyTorch in onnxruntime), the engine settings (``engine`` in manifest.json, resolved
once here from the recipe), ``build_engine.py`` (TensorRT's Python API) and ``trtexec.sh`` (trtexec).
Both scripts run the device-side ``edgepose_device.build_engine``, which reads those settings, so
every engine of this folder — built by the user, by ``edgepose bench`` or with ``--build`` here — is
built the same way.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepose.atomic import write_text
from edgepose.device import build_engine, trtexec_build
from edgepose.device.formats import format_of_lowering, get_backend
from edgepose.errors import EdgeposeError
from edgepose.export import trt_ops
from edgepose.export.onnx import tool_versions, write_onnx

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

FORMAT = format_of_lowering(__name__)
ENGINE_FILE = get_backend(FORMAT.backends[0]).model_file  # what the device builds from the ONNX
BUILD_ENGINE_PY = """\
import os, sys; HERE = os.path.dirname(os.path.abspath(__file__)); sys.path.insert(0, HERE); \
from edgepose_device.build_engine import main; sys.exit(main(model_dir=HERE))
"""
TRTEXEC_SH = """\
#!/bin/sh
# Build the engine of this folder with trtexec instead of TensorRT's Python API: the same settings
# (manifest.json "engine"), the trtexec command line is printed before it runs. Extra arguments are
# passed to build_engine.py (e.g. --trtexec PATH). Before timing on a Jetson: sudo nvpmodel -m 0 && sudo jetson_clocks
cd "$(dirname "$0")" && exec python3 build_engine.py --builder trtexec "$@"
"""


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

        data = load_calibration(src, job.input_size, job.spec.kind, job.recipe.calib_max_images)
        np.save(job.stage / build_engine.CALIB_DATA, data)
        return build_engine.CALIB_DATA
    if src.suffix == ".npy":
        data = np.load(src)
        if data.ndim != 4 or tuple(data.shape[1:]) != (3, *job.input_size):
            raise EdgeposeError(
                f"{src} holds {data.shape}; expected (N, 3, {job.input_size[0]}, {job.input_size[1]})"
            )
        np.save(job.stage / build_engine.CALIB_DATA, data.astype(np.float32))
        return build_engine.CALIB_DATA
    shutil.copyfile(src, job.stage / trtexec_build.CALIB_CACHE)
    return trtexec_build.CALIB_CACHE


def engine_settings(job: ExportJob, calibration: str | None) -> dict[str, Any]:
    """The engine build settings, resolved once from the recipe: the manifest's ``engine`` section."""
    options = job.recipe.options
    h, w = job.input_size
    shape = [1, 3, h, w]
    return {
        "builder": options.builder,
        "precision": job.precision,
        "workspace_mib": options.workspace_mib,
        "tensorrt_version": options.parser,  # the TensorRT version the ONNX was linted for (trtexec flags)
        # One optimisation profile, batch 1..max_batch, where the batch axis is dynamic.
        "shapes": {"min": shape, "opt": shape, "max": [options.max_batch, 3, h, w]}
        if job.recipe.dynamic_batch
        else None,
        "calibration": calibration,
        "trtexec": options.trtexec,
        "source": FORMAT.model_file,
        "engine": ENGINE_FILE,
    }


def lower(job: ExportJob) -> dict[str, Any]:
    """The TensorRT format: linted ONNX + engine settings + build_engine.py / trtexec.sh (+ the engine with ``build``)."""
    options = job.recipe.options
    static = not job.recipe.dynamic_batch

    def lint(model) -> None:
        trt_ops.check(
            model, parser=options.parser, static_shapes=static, what=f"{job.model_name} ({FORMAT.model_file})"
        )

    if job.build:  # fail before the slow export when the engine cannot be built here
        build_engine.require_tensorrt()
    calibration = stage_calibration(job)  # likewise: a missing calibration set fails first
    _, settings, figures = write_onnx(job, job.recipe.opset, job.recipe.dynamic_batch, lint=lint)
    engine = engine_settings(job, calibration)
    write_text(job.stage / "trtexec.sh", TRTEXEC_SH)
    (job.stage / "trtexec.sh").chmod(0o755)
    write_text(job.stage / "build_engine.py", BUILD_ENGINE_PY)
    built = build_engine.build_from_settings(str(job.stage), engine) if job.build else None
    settings["engine_build"] = {"parser": options.parser, "lint": "passed", "built_here": built}
    return {
        "export": settings,
        "tools": tool_versions(),
        "parity": figures,
        "engine": engine,
    }
