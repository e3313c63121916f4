"""Build the TensorRT engine of an artifact folder, on the device that will run it: the one engine build.

The settings (precision, workspace, optimisation profile, calibration, builder) were resolved once at
export and are read from manifest.json's ``engine`` section; flags override them. Two builders share
them: TensorRT's Python API (``build_engine.py``, the default) and trtexec (``trtexec.sh``, or
``--builder trtexec``). ``edgepose bench`` runs this same script on the device before timing.

Runs on a Jetson Nano's stock Python 3.6 with only TensorRT's own bindings and numpy (pycuda only
for INT8 calibration from images). Supports the TensorRT 8.x API (JetPack 4.6: 8.0/8.2) and the
>= 8.5 / 10.x API. Writes a plain ``model.engine`` (the serialized plan: ``trtexec --loadEngine``
reads it) and an ``engine.json`` sidecar (TensorRT version, precision, GPU, onnx sha256, build time).
INT8 on a GPU without fast INT8 (the Nano's Maxwell) is an error, never a silent FP32 engine.

    python3 build_engine.py [--builder python|trtexec] [--precision fp16|fp32|int8] [--workspace MiB]
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

from .atomic import write_bytes
from .errors import EdgeposeError
from .manifest import MANIFEST, sha256_of, verify_file
from .trtexec_build import CALIB_CACHE, build_with_trtexec

DEFAULT_WORKSPACE_MIB = 256  # the Nano has 4 GB shared by CPU and GPU; big workspaces get OOM-killed
CALIB_DATA = "calib.npy"  # preprocessed calibration batches (the Python builder only)
SIDECAR = "engine.json"
BUILDERS = ("python", "trtexec")


def require_tensorrt():
    """The tensorrt module, or a clear error where it is not installed."""
    try:
        import tensorrt
    except ImportError:
        raise EdgeposeError(
            "the tensorrt Python package is not importable here: build on the Jetson with its system "
            "python3 (JetPack ships TensorRT bindings for Python 3.6), or run trtexec.sh"
        ) from None
    return tensorrt


def _major(trt):
    return int(trt.__version__.split(".")[0])


def gpu_name():
    """The GPU's name from nvidia-smi, else the Jetson's board model, else 'unknown'."""
    try:
        out = subprocess.check_output(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], stderr=subprocess.DEVNULL, timeout=10
        )
        name = out.decode().strip().splitlines()[0].strip()
        if name:
            return name
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    try:
        with open("/proc/device-tree/model", "rb") as fh:  # Jetson boards have no nvidia-smi
            return fh.read().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return "unknown"


def _make_calibrator(trt, cache_path, data_path, input_shape):
    """An entropy calibrator reading a cache (and, with ``data_path``, batches of preprocessed NCHW data)."""
    import numpy as np

    batches = None
    if data_path:
        try:
            import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
            import pycuda.driver as cuda
        except ImportError:
            raise EdgeposeError(
                "INT8 calibration from data needs pycuda (pip install pycuda); or pass --calib-cache FILE"
            ) from None
        batches = np.load(data_path).astype(np.float32)
        if tuple(batches.shape[1:]) != tuple(input_shape[1:]):
            raise EdgeposeError(
                "calibration data {} has shape {}, the model input is {}".format(
                    data_path, batches.shape, input_shape
                )
            )

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device = cuda.mem_alloc(batches[:1].nbytes) if batches is not None else None

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            if batches is None or self.index >= len(batches):
                return None
            cuda.memcpy_htod(self.device, np.ascontiguousarray(batches[self.index : self.index + 1]))
            self.index += 1
            return [int(self.device)]

        def read_calibration_cache(self):
            if cache_path and os.path.isfile(cache_path):
                with open(cache_path, "rb") as fh:
                    return fh.read()
            return None

        def write_calibration_cache(self, cache):
            if cache_path:
                write_bytes(cache_path, bytes(cache))

    if batches is None and not (cache_path and os.path.isfile(cache_path)):
        raise EdgeposeError(
            "INT8 needs a calibration cache (--calib-cache) or calibration data (--calib-data)"
        )
    return Calibrator()


def _set_workspace(trt, config, workspace_mib):
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    else:  # TensorRT 8.0 / 8.2
        config.max_workspace_size = workspace_mib << 20


def _parse(trt, builder, logger, onnx_path):
    flags = 0
    if _major(trt) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as fh:
        ok = parser.parse(fh.read())
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgeposeError(
            "TensorRT cannot parse {}: {}".format(onnx_path, " | ".join(errors) or "unknown error")
        )
    return network, parser


def build_engine(
    onnx_path,
    engine_path,
    precision="fp16",
    workspace_mib=DEFAULT_WORKSPACE_MIB,
    calib_cache=None,
    calib_data=None,
    max_batch=1,
    verbose=False,
):
    """Build and write ``engine_path`` (+ engine.json next to it); returns the sidecar dict."""
    if precision not in ("fp32", "fp16", "int8"):
        raise EdgeposeError("precision must be fp32, fp16 or int8, got {!r}".format(precision))
    if not os.path.isfile(onnx_path):
        raise EdgeposeError("ONNX file not found: {}".format(onnx_path))
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    gpu = gpu_name()
    fast_fp16 = getattr(builder, "platform_has_fast_fp16", None)
    fast_int8 = getattr(builder, "platform_has_fast_int8", None)
    network, _parser = _parse(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    _set_workspace(trt, config, int(workspace_mib))

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    shapes = [list(t.shape) for t in inputs]
    profile = None
    if any(d < 0 for shape in shapes for d in shape):  # dynamic batch: one profile, batch 1..max_batch
        profile = builder.create_optimization_profile()
        for tensor, shape in zip(inputs, shapes):
            fixed = [d if d > 0 else 1 for d in shape]
            profile.set_shape(tensor.name, fixed, fixed, [max_batch] + fixed[1:])
        config.add_optimization_profile(profile)

    if precision == "fp16":
        if fast_fp16 is False:
            raise EdgeposeError("FP16 requested but {} has no fast FP16; use --precision fp32".format(gpu))
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if fast_int8 is False:
            raise EdgeposeError(
                "INT8 requested but {} has no fast INT8 (platform_has_fast_int8 is False: the Jetson Nano's "
                "Maxwell GPU cannot run INT8); use --precision fp16".format(gpu)
            )
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _make_calibrator(
            trt, calib_cache, calib_data, [max(1, d) for d in shapes[0]]
        )
        if profile is not None:  # calibration of a dynamic-batch network runs at the profile's shapes
            config.set_calibration_profile(profile)

    start = time.time()
    if hasattr(builder, "build_serialized_network"):  # TensorRT >= 8.0
        plan = builder.build_serialized_network(network, config)
    else:  # pragma: no cover - TensorRT 7
        engine = builder.build_engine(network, config)
        plan = engine.serialize() if engine is not None else None
    seconds = time.time() - start
    if plan is None:
        raise EdgeposeError(
            "TensorRT failed to build the engine (see its log above); on a 4 GB Nano close other programs "
            "or lower --workspace"
        )
    write_bytes(engine_path, bytes(memoryview(plan)))
    return write_sidecar(
        engine_path,
        onnx_path,
        {
            "builder": "python",
            "tensorrt_version": trt.__version__,
            "precision": precision,
            "gpu": gpu,
            "platform_has_fast_fp16": fast_fp16,
            "platform_has_fast_int8": fast_int8,
            "workspace_mib": int(workspace_mib),
            "inputs": [{"name": t.name, "shape": s} for t, s in zip(inputs, shapes)],
            "max_batch": max_batch,
            "calibration": os.path.basename(calib_cache or calib_data or "") or None,
            "build_seconds": round(seconds, 1),
        },
    )


def write_sidecar(engine_path, onnx_path, facts):
    """engine.json next to the engine: how it was built and from which ONNX (checked before it is loaded)."""
    info = {"engine": os.path.basename(engine_path), "source": os.path.basename(onnx_path)}
    info.update(facts)
    info["onnx_sha256"] = sha256_of(onnx_path)
    info["engine_sha256"] = sha256_of(engine_path)
    info["built_at"] = datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z"
    info["python"] = platform.python_version()
    sidecar = os.path.join(os.path.dirname(os.path.abspath(engine_path)), SIDECAR)
    write_bytes(sidecar, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return info


def build_from_settings(model_dir, settings, builder=None, trtexec=None, verbose=False):
    """Build the engine of ``model_dir`` from its engine settings with ``builder`` (default: the settings')."""
    builder = builder or settings.get("builder", "python")
    if builder not in BUILDERS:
        raise EdgeposeError("builder must be one of {}, got {!r}".format(", ".join(BUILDERS), builder))
    onnx_path = os.path.join(model_dir, settings["source"])
    engine_path = os.path.join(model_dir, settings["engine"])
    if builder == "trtexec":
        trtexec = trtexec or settings.get("trtexec") or "trtexec"
        facts = build_with_trtexec(settings, onnx_path, engine_path, trtexec)
        facts["gpu"] = gpu_name()
        return write_sidecar(engine_path, onnx_path, facts)
    calibration = settings.get("calibration")
    cache = os.path.join(model_dir, CALIB_CACHE)  # written by the calibrator, reused next time
    data = os.path.join(model_dir, CALIB_DATA) if calibration == CALIB_DATA else None
    shapes = settings.get("shapes")
    return build_engine(
        onnx_path,
        engine_path,
        settings.get("precision", "fp16"),
        int(settings.get("workspace_mib") or DEFAULT_WORKSPACE_MIB),
        cache if (calibration or settings.get("precision") == "int8") else None,
        data,
        int(shapes["max"][0]) if shapes else 1,
        verbose,
    )


def read_settings(model_dir):
    """The ``engine`` section of the folder's manifest.json (the settings resolved at export)."""
    path = os.path.join(model_dir, MANIFEST)
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise EdgeposeError("cannot read {}: {}".format(path, exc)) from None
    settings = manifest.get("engine") if isinstance(manifest, dict) else None
    if not settings:
        raise EdgeposeError("{} has no engine settings: export the folder for a TensorRT target".format(path))
    return manifest, dict(settings)


def main(argv=None, model_dir=None):
    """Command line: build the engine of ``model_dir`` from its manifest's settings (flags override them)."""
    ap = argparse.ArgumentParser(prog="build_engine.py", description="Build the folder's TensorRT engine.")
    ap.add_argument(
        "--builder", choices=BUILDERS, help="TensorRT's Python API or trtexec (default: the manifest's)"
    )
    ap.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="default: the manifest's")
    ap.add_argument("--workspace", type=int, help="builder workspace in MiB (default: the manifest's)")
    ap.add_argument("--trtexec", help="the trtexec binary (default: $TRTEXEC, else the manifest's)")
    ap.add_argument("--tensorrt-version", help="the TensorRT version here, for trtexec's flag names")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    model_dir = model_dir or os.getcwd()
    try:
        manifest, settings = read_settings(model_dir)
        verify_file(model_dir, manifest, settings["source"])
        for key, value in (("precision", args.precision), ("workspace_mib", args.workspace),
                           ("tensorrt_version", args.tensorrt_version)):  # fmt: skip
            if value is not None:
                settings[key] = value
        trtexec = args.trtexec or os.environ.get("TRTEXEC")
        info = build_from_settings(model_dir, settings, args.builder, trtexec, args.verbose)
    except EdgeposeError as exc:
        print("build_engine: error: {}".format(exc), file=sys.stderr)
        return 2
    engine = os.path.join(model_dir, settings["engine"])
    print(
        "wrote {} ({} {}, {}, {} s) and {}".format(
            engine,
            info.get("precision"),
            info.get("gpu"),
            info.get("builder"),
            info.get("build_seconds"),
            SIDECAR,
        )
    )
    print("time it: trtexec --loadEngine={}".format(engine))
    return 0
