"""Device-side latency measurement: warm-up, N timed runs, statistics, one JSON record per measurement.

The same code times a model on this machine (``edgepose bench --device host``) and on a device
(``python3 -m edgepose_device.bench --model-dir DIR`` after ``edgepose bench --host ...`` pushed the
artifact folder), so host and device numbers come from one protocol. Python 3.6+, stdlib + numpy +
the runtime in use; each record is appended whole and synced as soon as its measurement ends, so an
interrupted run (Ctrl-C: one line, exit 130) keeps every measurement it finished.
"""

import argparse
import datetime
import json
import os
import sys

from .atomic import append_line, deferred_interrupts
from .errors import EdgeposeError, os_error_message
from .formats import model_files
from .machine import host_info, peak_rss_mb, pin_cpus
from .manifest import load_manifest
from .timing import summarize, time_calls

SCHEMA = "edgepose.bench/1"


def base_record(manifest, device, on_device, threads, runs, warmup):
    """The protocol fields shared by every record of one artifact."""
    model = manifest.get("model", {})
    inp = manifest.get("input", {})
    shape = inp.get("shape") or [1, 0, 0, 0]
    hw = shape[1:3] if inp.get("layout") == "NHWC" else shape[2:4]
    runtime = manifest.get("runtime", {})
    models = [(k, v) for k, v in sorted(manifest.get("artifacts", {}).items()) if k in model_files()]
    host = host_info()
    return {
        "schema": SCHEMA,
        "date": utc_now(),
        "edgepose_version": manifest.get("edgepose_version"),
        "device": device,
        # An emulated device (qemu) runs the device's software, not at the device's speed: not on it.
        "on_device": bool(on_device) and not host.get("emulated"),
        "host": host,
        "model": model.get("name"),
        "dataset": model.get("dataset"),
        "params": model.get("params"),
        "macs": model.get("macs"),
        "format": manifest.get("format"),
        "target": manifest.get("target"),
        "precision": manifest.get("precision"),
        "runtime": runtime.get("backend"),
        "runtime_version": None,
        "threads": threads if threads is not None else runtime.get("threads"),
        "delegate": runtime.get("delegate"),
        "input_size": [int(v) for v in hw],
        "batch": int(shape[0]) if shape else 1,
        "runs": runs,
        "warmup": warmup,
        # The model file(s) only: the rest of the folder is edgepose's own code.
        "artifacts": dict((name, meta.get("sha256")) for name, meta in models),
        "model_bytes": sum(meta.get("bytes") or 0 for _, meta in models) or None,
    }


def utc_now():
    """The current UTC time as 2026-11-22T05:31:12Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(base, timed, tool, stats, runs_done, capped, peak_rss=None, **extra):
    """One record: the shared protocol (``base_record``) plus what was timed, by which tool, and its statistics.

    The one place a record is assembled: the Python timer here and the native tools' parsed logs
    (trtexec, benchmark_model) on the host both go through it.
    """
    rec = dict(base)
    rec["date"] = utc_now()  # when this measurement ended
    rec.update({"timed": timed, "tool": tool, "runs_done": runs_done, "capped": bool(capped)})
    rec["stats"] = stats
    rec["peak_rss_mb"] = peak_rss
    rec.update(extra)
    return rec


def measurement(base, timed, tool, times_ms, capped, **extra):
    """A record of times measured by this process (statistics and peak RSS computed here)."""
    return record(base, timed, tool, summarize(times_ms), len(times_ms), capped, peak_rss_mb(), **extra)


class RecordWriter(object):
    """Appends one JSON line per record to a file and/or stdout, each line whole (:func:`append_line`)."""

    def __init__(self, path=None, stdout=False):
        self.path = path
        self.stdout = stdout

    def write(self, record):
        line = json.dumps(record, sort_keys=True)
        with deferred_interrupts():  # a Ctrl-C between the two would leave them disagreeing
            if self.path:
                append_line(self.path, line)
            if self.stdout:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()


def _open_runtime(model_dir, manifest, threads, backend=None):
    """Open the artifact with the runtime package (imported lazily: only the runtime in use loads)."""
    from .runtime import open_runtime

    return open_runtime(model_dir, manifest, backend=backend, threads=threads)


def _model_input(input_size, batch=1):
    """A fixed random NCHW float32 batch (the runtimes take NCHW float32; timing does not depend on values)."""
    import numpy as np

    height, width = input_size
    return np.random.RandomState(0).standard_normal((batch, 3, height, width)).astype(np.float32)


def bench_model(
    model_dir,
    writer,
    device="host",
    on_device=True,
    runs=50,
    warmup=5,
    threads=None,
    max_seconds=None,
    pipeline=True,
    progress=True,
    backend=None,
):
    """Time one artifact folder: model only, then pre / model / post of the full pipeline.

    ``backend`` overrides the manifest's (e.g. onnxruntime timing a TensorRT folder's ONNX where
    TensorRT is absent; the host labels such a record). Returns the records written (already flushed
    through ``writer``).
    """
    manifest = load_manifest(model_dir)
    base = base_record(manifest, device, on_device, threads, runs, warmup)
    runner = _open_runtime(model_dir, manifest, threads, backend)
    base["runtime"] = runner.backend
    base["runtime_version"] = runner.version
    base["threads"] = runner.threads
    x = _model_input(base["input_size"], base["batch"])
    name = base["model"] or os.path.basename(os.path.abspath(model_dir))
    times, capped = time_calls(lambda: runner.run(x), runs, warmup, max_seconds, name + " model", progress)
    records = [measurement(base, "model", "edgepose_device.bench", times, capped)]
    writer.write(records[0])
    if pipeline:
        records.extend(
            _bench_pipeline(
                model_dir, runner, manifest, base, writer, runs, warmup, max_seconds, progress, name
            )
        )
    return records


def _bench_pipeline(model_dir, runner, manifest, base, writer, runs, warmup, max_seconds, progress, name):
    """Time the full pipeline on a 640x480 frame, split into its pre / model / post stages."""
    import numpy as np

    from .pipeline import open_pipeline

    pipe = open_pipeline(model_dir, runtime=runner, manifest=manifest)  # the model kind's pipeline
    # Random pixels: timing, not accuracy (grouping cost on a real crowd photo can be higher).
    frame = (np.random.RandomState(1).rand(480, 640, 3) * 255).astype(np.uint8)
    stages = {"pre": [], "model": [], "post": []}

    def one():
        timings = pipe(frame)["timings"]
        for key in stages:
            stages[key].append(float(timings[key]))

    totals, capped = time_calls(one, runs, warmup, max_seconds, name + " pipeline", progress)
    extra = {"frame": "random 640x480 BGR uint8"}
    records = []
    for key in ("pre", "model", "post"):
        timed = stages[key][-len(totals) :]  # drop the warm-up calls
        records.append(measurement(base, "pipeline." + key, "edgepose_device.bench", timed, capped, **extra))
    records.append(measurement(base, "pipeline.total", "edgepose_device.bench", totals, capped, **extra))
    for rec in records:
        writer.write(rec)
    return records


def build_parser():
    p = argparse.ArgumentParser(prog="edgepose_device.bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model-dir", default=None, help="artifact folder (default: the folder above this package)"
    )
    p.add_argument("--device", default="host", help="device profile name to label the records with")
    p.add_argument("--on-device", action="store_true", help="this machine is the profile's device")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backend", default=None, help="runtime backend (default: the manifest's)")
    p.add_argument("--cpus", default=None, help="pin to these CPUs, e.g. 4-7 (big cores)")
    p.add_argument("--max-seconds", type=float, default=None, help="cap on the timed phase per measurement")
    p.add_argument("--no-pipeline", action="store_true", help="time the model only")
    p.add_argument("--out", default=None, help="append JSON records to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None, model_dir=None):
    """Entry point on the device: prints one JSON record per line on stdout (and appends to --out)."""
    args = build_parser().parse_args(argv)
    try:
        folder = args.model_dir or model_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if args.cpus:
            pin_cpus(args.cpus)
        writer = RecordWriter(args.out, stdout=True)
        bench_model(
            folder,
            writer,
            device=args.device,
            on_device=args.on_device,
            runs=args.runs,
            warmup=args.warmup,
            threads=args.threads,
            max_seconds=args.max_seconds,
            pipeline=not args.no_pipeline,
            progress=not args.quiet,
            backend=args.backend,
        )
    except EdgeposeError as exc:
        for line in str(exc).splitlines() or [""]:
            sys.stderr.write("edgepose: error: %s\n" % line)
        return 2
    except OSError as exc:  # e.g. the records file's disk is full
        sys.stderr.write("edgepose: error: %s\n" % os_error_message(exc))
        return 2
    except KeyboardInterrupt:  # the measurements already finished are in the records
        sys.stderr.write("edgepose_device.bench: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
