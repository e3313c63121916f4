"""Benchmark records (JSON lines): reading them back, picking the latest per measurement, CSV/Markdown views.

Records are written one per line by :class:`edgepose.device.bench.RecordWriter` (the same writer the
device uses), each line whole, so a file is valid after every measurement even when a run is interrupted;
a torn line left by anything else is skipped with its line number.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgepose.device.bench import SCHEMA, RecordWriter
from edgepose.errors import EdgeposeError
from edgepose.tables import Column, format_table

__all__ = ["RecordWriter", "read_records", "latest", "flatten", "to_csv", "to_markdown", "COLUMNS"]

# The columns of the CSV / Markdown views, in order (nested keys flattened with dots).
COLUMNS = (
    "date", "device", "on_device", "host.cpu", "model", "dataset", "input_size", "format", "runtime",
    "runtime_version", "precision", "threads", "delegate", "batch", "timed", "tool", "runs_done", "warmup",
    "stats.median_ms", "stats.mean_ms", "stats.p90_ms", "stats.min_ms", "stats.max_ms", "stats.std_ms",
    "capped", "peak_rss_mb", "params", "macs.true", "macs.paper", "agreement.ap", "edgepose_version",
)  # fmt: skip


def read_records(
    paths: Iterable[str | Path], on_skip: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """All records of the given JSONL files (a missing file is an error).

    A line that is not a JSON object (torn by a crash or a full disk in an older edgepose, or edited by
    hand) is skipped and reported as ``PATH:LINE``, through ``on_skip`` (default: a warning on stderr), so
    one bad line never hides the rest of a file.
    """
    warn = on_skip or (lambda message: print(f"warning: {message}", file=sys.stderr))
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise EdgeposeError(f"no benchmark records at {path}")
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    rec = None
                if not isinstance(rec, dict):
                    warn(f"{path}:{number}: not a whole JSON record (torn or edited), skipped")
                    continue
                if rec.get("schema") == SCHEMA:
                    records.append(rec)
    return records


def record_key(rec: dict[str, Any]) -> tuple:
    """What makes two records the same measurement (a newer one replaces an older one)."""
    return (
        rec.get("device"), bool(rec.get("on_device")), (rec.get("host") or {}).get("cpu"), rec.get("model"),
        rec.get("dataset"), tuple(rec.get("input_size") or ()), rec.get("format"), rec.get("precision"),
        rec.get("delegate"), rec.get("timed"), rec.get("tool"),
    )  # fmt: skip


def latest(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest record of each measurement, in first-seen order."""
    best: dict[tuple, dict[str, Any]] = {}
    for rec in records:
        key = record_key(rec)
        if key not in best or str(rec.get("date", "")) >= str(best[key].get("date", "")):
            best[key] = rec
    return list(best.values())


def _get(rec: dict[str, Any], dotted: str) -> Any:
    value: Any = rec
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def flatten(rec: dict[str, Any], columns: Iterable[str] = COLUMNS) -> dict[str, str]:
    """One record as a flat {column: text} row."""
    return {col: _cell(_get(rec, col)) for col in columns}


def _render(records: Iterable[dict[str, Any]], columns: Iterable[str], style: str) -> str:
    columns = list(columns)
    rows = [flatten(rec, columns) for rec in records]
    return format_table(rows, [Column(c) for c in columns], style=style) + "\n"


def to_csv(records: Iterable[dict[str, Any]], columns: Iterable[str] = COLUMNS) -> str:
    """The records as CSV text with a header row."""
    return _render(records, columns, "csv")


MD_COLUMNS = (
    "device", "on_device", "host.cpu", "model", "input_size", "runtime", "precision", "threads", "timed",
    "runs_done", "stats.median_ms", "stats.mean_ms", "stats.p90_ms", "stats.std_ms", "peak_rss_mb",
)  # fmt: skip


def to_markdown(records: Iterable[dict[str, Any]], columns: Iterable[str] = MD_COLUMNS) -> str:
    """The records as a Markdown table (a compact subset of the columns by default)."""
    return _render(records, columns, "md")


def status(rec: dict[str, Any]) -> str:
    """What a reader must know before trusting a record's number, in a few words ("ok" when nothing)."""
    notes = []
    emulated = (rec.get("host") or {}).get("emulated")
    if emulated:
        notes.append(f"emulated ({emulated})")
    elif not rec.get("on_device"):
        notes.append("host-run")
    if rec.get("stand_in_for"):
        notes.append(f"{rec.get('runtime')} for {rec['stand_in_for']}")
    if rec.get("capped"):
        notes.append(f"capped at {rec.get('runs_done')} runs")
    return ", ".join(notes) or "ok"


def compact_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """The bench's default view: one short row per record (the full protocol stays in the records)."""
    rows = []
    for rec in records:
        stats = rec.get("stats") or {}
        median = stats.get("median_ms")
        size = rec.get("model_bytes")
        rows.append({
            "model": f"{rec.get('model')} {_cell(rec.get('input_size'))}",
            "timed": str(rec.get("timed")),
            "runtime": str(rec.get("runtime")),
            "precision": str(rec.get("precision")),
            "size MB": f"{size / 1e6:.2f}" if size else "",
            "median ms": f"{median:.2f}" if median is not None else "",
            "p90 ms": f"{stats['p90_ms']:.2f}" if stats.get("p90_ms") is not None else "",
            "FPS": f"{1000.0 / median:.1f}" if median else "",
            "agree AP": agreement_cell(rec.get("agreement")),
            "status": status(rec),
        })  # fmt: skip
    return rows


def agreement_cell(agreement: dict[str, Any] | None) -> str:
    """A record's agreement AP as a table cell: '' (not measured), the AP, 'nobody', 'n/a' (a
    segmentation model) or 'error'."""
    if not agreement:
        return ""
    if "not_applicable" in agreement:
        return "n/a"
    if "ap" not in agreement:
        return "error"
    return "nobody" if agreement["ap"] is None else f"{agreement['ap']:.3f}"


def to_compact(records: Iterable[dict[str, Any]], style: str = "md") -> str:
    """:func:`compact_rows` as a table (``md`` or ``csv``)."""
    records = list(records)
    rows = compact_rows(records)
    shown = [c for c in COMPACT_COLUMNS if c != "agree AP" or any(r.get("agreement") for r in records)]
    columns = [Column(c, align="right" if c.endswith(("MB", "ms", "FPS", "AP")) else "left") for c in shown]
    return format_table(rows, columns, style=style) + "\n"


COMPACT_COLUMNS = (
    "model",
    "timed",
    "runtime",
    "precision",
    "size MB",
    "median ms",
    "p90 ms",
    "FPS",
    "agree AP",
    "status",
)
