"""Build a TensorRT engine from the exported model.onnx, on the device that will run it.

Runs on a Jetson Nano's stock Python 3.6 with only TensorRT's own bindings and numpy (pycuda only
for INT8 calibration from images). Supports the TensorRT 8.x API (JetPack 4.6: 8.0/8.2) and the
>= 8.5 / 10.x API. Writes a plain ``model.engine`` (the serialized plan: ``trtexec --loadEngine``
reads it) and an ``engine.json`` sidecar (TensorRT version, precision, GPU, onnx sha256, build time).
INT8 on a GPU without fast INT8 (the Nano's Maxwell) is an error, never a silent FP32 engine.

    python3 build_engine.py [--precision fp16|fp32|int8] [--workspace MiB] [--calib-cache FILE]
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

from .errors import EdgeposeError
from .manifest import sha256_of, verify_file

DEFAULT_WORKSPACE_MIB = 256  # the Nano has 4 GB shared by CPU and GPU; big workspaces get OOM-killed


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


def _write_atomic(path, data):
    tmp = "{}.{}.tmp".format(path, os.getpid())
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
                _write_atomic(cache_path, bytes(cache))

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
    _write_atomic(engine_path, bytes(memoryview(plan)))
    info = {
        "engine": os.path.basename(engine_path),
        "tensorrt": trt.__version__,
        "precision": precision,
        "gpu": gpu,
        "platform_has_fast_fp16": fast_fp16,
        "platform_has_fast_int8": fast_int8,
        "onnx": os.path.basename(onnx_path),
        "onnx_sha256": sha256_of(onnx_path),
        "engine_sha256": sha256_of(engine_path),
        "workspace_mib": int(workspace_mib),
        "inputs": [{"name": t.name, "shape": s} for t, s in zip(inputs, shapes)],
        "max_batch": max_batch,
        "calibration": os.path.basename(calib_cache or calib_data or "") or None,
        "built_at": datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z",
        "build_seconds": round(seconds, 1),
        "python": platform.python_version(),
    }
    sidecar = os.path.join(os.path.dirname(os.path.abspath(engine_path)), "engine.json")
    _write_atomic(sidecar, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return info


def _manifest(model_dir):
    path = os.path.join(model_dir, "manifest.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def main(argv=None, model_dir=None):
    """Command line: build model.engine in ``model_dir`` with the settings from its manifest."""
    model_dir = model_dir or os.getcwd()
    manifest = _manifest(model_dir)
    options = manifest.get("export", {}).get("recipe", {}).get("options", {})

    def here(name):
        path = os.path.join(model_dir, name)
        return path if os.path.isfile(path) else None

    ap = argparse.ArgumentParser(prog="build_engine.py", description="Build model.engine with TensorRT.")
    ap.add_argument("--onnx", default=os.path.join(model_dir, "model.onnx"))
    ap.add_argument("--engine", default=os.path.join(model_dir, "model.engine"))
    ap.add_argument(
        "--precision", choices=("fp32", "fp16", "int8"), default=manifest.get("precision", "fp16")
    )
    ap.add_argument(
        "--workspace",
        type=int,
        default=int(options.get("workspace_mib", DEFAULT_WORKSPACE_MIB)),
        help="builder workspace in MiB",
    )
    ap.add_argument("--calib-cache", default=here("calib.cache"), help="TensorRT INT8 calibration cache")
    ap.add_argument("--calib-data", default=here("calib.npy"), help="preprocessed calibration batches (.npy)")
    ap.add_argument(
        "--max-batch",
        type=int,
        default=int(options.get("max_batch", 4)),
        help="largest batch for a dynamic-batch ONNX",
    )
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    try:
        if manifest and os.path.abspath(args.onnx) == os.path.abspath(os.path.join(model_dir, "model.onnx")):
            verify_file(model_dir, manifest, "model.onnx")
        cache = args.calib_cache
        if args.precision == "int8" and cache is None and args.calib_data:
            cache = os.path.join(model_dir, "calib.cache")  # written by the calibrator, reused next time
        info = build_engine(
            args.onnx,
            args.engine,
            args.precision,
            args.workspace,
            cache,
            args.calib_data,
            args.max_batch,
            args.verbose,
        )
    except EdgeposeError as exc:
        print("build_engine: error: {}".format(exc), file=sys.stderr)
        return 2
    print(
        "wrote {} ({} {}, TensorRT {}, {:.1f} s) and engine.json".format(
            args.engine, info["precision"], info["gpu"], info["tensorrt"], info["build_seconds"]
        )
    )
    print("time it: trtexec --loadEngine={}".format(args.engine))
    return 0
