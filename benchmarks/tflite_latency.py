"""TFLite fp32 / fp16 / int8 (ai-edge-litert, XNNPACK) next to onnxruntime, plus the rpi4 export wall time.

For each model (random seeded weights: latency does not depend on the values) the rpi4 export is
run once in fp32 (``export_model``: litert-torch, parity gate); fp16 and int8 are made from that
same fp32 flatbuffer by the functions the exporter uses (int8 calibrated on 16 crops of
scikit-image photos); the ONNX comes from the ``onnx`` recipe. Each file is timed batch 1 on the
parity photo with the same thread count: ``warmup`` untimed calls, then ``runs`` timed, median
reported. int8 is also timed without the default XNNPACK delegate (TFLite's builtin kernels),
because XNNPACK's x86 int8 path is far slower here (see docs/tflite.md). Finally
``edgepose export litepose-s --target rpi4`` is timed end to end as a subprocess (goal <= 60 s).
Writes ``<out>/tflite_latency.json`` and ``<out>/tflite_latency.md``.

    .venv/bin/python benchmarks/tflite_latency.py [--runs 50] [--warmup 10] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from ai_edge_litert import __version__ as litert_version
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from bench_common import save_result, time_onnx, timing_protocol

from edgepose.device.machine import host_info
from edgepose.device.timing import summarize, time_calls
from edgepose.export import tflite as tfl
from edgepose.export.calibration import load_calibration, write_sample_images
from edgepose.export.parity import sample_input
from edgepose.export.pipeline import export_model
from edgepose.models import get_spec
from edgepose.tables import Column, format_table

CASES = (("litepose-xs", 256, 256), ("litepose-s", 448, 448), ("litehrnet-18", 256, 192))


def time_tflite(
    model: bytes, h: int, w: int, threads: int, runs: int, warmup: int, cap_s: float, xnnpack: bool = True
) -> dict:
    """Interpreter latency (XNNPACK by default, or TFLite's builtin kernels only); an error is recorded."""
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_content=model, num_threads=threads, experimental_op_resolver_type=resolver
    )
    try:
        interpreter.allocate_tensors()
    except RuntimeError as exc:  # XNNPACK refusing a graph: a result worth recording, not a crash
        return {"error": str(exc).splitlines()[0], "median_ms": float("nan")}
    detail = interpreter.get_input_details()[0]
    x = sample_input((h, w), layout="NHWC")
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        x = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], x)
    times, capped = time_calls(interpreter.invoke, runs, warmup, max_seconds=cap_s, progress=False)
    return {**summarize(times), "runs": len(times), "capped": capped}


def bench_model(name: str, h: int, w: int, tmp: Path, calib: Path, args: argparse.Namespace) -> dict:
    """Export one model (TFLite fp32 + ONNX), derive fp16/int8, time all of them."""
    t0 = time.perf_counter()
    folder = export_model(name, "rpi4", input_size=(h, w), out=tmp / f"{name}-tflite")
    export_s = time.perf_counter() - t0
    fp32 = (folder / tfl.MODEL_FILE).read_bytes()
    images = load_calibration(calib, (h, w), get_spec(name).kind).transpose(0, 2, 3, 1)
    models = {"fp32": fp32, "fp16": tfl.quantize_fp16(fp32), "int8": tfl.quantize_int8(fp32, images)}
    onnx_dir = export_model(name, "onnx", input_size=(h, w), out=tmp / f"{name}-onnx")
    row: dict = {"model": name, "input": f"{h}x{w}", "tflite_export_s": export_s}
    timing = (args.threads, args.runs, args.warmup)
    for precision, model in models.items():
        row[f"tflite_{precision}"] = time_tflite(model, h, w, *timing, args.cap)
        row[f"{precision}_ms"] = row[f"tflite_{precision}"]["median_ms"]
        row[f"{precision}_mb"] = len(model) / 1e6
    row["tflite_int8_builtin"] = time_tflite(models["int8"], h, w, *timing, args.cap, xnnpack=False)
    row["int8_builtin_ms"] = row["tflite_int8_builtin"]["median_ms"]
    row["onnxruntime"] = time_onnx(onnx_dir / "model.onnx", h, w, *timing)
    row["ort_ms"] = row["onnxruntime"]["median_ms"]
    print(f"{name}: " + ", ".join(f"{k} {row[k]:.1f}" for k in ("fp32_ms", "fp16_ms", "int8_ms", "ort_ms")))
    return row


def time_cli_export(tmp: Path) -> float:
    """Wall time of `edgepose export litepose-s --target rpi4` (a fresh process, as a user runs it)."""
    command = [
        sys.executable,
        "-m",
        "edgepose",
        "export",
        "litepose-s",
        "--target",
        "rpi4",
        "--out",
        str(tmp / "cli"),
    ]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", help="comma-separated subset of: " + ", ".join(c[0] for c in CASES))
    ap.add_argument("--cap", type=float, default=60.0, help="stop timing one file after this many seconds")
    ap.add_argument("--no-cli", action="store_true", help="skip timing the litepose-s CLI export")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    wanted = set(args.models.split(",")) if args.models else {c[0] for c in CASES}

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        calib = write_sample_images(tmp / "calib")
        rows = [bench_model(name, h, w, tmp, calib, args) for name, h, w in CASES if name in wanted]
        cli_s = None if args.no_cli else time_cli_export(tmp)
    result = {
        "benchmark": "tflite_latency",
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": {**host_info(), "load_average_1m": os.getloadavg()[0]},
        "versions": {
            "ai-edge-litert": litert_version,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
        },
        "protocol": {
            **timing_protocol(args),
            "input": "astronaut photo (skimage), letterboxed; NHWC for TFLite, NCHW for ONNX",
            "weights": "random, seeded (torch.manual_seed(0))",
            "tflite": "ai-edge-litert Interpreter, default XNNPACK delegate; int8_builtin: without it",
            "int8_calibration": "16 crops of skimage astronaut/camera/coffee",
            "cap_s": args.cap,
        },
        "export_litepose_s_rpi4_s": cli_s,
        "results": rows,
    }
    out = Path(args.out)
    ms = "{:.1f}".format  # nan = the interpreter refused the file (see the JSON for the error)
    columns = [
        Column("model"),
        Column("input", "input HxW"),
        Column("fp32_ms", "TFLite fp32 (ms)", align="right", fmt=ms),
        Column("fp16_ms", "TFLite fp16 (ms)", align="right", fmt=ms),
        Column("int8_ms", "TFLite int8 (ms)", align="right", fmt=ms),
        Column("int8_builtin_ms", "int8, no XNNPACK (ms)", align="right", fmt=ms),
        Column("ort_ms", "onnxruntime fp32 (ms)", align="right", fmt=ms),
        Column("fp32_mb", "fp32 MB", align="right", fmt="{:.2f}".format),
        Column("int8_mb", "int8 MB", align="right", fmt="{:.2f}".format),
    ]
    machine = result["machine"]
    cli = f"{cli_s:.1f} s" if cli_s is not None else "not measured"
    text = (
        f"# TFLite (ai-edge-litert {litert_version}, XNNPACK) vs onnxruntime {ort.__version__}"
        f" (CPU, {args.threads} threads, batch 1, median of {args.runs} runs after {args.warmup} warm-up)\n\n"
        f"Machine: {machine['cpu']} ({machine['cores']} cores, 1-min load {machine['load_average_1m']:.1f}),"
        f" {machine['os']}; Python {platform.python_version()}; {result['date']}.\n\n"
        + format_table(rows, columns, style="md")
        + f"\n\n`edgepose export litepose-s --target rpi4` wall time: {cli}.\n"
        + "\nReproduce: `.venv/bin/python benchmarks/tflite_latency.py`\n"
    )
    save_result(out, "tflite_latency", result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
