"""What the benchmark scripts share: onnxruntime timing and writing a result as JSON + Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort

from edgepose.atomic import write_text
from edgepose.device.timing import summarize, time_calls
from edgepose.export.parity import sample_input


def time_onnx(
    path: Path, h: int, w: int, threads: int, runs: int, warmup: int, progress: bool = True
) -> dict:
    """onnxruntime CPU latency of an exported file (all graph optimisations, sequential execution)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": sample_input((h, w))}
    label = f"onnxruntime {path.parent.name}"
    times, _ = time_calls(lambda: session.run(None, feed), runs, warmup, label=label, progress=progress)
    return summarize(times)


def timing_protocol(args) -> dict:
    """The protocol fields every benchmark script records: threads, runs, warm-up, batch, statistic."""
    return {
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "batch": 1,
        "statistic": "median",
    }


def save_result(out: Path, stem: str, result: dict, markdown: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out`` (atomically) and print the Markdown."""
    write_text(out / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    write_text(out / f"{stem}.md", markdown)
    print(markdown)
