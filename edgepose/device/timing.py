"""Timing: warm-up, N timed runs under a time cap, and their statistics (Python 3.6, stdlib only).

The one protocol behind every latency edgepose reports: the device-side timer, the host's benchmark
scripts and the native tools' records all summarise with :func:`summarize`.
"""

import math
import sys
import time

from .errors import EdgeposeError

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
