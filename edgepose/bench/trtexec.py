"""TensorRT's ``trtexec``: a parser for its output (the command lines live with the device's engine builder).

The parser reads the TRT 8.x / 10.x ``=== Performance summary ===`` lines (``GPU Compute Time: min = ...
ms, ..., median = ..., percentile(99%) = ...``), the TRT 7.x multi-line blocks, and the version banner.
The wording moves between versions, so every field is optional; a log with no latency at all is an error.
"""

from __future__ import annotations

import re
from typing import Any

from edgepose.errors import EdgeposeError

# Summary line name -> key in the parsed result.
SECTIONS = {
    "Latency": "latency",
    "End-to-End Host Latency": "end_to_end",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "gpu_compute",
    "D2H Latency": "d2h",
    # TRT 7.x block titles
    "Host Latency": "latency",
    "GPU Compute": "gpu_compute",
}

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_SUMMARY = re.compile(r"\]\s*(" + "|".join(re.escape(k) for k in SECTIONS) + r"):\s*(min\s*=.*)$")
_FIELD = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*" + _NUM + r"\s*ms")
_BLOCK_TITLE = re.compile(r"\]\s*(Host Latency|GPU Compute|Enqueue Time|End-to-End Host Latency)\s*$")
_BLOCK_FIELD = re.compile(r"\]\s*(min|max|mean|median):\s*" + _NUM + r"\s*ms")
_BLOCK_PCT = re.compile(r"\]\s*percentile:\s*" + _NUM + r"\s*ms at (\d+(?:\.\d+)?)%")
_BANNER = re.compile(r"TensorRT\.trtexec\s*\[TensorRT v(\d+)\]")
_VERSION_LINE = re.compile(r"TensorRT version:\s*(\d+\.\d+(?:\.\d+)*)")
_THROUGHPUT = re.compile(r"Throughput:\s*" + _NUM + r"\s*qps")
_WALLTIME = re.compile(r"Total Host Walltime:\s*" + _NUM + r"\s*s")
_TRACE = re.compile(r"Average on (\d+) runs - GPU latency:\s*" + _NUM + r"\s*ms - Host latency:\s*" + _NUM)


def _banner_version(code: str) -> str:
    """'8201' -> '8.2.1', '100300' -> '10.3.0' (the banner packs major/minor/patch into one number)."""
    n = int(code)
    if n >= 10000:  # TRT 10+: MMmmpp
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"


def _field_key(name: str, pct: str | None) -> str:
    if pct is None:
        return f"{name}_ms"
    return f"p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}_ms"


def parse_trtexec(text: str) -> dict[str, Any]:
    """Parse trtexec's log into {tensorrt_version, throughput_qps, <section>: {min_ms, ..., p99_ms}, ...}."""
    out: dict[str, Any] = {"tensorrt_version": None, "passed": None}
    block: str | None = None
    traces = []
    for line in text.splitlines():
        if m := _VERSION_LINE.search(line):
            out["tensorrt_version"] = m.group(1)
        elif (m := _BANNER.search(line)) and out["tensorrt_version"] is None:
            out["tensorrt_version"] = _banner_version(m.group(1))
        if "&&&& PASSED" in line:
            out["passed"] = True
        elif "&&&& FAILED" in line:
            out["passed"] = False
        if m := _THROUGHPUT.search(line):
            out["throughput_qps"] = float(m.group(1))
        if m := _WALLTIME.search(line):
            out["host_walltime_s"] = float(m.group(1))
        if m := _TRACE.search(line):
            traces.append(
                {"runs": int(m.group(1)), "gpu_ms": float(m.group(2)), "host_ms": float(m.group(3))}
            )
        if m := _SUMMARY.search(line):
            key = SECTIONS[m.group(1)]
            out[key] = {
                _field_key(f[0].split("(")[0], f[1] or None): float(f[2]) for f in _FIELD.findall(line)
            }
            block = None
            continue
        # TRT 7.x: a title line, then "min: X ms (end to end Y ms)" lines.
        if m := _BLOCK_TITLE.search(line):
            block = SECTIONS.get(m.group(1))
            if block:
                out.setdefault(block, {})
            continue
        if block and (m := _BLOCK_FIELD.search(line)):
            out[block][f"{m.group(1)}_ms"] = float(m.group(2))
        elif block and (m := _BLOCK_PCT.search(line)):
            out[block][_field_key("percentile", m.group(2))] = float(m.group(1))
    if traces:
        out["trace_averages"] = traces
    if "gpu_compute" not in out and "latency" not in out:
        raise EdgeposeError("trtexec output has no performance summary (did the engine build or run fail?)")
    return out


def trtexec_stats(parsed: dict[str, Any]) -> dict[str, float | None]:
    """The record statistics from a parsed log: GPU compute time (model only), falling back to latency."""
    section = parsed.get("gpu_compute") or parsed["latency"]
    return {
        "median_ms": section.get("median_ms"),
        "mean_ms": section.get("mean_ms"),
        "p90_ms": section.get("p90_ms"),
        "min_ms": section.get("min_ms"),
        "max_ms": section.get("max_ms"),
        "std_ms": None,  # trtexec prints no standard deviation
        "p99_ms": section.get("p99_ms"),
    }
