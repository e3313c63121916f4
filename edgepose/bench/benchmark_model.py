"""TFLite's ``benchmark_model``: the command line for a device and a parser for its output.

Times are printed in microseconds, sometimes in scientific notation (``avg=2.95034e+06``); lines may
carry an ``INFO:`` or logcat prefix. Delegate coverage ("Replacing X out of Y node(s) with delegate")
and fallback warnings are parsed too, so a delegate that silently ran part of the graph on the CPU shows.
"""

from __future__ import annotations

import re
from typing import Any

from edgepose.errors import EdgeposeError

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_COUNT = re.compile(r"count=(\d+)((?:\s+\w+=" + _NUM + r")+)")
_KV = re.compile(r"(\w+)=" + _NUM)
_TIMINGS = re.compile(r"Inference timings in us:\s*(.*)$")
_TIMING_ITEM = re.compile(r"([A-Za-z][A-Za-z ()]*?):\s*" + _NUM)
_PEAK = re.compile(r"Peak memory footprint \(MB\):\s*init=" + _NUM + r"\s+overall=" + _NUM)
_DELTA = re.compile(
    r"Memory footprint delta from the start of the tool \(MB\):\s*init=" + _NUM + r"\s+overall=" + _NUM
)
_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\)")
_THREADS = re.compile(r"Num threads:\s*\[(-?\d+)\]")
_GRAPH = re.compile(r"Graph:\s*\[([^\]]*)\]")
_FALLBACK = ("will not be executed by the delegate", "not supported by", "will run on the CPU")
DELEGATES = ("xnnpack", "gpu", "nnapi", "hexagon", "none")


def _us_to_ms(value: str) -> float:
    return float(value) / 1000.0


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Parse benchmark_model's log; times come back in **ms** (the tool prints µs)."""
    out: dict[str, Any] = {"delegates": [], "fallback_warnings": []}
    runs = []
    for line in text.splitlines():
        if m := _COUNT.search(line):
            fields = dict(_KV.findall(m.group(2)))
            runs.append((int(m.group(1)), fields))
        if m := _TIMINGS.search(line):
            items = {k.strip(): _us_to_ms(v) for k, v in _TIMING_ITEM.findall(m.group(1))}
            out["init_ms"] = items.get("Init")
            out["first_inference_ms"] = items.get("First inference")
            out["warmup_avg_ms"] = items.get("Warmup (avg)")
            out["inference_avg_ms"] = items.get("Inference (avg)")
        if m := _PEAK.search(line):
            out["peak_memory_mb"] = {"init": float(m.group(1)), "overall": float(m.group(2))}
        if m := _DELTA.search(line):
            out["memory_delta_mb"] = {"init": float(m.group(1)), "overall": float(m.group(2))}
        if m := _REPLACING.search(line):
            out["delegates"].append(
                {"delegate": m.group(3), "replaced_nodes": int(m.group(1)), "total_nodes": int(m.group(2))}
            )
        if m := _THREADS.search(line):
            out["threads"] = int(m.group(1))
        if m := _GRAPH.search(line):
            out["graph"] = m.group(1)
        if any(marker in line for marker in _FALLBACK):
            out["fallback_warnings"].append(line.strip())
    if not runs:
        raise EdgeposeError(
            "benchmark_model output has no timing line (count=... avg=...): did the run fail?"
        )
    # The tool prints the warm-up summary first, then the timed runs.
    count, fields = runs[-1]
    out["runs"] = count
    out["stats"] = {
        "median_ms": _us_to_ms(fields["median"]) if "median" in fields else None,
        "mean_ms": _us_to_ms(fields["avg"]),
        "p90_ms": None,  # the tool prints p5/median/p95 at most
        "min_ms": _us_to_ms(fields["min"]),
        "max_ms": _us_to_ms(fields["max"]),
        "std_ms": _us_to_ms(fields["std"]) if "std" in fields else None,
    }
    if "p95" in fields:
        out["stats"]["p95_ms"] = _us_to_ms(fields["p95"])
    if len(runs) > 1:
        out["warmup_runs"] = runs[0][0]
    return out


def benchmark_model_command(
    binary: str,
    graph: str,
    *,
    threads: int = 4,
    runs: int = 50,
    warmup: int = 1,
    max_seconds: float = 150,
    delegate: str = "xnnpack",
    hexagon_lib_path: str | None = None,
    cpu_mask: str | None = None,
) -> list[str]:
    """The benchmark_model command line; ``cpu_mask='f0'`` prefixes ``taskset f0`` (the big cores on SD855)."""
    if delegate not in DELEGATES:
        raise EdgeposeError(f"unknown TFLite delegate {delegate!r}; choose one of: {', '.join(DELEGATES)}")
    cmd = ["taskset", cpu_mask] if cpu_mask else []
    cmd += [
        binary,
        f"--graph={graph}",
        f"--num_threads={int(threads)}",
        f"--warmup_runs={int(warmup)}",
        f"--num_runs={int(runs)}",
        f"--max_secs={max_seconds:g}",
        "--report_peak_memory_footprint=true",
    ]
    if delegate == "none":
        cmd.append("--use_xnnpack=false")
    elif delegate == "xnnpack":
        cmd.append("--use_xnnpack=true")
    elif delegate == "gpu":
        cmd.append("--use_gpu=true")
    elif delegate == "nnapi":
        cmd.append("--use_nnapi=true")
    elif delegate == "hexagon":
        cmd += ["--use_hexagon=true", f"--hexagon_lib_path={hexagon_lib_path or '/data/local/tmp'}"]
    return cmd
