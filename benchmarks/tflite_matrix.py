"""Every core model through every TFLite target and precision, as a user runs it: wall time and parity.

Each cell is one ``export_model(MODEL, TARGET, input_size=..., precision=..., calib=...)`` call in this
process (litert-torch conversion, quantisation, the parity gate, staging; random seeded weights,
16 crops of scikit-image photos as calibration). A cell that fails records its one-line error. The
JSON is rewritten after every cell, so an interrupted run keeps what it measured.
When every cell is exported, each distinct model.tflite is timed in ai-edge-litert (XNNPACK, 1 thread
by default: the other core is usually busy here) in ``--rounds`` interleaved rounds of ``--runs`` calls;
median and p10 over all rounds (identical files, e.g. rpi4 and snapdragon855 int8, are timed once).
Writes ``<out>/<stem>.json`` and ``<out>/<stem>.md`` (``--stem``, default ``tflite_matrix``: a partial run
can go beside the full table instead of replacing it).

    .venv/bin/python benchmarks/tflite_matrix.py [--models litepose-xs ...] [--cells rpi4:fp32 ...] [--rounds 3] [--runs 5] [--out benchmarks/results] [--stem tflite_matrix]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import save_result

from edgepose.atomic import write_text
from edgepose.device.machine import host_info
from edgepose.errors import EdgeposeError
from edgepose.export.calibration import write_sample_images
from edgepose.export.pipeline import export_model

# The papers' input sizes (LitePose: XS 256, S/M 448, L 512; Lite-HRNet: 256x192 and 384x288).
CASES = (
    ("litepose-xs", "256x256"),
    ("litepose-s", "448x448"),
    ("litepose-m", "448x448"),
    ("litepose-l", "512x512"),
    ("litehrnet-18", "256x192"),
    ("litehrnet-18", "384x288"),
    ("litehrnet-30", "256x192"),
    ("litehrnet-30", "384x288"),
    ("litehrnet-naive-18", "256x192"),
    ("litehrnet-wider-naive-18", "256x192"),
)
CELLS = ("rpi4:fp32", "rpi4:fp16", "rpi4:int8", "snapdragon855:fp16", "snapdragon855:int8")


def export_cell(model: str, size: str, target: str, precision: str, calib: Path, work: Path) -> dict:
    """One export; its wall time, file size, parity figures and the gate it passed (or its error)."""
    row = {"model": model, "input": size, "target": target, "precision": precision}
    start = time.perf_counter()
    try:
        folder = export_model(
            model,
            target,
            input_size=size,
            precision=precision,
            calib=calib,
            out=work / f"{model}-{size}-{target}-{precision}",
        )
    except EdgeposeError as exc:
        row.update(wall_s=round(time.perf_counter() - start, 1), error=str(exc))
        return row
    row["wall_s"] = round(time.perf_counter() - start, 1)
    row["folder"] = folder  # for the timing at the end; not written to the JSON
    manifest = json.loads((folder / "manifest.json").read_text())
    parity = manifest["parity"]
    row["file_mb"] = round((folder / "model.tflite").stat().st_size / 1e6, 2)
    keys = ("max_abs_diff", "max_abs_diff_limit", "fp32_noise_floor", "sqnr_db", "peak_agreement")
    row["outputs"] = {name: {k: f[k] for k in keys if k in f} for name, f in parity["outputs"].items()}
    row["thresholds"] = parity["thresholds"]
    if "int8_reference" in parity:
        row["onnxruntime_int8_sqnr_db"] = {
            n: f["sqnr_db"] for n, f in parity["int8_reference"]["outputs"].items()
        }
    if "fp16_weights_in_pytorch" in parity:
        row["pytorch_fp16_sqnr_db"] = {n: f["sqnr_db"] for n, f in parity["fp16_weights_in_pytorch"].items()}
    row["depthwise_split"] = manifest["export"].get("depthwise_split")
    return row


def time_cells(rows: list[dict], folders: list[Path | None], threads: int, rounds: int, runs: int) -> None:
    """Latency of every exported file (interleaved rounds, one interpreter at a time), into ``row["latency"]``."""
    from ai_edge_litert.interpreter import Interpreter

    files: dict[str, bytes] = {}
    for row, folder in zip(rows, folders):
        if folder is not None:
            data = (folder / "model.tflite").read_bytes()
            row["sha256"] = hashlib.sha256(data).hexdigest()
            files.setdefault(row["sha256"], data)
    samples: dict[str, list[float]] = {key: [] for key in files}
    for _ in range(rounds):
        for key, data in files.items():
            interpreter = Interpreter(model_content=data, num_threads=threads)
            interpreter.allocate_tensors()
            detail = interpreter.get_input_details()[0]
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
            interpreter.invoke()
            for _ in range(runs):
                t0 = time.perf_counter()
                interpreter.invoke()
                samples[key].append((time.perf_counter() - t0) * 1e3)
            del interpreter
    for row in rows:
        if "sha256" in row:
            values = samples[row["sha256"]]
            row["latency"] = {
                "threads": threads,
                "median_ms": statistics.median(values),
                "p10_ms": float(np.percentile(values, 10)),
            }


def cell_text(row: dict) -> str:
    if "error" in row:
        return f"fails: {row['error']}"
    sqnr = " / ".join(
        f"{f['sqnr_db']:.1f}" if f["sqnr_db"] is not None else "exact" for f in row["outputs"].values()
    )
    peaks = " / ".join(f"{f['peak_agreement']:.2f}" for f in row["outputs"].values())
    text = f"{sqnr} dB, peaks {peaks}"
    if row["precision"] == "fp32":
        text = "max " + " / ".join(f"{f['max_abs_diff']:.1e}" for f in row["outputs"].values()) + ", " + text
    if "onnxruntime_int8_sqnr_db" in row:
        ort_sqnr = " / ".join(f"{v:.1f}" for v in row["onnxruntime_int8_sqnr_db"].values())
        text += f" (below the bar; onnxruntime int8: {ort_sqnr} dB)"
    return text


def markdown(result: dict) -> str:
    lines = [
        "# Every core model, every TFLite target and precision (benchmarks/tflite_matrix.py)",
        "",
        f"{result['date']}, {result['host']['cpu']} ({result['host']['cores']} cores, 1-min load "
        f"{result['host'].get('load_avg_1m', '?')} at the start), random seeded weights, "
        f"{result['calibration_images']} calibration crops; wall = one export_model call in a warm process.",
        "",
        f"Latency: XNNPACK, {result.get('threads', 1)} thread, median (p10) of {result.get('rounds', '?')} interleaved "
        f"rounds x {result.get('runs', '?')} calls, 1-min load {result.get('load_timing_start', '?')} at the start "
        f"and {result.get('load_timing_end', '?')} at the end of the timing; every LitePose file has its 7x7 "
        "depthwise convs split for XNNPACK (manifest `export.depthwise_split`).",
        "",
        "| model | input | target | precision | wall | file | latency ms | parity vs PyTorch (per output) |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        size = f"{r['file_mb']:.2f} MB" if "file_mb" in r else ""
        lat = r.get("latency")
        latency = f"{lat['median_ms']:.1f} ({lat['p10_ms']:.1f})" if lat else ""
        lines.append(
            f"| {r['model']} | {r['input']} | {r['target']} | {r['precision']} | {r['wall_s']:.0f} s | {size} "
            f"| {latency} | {cell_text(r)} |"
        )
    ok = sum("error" not in r for r in result["rows"])
    lines += [
        "",
        f"{ok} of {len(result['rows'])} exports passed their parity gate.",
        "",
        "- fp32 max abs diffs above 1e-4 passed under the recipes' allowance: up to `fp32_noise_factor` (4) x",
        "  PyTorch's own fp32-vs-fp64 noise on the photo (recorded per output as `fp32_noise_floor`).",
        "- int8 cells marked 'below the bar' passed the relative gate: no worse than onnxruntime's int8 of the",
        "  same network by 3 dB; the manifest carries both figures and a warning (docs/tflite.md).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="only these models (default: all of CASES)")
    parser.add_argument("--cells", nargs="*", default=list(CELLS), help="target:precision pairs")
    parser.add_argument("--calib-images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="XNNPACK threads for the latency column")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (0: no latency)")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per file per round")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--stem", default="tflite_matrix", help="result file names (<stem>.json, <stem>.md)")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.models or c[0] in args.models]
    result = {
        "date": datetime.date.today().isoformat(),
        "host": host_info(),
        "calibration_images": args.calib_images,
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="edgepose-matrix-") as tmp:
        work = Path(tmp)
        calib = write_sample_images(work / "calib", count=args.calib_images)
        folders: list[Path | None] = []
        for model, size in cases:
            for cell in args.cells:
                target, precision = cell.split(":")
                row = export_cell(model, size, target, precision, calib, work)
                folders.append(row.pop("folder", None))
                result["rows"].append(row)
                print(f"{model} {size} {cell}: {row['wall_s']:.0f} s, {cell_text(row)}", flush=True)
                write_text(args.out / f"{args.stem}.json", json.dumps(result, indent=2) + "\n")
        if args.rounds > 0:
            result.update(threads=args.threads, rounds=args.rounds, runs=args.runs)
            result["load_timing_start"] = round(os.getloadavg()[0], 2)
            time_cells(result["rows"], folders, args.threads, args.rounds, args.runs)
            result["load_timing_end"] = round(os.getloadavg()[0], 2)
    save_result(args.out, args.stem, result, markdown(result))


if __name__ == "__main__":
    main()
