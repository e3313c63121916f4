"""onnxruntime (the exported, BN-folded, simplified model.onnx) against PyTorch eager, on this machine's CPU.

For each model: export it with the ``onnx`` recipe (random seeded weights: latency does not depend
on the values), then time batch-1 inference on the parity photo with the same thread count in both
runtimes: ``warmup`` untimed calls, then ``runs`` timed calls, median reported (plus mean, p90,
min, max). Writes ``<out>/onnx_vs_torch.json`` (every figure, machine, versions, protocol) and
``<out>/onnx_vs_torch.md`` (the table).

    .venv/bin/python benchmarks/onnx_vs_torch.py [--runs 50] [--warmup 10] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from bench_common import save_result, time_onnx, timing_protocol

from edgepose.device.machine import host_info
from edgepose.device.timing import summarize, time_calls
from edgepose.export.parity import sample_input
from edgepose.export.pipeline import export_model
from edgepose.models import build_model
from edgepose.tables import Column, format_table

# (model, H, W): the issue's four cases at the papers' input sizes.
CASES = (
    ("litepose-xs", 256, 256),
    ("litepose-s", 448, 448),
    ("litehrnet-18", 256, 192),
    ("litehrnet-30", 256, 192),
)


def time_torch(name: str, h: int, w: int, threads: int, runs: int, warmup: int) -> dict:
    """PyTorch eager (fp32, no_grad, unfolded BN: the model as users run it) latency."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.from_numpy(sample_input((h, w)))
    with torch.no_grad():
        times, _ = time_calls(lambda: model(x), runs, warmup, label=f"torch {name}")
    return summarize(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", help="comma-separated subset of: " + ", ".join(c[0] for c in CASES))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    wanted = set(args.models.split(",")) if args.models else {c[0] for c in CASES}

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name, h, w in (c for c in CASES if c[0] in wanted):
            folder = export_model(name, "onnx", input_size=(h, w), out=Path(tmp) / name)
            manifest = json.loads((folder / "manifest.json").read_text())
            convs = sum(n.op_type == "Conv" for n in onnx.load(str(folder / "model.onnx")).graph.node)
            t = time_torch(name, h, w, args.threads, args.runs, args.warmup)
            o = time_onnx(folder / "model.onnx", h, w, args.threads, args.runs, args.warmup)
            rows.append(
                {
                    "model": name,
                    "input": f"{h}x{w}",
                    "params": manifest["model"]["params"],
                    "onnx_conv_nodes": convs,
                    "torch": t,
                    "onnxruntime": o,
                    "torch_ms": t["median_ms"],
                    "ort_ms": o["median_ms"],
                    "speedup": t["median_ms"] / o["median_ms"],
                    "torch_min": t["min_ms"],
                    "ort_min": o["min_ms"],
                }
            )
    result = {
        "benchmark": "onnx_vs_torch",
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": host_info(),
        # Other processes compete for the cores: a load above the core count inflates the torch numbers most
        # (its OpenMP threads spin-wait on each other), so the load is recorded next to them.
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "python": platform.python_version(),
        },
        "protocol": {
            **timing_protocol(args),
            "input": "astronaut photo (skimage), letterboxed",
            "weights": "random, seeded (torch.manual_seed(0))",
            "torch": "eager, fp32, no_grad, BN not folded",
            "onnxruntime": "CPUExecutionProvider, ORT_ENABLE_ALL, BN folded, onnxslim, opset 17",
        },
        "results": rows,
    }
    out = Path(args.out)
    columns = [
        Column("model"),
        Column("input", "input HxW"),
        Column("torch_ms", "PyTorch eager (ms)", align="right", fmt="{:.2f}".format),
        Column("ort_ms", "onnxruntime (ms)", align="right", fmt="{:.2f}".format),
        Column("speedup", "speed-up", align="right", fmt="{:.2f}x".format),
        Column("torch_min", "PyTorch min (ms)", align="right", fmt="{:.2f}".format),
        Column("ort_min", "onnxruntime min (ms)", align="right", fmt="{:.2f}".format),
        Column("onnx_conv_nodes", "ONNX Conv nodes", align="right"),
    ]
    machine = result["machine"]
    text = (
        f"# onnxruntime vs PyTorch eager (CPU, {args.threads} threads, batch 1, median of {args.runs} runs"
        f" after {args.warmup} warm-up)\n\n"
        f"Machine: {machine['cpu']} ({machine['cores']} cores), {machine['os']}; torch {torch.__version__},"
        f" onnxruntime {ort.__version__}, Python {platform.python_version()}; {result['date']}; load average"
        f" {load_before[0]:.1f} before, {result['load_average_1_5_15']['after'][0]:.1f} after (1 min).\n\n"
        + format_table(rows, columns, style="md")
        + "\n\nReproduce: `.venv/bin/python benchmarks/onnx_vs_torch.py`\n"
    )
    save_result(out, "onnx_vs_torch", result, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
