"""TFLite fp32 / fp16 / int8 (ai-edge-litert, XNNPACK) next to onnxruntime, plus the rpi4 export wall time.

For each model (random seeded weights: latency does not depend on the values) the rpi4 export is
run once in fp32 (``export_model``: BN folding, the depthwise split, litert-torch, parity gate); fp16
and int8 are made from that same fp32 flatbuffer by the functions the exporter uses (int8 calibrated
on 16 crops of scikit-image photos); the ONNX comes from the ``onnx`` recipe. int8 is also timed
without the default XNNPACK delegate (TFLite's builtin kernels).

Protocol for a shared 2-core host: every file is timed at each of ``--threads`` in interleaved
rounds (each file and thread count once per round, ``--runs`` calls after ``--warmup``), so that
load changes hit every column alike; the median and p10 over all rounds are reported, with the
1-min load average at the start and the end. Compare ratios within one run. Finally
``edgepose export litepose-s --target rpi4`` is timed end to end as a subprocess (goal <= 60 s).
Writes ``<out>/tflite_latency.json`` and ``<out>/tflite_latency.md``.

    .venv/bin/python benchmarks/tflite_latency.py [--threads 1,2] [--rounds 3] [--runs 10] [--warmup 2] [--models ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from ai_edge_litert import __version__ as litert_version
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from bench_common import save_result

from edgepose.device.machine import host_info
from edgepose.export import tflite as tfl
from edgepose.export.calibration import load_calibration, write_sample_images
from edgepose.export.parity import sample_input
from edgepose.export.pipeline import export_model
from edgepose.models import get_spec

CASES = (
    ("litepose-xs", 256, 256),
    ("litepose-s", 448, 448),
    ("litepose-m", 448, 448),
    ("litepose-l", 512, 512),
    ("litehrnet-18", 256, 192),
)
KINDS = ("fp32", "fp16", "int8", "int8_builtin", "ort")


def tflite_runner(model: bytes, h: int, w: int, threads: int, xnnpack: bool = True) -> Callable[[], None]:
    """A ready-to-call interpreter (XNNPACK by default, or TFLite's builtin kernels only)."""
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_content=model, num_threads=threads, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = sample_input((h, w), layout="NHWC")
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        x = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], x)
    return interpreter.invoke


def onnx_runner(path: Path, h: int, w: int, threads: int) -> Callable[[], None]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": sample_input((h, w))}
    return lambda: session.run(None, feed)


def prepare(name: str, h: int, w: int, tmp: Path, calib: Path) -> dict:
    """Export one model (TFLite fp32 + ONNX) and derive fp16/int8; returns the files and export facts."""
    t0 = time.perf_counter()
    folder = export_model(name, "rpi4", input_size=(h, w), out=tmp / f"{name}-tflite")
    export_s = time.perf_counter() - t0
    fp32 = (folder / tfl.MODEL_FILE).read_bytes()
    images = load_calibration(calib, (h, w), get_spec(name).kind).transpose(0, 2, 3, 1)
    files = {"fp32": fp32, "fp16": tfl.quantize_fp16(fp32), "int8": tfl.quantize_int8(fp32, images)}
    onnx_dir = export_model(name, "onnx", input_size=(h, w), out=tmp / f"{name}-onnx")
    print(f"{name}: exported ({export_s:.1f} s)", flush=True)
    return {
        "name": name,
        "h": h,
        "w": w,
        "export_s": export_s,
        "files": files,
        "onnx": onnx_dir / "model.onnx",
    }


def runner(entry: dict, kind: str, threads: int) -> Callable[[], None]:
    h, w, files = entry["h"], entry["w"], entry["files"]
    if kind == "ort":
        return onnx_runner(entry["onnx"], h, w, threads)
    if kind == "int8_builtin":
        return tflite_runner(files["int8"], h, w, threads, xnnpack=False)
    return tflite_runner(files[kind], h, w, threads)


def time_interleaved(entries: list[dict], args: argparse.Namespace) -> dict[tuple, list[float]]:
    """Every (model, kind, threads) once per round: ``warmup`` calls, then ``runs`` timed (ms).

    A file whose calls take longer than ``cap`` seconds per round gets fewer timed calls (at least one).
    """
    samples: dict[tuple, list[float]] = {}
    for r in range(args.rounds):
        for entry in entries:
            for kind in KINDS:
                for threads in args.threads:
                    key = (entry["name"], kind, threads)
                    try:
                        call = runner(entry, kind, threads)
                    except RuntimeError as exc:  # XNNPACK refusing a graph: recorded, not a crash
                        samples[key] = [float("nan")]
                        entry.setdefault("errors", {})[f"{kind}_{threads}t"] = str(exc).splitlines()[0]
                        continue
                    for _ in range(args.warmup):
                        call()
                    start = time.perf_counter()
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        call()
                        samples.setdefault(key, []).append((time.perf_counter() - t0) * 1e3)
                        if time.perf_counter() - start > args.cap / args.rounds:
                            break
                    del call
        print(f"round {r + 1}/{args.rounds} done (1-min load {os.getloadavg()[0]:.2f})", flush=True)
    return samples


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


def stats(values: list[float]) -> dict:
    if any(np.isnan(values)):
        return {"median_ms": float("nan"), "p10_ms": float("nan"), "runs": 0}
    return {
        "median_ms": statistics.median(values),
        "p10_ms": float(np.percentile(values, 10)),
        "runs": len(values),
    }


def markdown(result: dict) -> str:
    def cell(figures: dict) -> str:
        return f"{figures['median_ms']:.1f} ({figures['p10_ms']:.1f})"

    head = "| model | input HxW | threads | TFLite fp32 | TFLite fp16 | TFLite int8 | int8, no XNNPACK | onnxruntime fp32 | int8 / fp32 | fp32 / onnxruntime |"
    lines = [
        f"# TFLite (ai-edge-litert {result['versions']['ai-edge-litert']}, XNNPACK) vs onnxruntime "
        f"{result['versions']['onnxruntime']} (CPU, batch 1)",
        "",
        f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores), 1-min load "
        f"{result['load_start']:.2f} at the start and {result['load_end']:.2f} at the end, "
        f"{result['machine']['os']}; Python {result['versions']['python']}; {result['date']}.",
        f"ms, median (p10) over {result['protocol']['rounds']} interleaved rounds x up to "
        f"{result['protocol']['runs']} calls after {result['protocol']['warmup']} warm-up; random seeded weights; "
        "the exported files (BN folded, 7x7 depthwise split for XNNPACK).",
        "",
        head,
        "|---|---|---:|" + "---:|" * 7,
    ]
    for row in result["results"]:
        for threads in result["protocol"]["threads"]:
            t = row["timings"][str(threads)]
            lines.append(
                f"| {row['model']} | {row['input']} | {threads} | "
                + " | ".join(cell(t[k]) for k in KINDS)
                + f" | {t['int8']['median_ms'] / t['fp32']['median_ms']:.2f}"
                + f" | {t['fp32']['median_ms'] / t['ort']['median_ms']:.2f} |"
            )
    sizes = ", ".join(f"{r['model']} {r['fp32_mb']:.2f} / {r['int8_mb']:.2f} MB" for r in result["results"])
    cli = result["export_litepose_s_rpi4_s"]
    lines += [
        "",
        f"fp32 / int8 file sizes: {sizes}.",
        "",
        f"`edgepose export litepose-s --target rpi4` wall time: {f'{cli:.1f} s' if cli else 'not measured'}.",
        "",
        f"Reproduce: `{result['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--models", help="comma-separated subset of: " + ", ".join(c[0] for c in CASES))
    ap.add_argument(
        "--cap", type=float, default=60.0, help="timed seconds per file and thread count, all rounds"
    )
    ap.add_argument("--no-cli", action="store_true", help="skip timing the litepose-s CLI export")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    wanted = set(args.models.split(",")) if args.models else {c[0] for c in CASES}
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        calib = write_sample_images(tmp / "calib")
        entries = [prepare(name, h, w, tmp, calib) for name, h, w in CASES if name in wanted]
        samples = time_interleaved(entries, args)
        cli_s = None if args.no_cli else time_cli_export(tmp)
    rows = []
    for e in entries:
        timings = {
            str(t): {kind: stats(samples[(e["name"], kind, t)]) for kind in KINDS} for t in args.threads
        }
        rows.append(
            {
                "model": e["name"],
                "input": f"{e['h']}x{e['w']}",
                "tflite_export_s": e["export_s"],
                "fp32_mb": len(e["files"]["fp32"]) / 1e6,
                "int8_mb": len(e["files"]["int8"]) / 1e6,
                "timings": timings,
                **({"errors": e["errors"]} if "errors" in e else {}),
            }
        )
    flags = f"--threads {','.join(map(str, args.threads))} --rounds {args.rounds} --runs {args.runs}"
    flags += f" --warmup {args.warmup}" + (f" --models {args.models}" if args.models else "")
    result = {
        "benchmark": "tflite_latency",
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": host_info(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "versions": {
            "ai-edge-litert": litert_version,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
        },
        "protocol": {
            "threads": args.threads,
            "rounds": args.rounds,
            "runs": args.runs,
            "warmup": args.warmup,
            "batch": 1,
            "statistic": "median and p10 over all rounds",
            "input": "astronaut photo (skimage), letterboxed; NHWC for TFLite, NCHW for ONNX",
            "weights": "random, seeded (torch.manual_seed(0))",
            "tflite": "ai-edge-litert Interpreter, default XNNPACK delegate; int8_builtin: without it",
            "int8_calibration": "16 crops of skimage astronaut/camera/coffee",
            "cap_s": args.cap,
        },
        "command": f".venv/bin/python benchmarks/tflite_latency.py {flags}",
        "export_litepose_s_rpi4_s": cli_s,
        "results": rows,
    }
    save_result(Path(args.out), "tflite_latency", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
