"""The device-side timer: statistics, the time cap, progress, CPU pinning, host facts."""

import io
import json

import numpy as np
import pytest

from edgepose.device import bench, machine, timing
from edgepose.errors import EdgeposeError


def test_summarize_matches_numpy():
    times = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.5]
    s = timing.summarize(times)
    assert s["median_ms"] == pytest.approx(np.median(times))
    assert s["mean_ms"] == pytest.approx(np.mean(times))
    assert s["p90_ms"] == pytest.approx(np.percentile(times, 90))
    assert s["std_ms"] == pytest.approx(np.std(times))
    assert (s["min_ms"], s["max_ms"]) == (1.0, 10.0)
    assert set(s) == set(timing.STAT_KEYS)


def test_summarize_of_nothing_is_an_error():
    with pytest.raises(EdgeposeError):
        timing.summarize([])


class FakeClock:
    """Each call advances 10 ms: every timed call measures exactly 10 ms."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 0.010
        return self.t


def test_time_calls_warms_up_then_times_every_run():
    calls = []
    times, capped = timing.time_calls(
        lambda: calls.append(1), runs=7, warmup=3, progress=False, clock=FakeClock()
    )
    assert len(calls) == 10 and len(times) == 7 and not capped
    assert times == pytest.approx([10.0] * 7)


def test_time_calls_stops_at_the_time_cap():
    times, capped = timing.time_calls(lambda: None, runs=1000, warmup=0, max_seconds=0.1, progress=False,
                                     clock=FakeClock())  # fmt: skip
    assert capped and 1 <= len(times) < 1000


def test_time_cap_also_bounds_the_warm_up():
    calls = []
    times, capped = timing.time_calls(lambda: calls.append(1), runs=5, warmup=1000, max_seconds=0.1, progress=False,
                                     clock=FakeClock())  # fmt: skip
    assert capped and len(calls) < 100 and len(times) >= 1


def test_bad_run_counts_are_errors():
    with pytest.raises(EdgeposeError, match="runs must be >= 1"):
        timing.time_calls(lambda: None, runs=0, warmup=0)


def test_progress_bar_is_plain_text_on_the_given_stream():
    out = io.StringIO()
    bar = timing.Progress("litepose-xs model", 4, stream=out, min_interval=0)
    for i in range(1, 5):
        bar.update(i)
    bar.close()
    text = out.getvalue()
    assert "litepose-xs model" in text and "4/4" in text and text.endswith("\n")


def test_pin_cpus_rejects_garbage_and_pins_to_cpu0():
    with pytest.raises(EdgeposeError, match="bad CPU list"):
        machine.pin_cpus("four")
    import os

    before = os.sched_getaffinity(0)
    try:
        assert machine.pin_cpus("0") == [0]
        assert os.sched_getaffinity(0) == {0}
    finally:
        os.sched_setaffinity(0, before)


def test_host_info_and_peak_rss_describe_this_machine():
    info = machine.host_info()
    assert info["cpu"] and info["cores"] >= 1 and info["python"].count(".") == 2
    rss = machine.peak_rss_mb()
    assert rss is not None and 5 < rss < 100000


def test_record_writer_appends_flushed_json_lines(tmp_path, capsys):
    path = tmp_path / "sub" / "r.jsonl"
    writer = bench.RecordWriter(str(path), stdout=True)
    writer.write({"a": 1})
    writer.write({"a": 2})
    lines = path.read_text().splitlines()
    assert [json.loads(ln)["a"] for ln in lines] == [1, 2]
    assert capsys.readouterr().out.count("\n") == 2
