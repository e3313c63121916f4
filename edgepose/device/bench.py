"""Device-side latency measurement: warm-up, N timed runs, statistics, one JSON record per measurement.

The same code times a model on this machine (``edgepose bench --device host``) and on a device
(``python3 -m edgepose_device.bench --model-dir DIR`` after ``edgepose bench --host ...`` pushed the
artifact folder), so host and device numbers come from one protocol. Python 3.6+, stdlib + numpy +
the runtime in use; records are appended and flushed as they are made, so an interrupted run keeps
what it measured.
"""

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

from .errors import EdgeposeError
from .manifest import load_manifest

SCHEMA = "edgepose.bench/1"
STAT_KEYS = ("median_ms", "mean_ms", "p90_ms", "min_ms", "max_ms", "std_ms")


def percentile(sorted_values, q):
    """Linear-interpolated percentile (numpy's default method) of an ascending list; q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(times_ms):
    """Median, mean, p90, min, max and (population) std of a list of times in ms."""
    values = sorted(float(t) for t in times_ms)
    if not values:
        raise EdgeposeError("no timed runs to summarize")
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return {
        "median_ms": percentile(values, 50),
        "mean_ms": mean,
        "p90_ms": percentile(values, 90),
        "min_ms": values[0],
        "max_ms": values[-1],
        "std_ms": math.sqrt(var),
    }


class Progress(object):
    """A plain-text progress line on stderr, redrawn at most every half second (no dependencies)."""

    def __init__(self, label, total, stream=None, min_interval=0.5):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self._last = 0.0
        self._shown = False

    def update(self, done, force=False):
        now = time.monotonic()
        if not force and done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        width = 30
        filled = int(width * done / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write("\r[bench] %s [%s] %d/%d" % (self.label, bar, done, self.total))
        self.stream.flush()
        self._shown = True

    def close(self):
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def time_calls(fn, runs, warmup, max_seconds=None, label="", progress=True, clock=time.perf_counter):
    """Call ``fn()`` ``warmup`` times untimed, then up to ``runs`` times timed; return (times_ms, capped).

    ``max_seconds`` caps the warm-up and the timed phase each (the big baselines would otherwise take
    minutes): when the budget is spent the loop stops early and ``capped`` is True. At least one
    warm-up run (if any were asked for) and one timed run are always made.
    """
    if runs < 1 or warmup < 0:
        raise EdgeposeError("runs must be >= 1 and warmup >= 0 (got runs=%d, warmup=%d)" % (runs, warmup))
    start = clock()
    capped = False
    for i in range(warmup):
        fn()
        if max_seconds is not None and clock() - start > max_seconds and i + 1 < warmup:
            capped = True
            break
    bar = Progress(label, runs) if progress else None
    times = []
    start = clock()
    for i in range(runs):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1000.0)
        if bar is not None:
            bar.update(i + 1)
        if max_seconds is not None and clock() - start > max_seconds and i + 1 < runs:
            capped = True
            break
    if bar is not None:
        if len(times) < runs:  # stopped early by the time cap: show where it stopped
            bar.update(len(times), force=True)
        bar.close()
    return times, capped


def peak_rss_mb():
    """Peak resident set size of this process in MiB.

    Linux: VmHWM of /proc/self/status, because getrusage's ru_maxrss survives fork + exec and would
    report the (torch-sized) parent. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS).
    """
    status = _read_first("/proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _read_first(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (IOError, OSError):
        return None


def cpu_name():
    """A human-readable CPU / board name: the board model on ARM boards, the CPU model on x86."""
    board = _read_first("/proc/device-tree/model")
    if board:
        return board.rstrip("\x00")
    text = _read_first("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


# An ARM userland on an x86 machine is qemu's user-mode emulation (qemu-user-static + binfmt_misc). Two
# signs, either enough: the kernel's own architecture (/proc/sys/kernel/arch, recent kernels; uname -m is
# what qemu says) and the host's CPU lines in /proc/cpuinfo (passed through by QEMU before 8.2).
_X86_CPUINFO = ("GenuineIntel", "AuthenticAMD", "HygonGenuine")


def emulation(machine=None, cpuinfo=None, kernel_arch=None):
    """'qemu-aarch64' (qemu-<machine>) when this ARM process runs emulated on an x86 machine, else None."""
    machine = machine if machine is not None else platform.machine()
    if not machine.startswith(("aarch64", "arm")):
        return None
    kernel_arch = kernel_arch if kernel_arch is not None else (_read_first("/proc/sys/kernel/arch") or "")
    if kernel_arch in ("x86_64", "i386", "i686"):
        return "qemu-" + machine
    text = cpuinfo if cpuinfo is not None else (_read_first("/proc/cpuinfo") or "")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id" and value.strip() in _X86_CPUINFO:
            return "qemu-" + machine
    return None


def host_info():
    """Facts about the machine that ran the measurement (recorded next to every number)."""
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": "%s %s" % (platform.system(), platform.release()),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    info["emulated"] = emulation()  # e.g. "qemu-aarch64": its latency is not the device's
    if hasattr(os, "getloadavg"):  # a busy machine makes every number slower: keep the load with them
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    governor = _read_first("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        info["cpu_governor"] = governor
    temp = _read_first("/sys/class/thermal/thermal_zone0/temp")
    if temp and temp.lstrip("-").isdigit():
        info["temperature_c"] = int(temp) / 1000.0
    l4t = _read_first("/etc/nv_tegra_release")
    if l4t:
        info["l4t"] = l4t.splitlines()[0]
    return info


def pin_cpus(spec):
    """Pin this process to the CPUs in ``spec`` ('4-7' or '4,5,6,7'); returns the list pinned to."""
    cpus = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-")
                cpus.update(range(int(lo), int(hi) + 1))
            else:
                cpus.add(int(part))
        except ValueError:
            raise EdgeposeError("bad CPU list %r: expected e.g. 4-7 or 0,1" % spec) from None
    if not hasattr(os, "sched_setaffinity"):
        raise EdgeposeError("CPU pinning is not supported on this OS")
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise EdgeposeError("cannot pin to CPUs %s: %s" % (spec, exc)) from None
    return sorted(cpus)


def base_record(manifest, device, on_device, threads, runs, warmup):
    """The protocol fields shared by every record of one artifact."""
    model = manifest.get("model", {})
    inp = manifest.get("input", {})
    shape = inp.get("shape") or [1, 0, 0, 0]
    hw = shape[1:3] if inp.get("layout") == "NHWC" else shape[2:4]
    runtime = manifest.get("runtime", {})
    return {
        "schema": SCHEMA,
        "date": utc_now(),
        "edgepose_version": manifest.get("edgepose_version"),
        "device": device,
        "on_device": bool(on_device),
        "host": host_info(),
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
        "artifacts": dict(
            (name, meta.get("sha256"))
            for name, meta in sorted(manifest.get("artifacts", {}).items())
            if name.startswith("model.")
        ),
    }


def utc_now():
    """The current UTC time as 2026-11-22T05:31:12Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def measurement(base, timed, tool, times_ms, capped, **extra):
    """One record: the shared protocol plus what was timed and its statistics."""
    rec = dict(base)
    rec["date"] = utc_now()  # when this measurement ended
    rec.update({"timed": timed, "tool": tool, "runs_done": len(times_ms), "capped": bool(capped)})
    rec["stats"] = summarize(times_ms)
    rec["peak_rss_mb"] = peak_rss_mb()
    rec.update(extra)
    return rec


class RecordWriter(object):
    """Appends one JSON line per record to a file (flushed at once) and/or stdout."""

    def __init__(self, path=None, stdout=False):
        self.path = path
        self.stdout = stdout

    def write(self, record):
        line = json.dumps(record, sort_keys=True)
        if self.path:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                os.makedirs(parent)
            with open(self.path, "a") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        if self.stdout:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def _open_runtime(model_dir, manifest, threads):
    """Open the artifact with the runtime package (imported lazily: only the runtime in use loads)."""
    from .runtime import open_runtime

    return open_runtime(model_dir, manifest, threads=threads)


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
):
    """Time one artifact folder: model only, then pre / model / post of the full pipeline.

    Returns the records written (already flushed through ``writer``).
    """
    manifest = load_manifest(model_dir)
    base = base_record(manifest, device, on_device, threads, runs, warmup)
    runner = _open_runtime(model_dir, manifest, threads)
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

    from .pipeline import PosePipeline

    pipe = PosePipeline(model_dir, runtime=runner, manifest=manifest)
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
        )
    except EdgeposeError as exc:
        sys.stderr.write("edgepose: error: %s\n" % exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
