"""Build and time an engine with TensorRT's ``trtexec`` binary, from an artifact folder's engine settings.

The trtexec half of the one engine build (:mod:`build_engine` runs it for ``--builder trtexec`` and
``trtexec.sh``); the bench times the built engine with :func:`trtexec_time_args`. Python 3.6, stdlib.
"""

import os
import subprocess
import sys
import time

from .errors import EdgeposeError

CALIB_CACHE = "calib.cache"  # a TensorRT INT8 calibration cache (written by the Python builder, read by both)


def _version_tuple(version):
    try:
        parts = [int(p) for p in str(version).split(".")[:2]]
    except ValueError:
        raise EdgeposeError("bad TensorRT version {!r}: expected e.g. 8.2 or 10.3".format(version)) from None
    return parts[0], parts[1] if len(parts) > 1 else 0


def trtexec_build_args(settings, onnx, engine):
    """The trtexec arguments that build ``engine`` from ``onnx`` with the folder's engine settings.

    The workspace flag changed in TensorRT 8.4 (``--workspace=N`` became ``--memPoolSize=workspace:N``),
    so the settings' TensorRT version picks the spelling. trtexec reads an INT8 calibration cache but
    cannot calibrate from images: int8 from ``calib.npy`` needs the Python builder.
    """
    args = ["--onnx=" + onnx, "--saveEngine=" + engine]
    workspace = int(settings["workspace_mib"])
    if _version_tuple(settings.get("tensorrt_version", "8.2")) >= (8, 4):
        args.append("--memPoolSize=workspace:{}".format(workspace))
    else:
        args.append("--workspace={}".format(workspace))
    precision = settings.get("precision", "fp16")
    if precision == "fp16":
        args.append("--fp16")
    elif precision == "int8":
        if settings.get("calibration") != CALIB_CACHE:
            raise EdgeposeError(
                "trtexec cannot calibrate INT8 from images: build with `python3 build_engine.py` "
                "(TensorRT's Python API), or give a calibration cache"
            )
        args += ["--int8", "--calib=" + CALIB_CACHE]
    elif precision != "fp32":
        raise EdgeposeError("precision must be fp32, fp16 or int8, got {!r}".format(precision))
    shapes = settings.get("shapes")
    if shapes:
        for key in ("min", "opt", "max"):
            args.append("--{}Shapes=input:{}".format(key, "x".join(str(d) for d in shapes[key])))
    return args


def trtexec_time_args(engine, runs=100, warmup_ms=500):
    """trtexec arguments that load a built engine and time it (no build)."""
    return ["--loadEngine=" + engine, "--iterations=%d" % int(runs), "--warmUp=%d" % int(warmup_ms),
            "--duration=0", "--avgRuns=10"]  # fmt: skip


def build_with_trtexec(settings, onnx_path, engine_path, trtexec):
    """Build ``engine_path`` with the trtexec binary; returns the facts of the build for the sidecar."""
    args = trtexec_build_args(settings, os.path.basename(onnx_path), os.path.basename(engine_path))
    folder = os.path.dirname(os.path.abspath(engine_path))
    print("build_engine: {} {}".format(trtexec, " ".join(args)))
    sys.stdout.flush()
    start = time.time()
    try:
        code = subprocess.call([trtexec] + args, cwd=folder)
    except OSError as exc:
        raise EdgeposeError(
            "cannot run trtexec at {}: {} (pass --trtexec PATH)".format(trtexec, exc)
        ) from None
    if code != 0 or not os.path.isfile(engine_path):
        raise EdgeposeError("trtexec failed to build the engine (exit {}; its log is above)".format(code))
    return {"builder": "trtexec", "trtexec": trtexec, "trtexec_args": args, "precision": settings.get("precision"),
            "workspace_mib": settings.get("workspace_mib"), "shapes": settings.get("shapes"),
            "calibration": settings.get("calibration"), "build_seconds": round(time.time() - start, 1)}  # fmt: skip
