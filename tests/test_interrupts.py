"""Ctrl-C and kill: an export ends within 2 seconds with exit 130, one line and nothing left behind, whatever
the TFLite converter is doing; the bench keeps every measurement finished before the interrupt.

Ctrl-C is sent as a terminal sends it: SIGINT to the whole foreground process group. The processes under
test start with SIGINT at its default (a test run from a background job would otherwise pass its ignored
SIGINT on to them).
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_device_runtime import make_artifact
from test_faults import sealed

from edgepose.bench.records import RecordWriter, read_records

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds child processes through /proc")
needs_litert_torch = pytest.mark.skipif(
    importlib.util.find_spec("litert_torch") is None, reason="TFLite export needs litert-torch (export extra)"
)


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv, **kwargs):
    """Start ``argv`` in its own process group (the 'terminal' the test presses Ctrl-C in)."""
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
        **kwargs,
    )


def children(pid):
    """(pid, command line) of the live child processes of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append((int(entry), Path(f"/proc/{entry}/cmdline").read_text().replace("\0", " ")))
        except (OSError, ValueError, IndexError):
            pass
    return found


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- export

CONVERT = r"""
import json, os, signal, sys, tempfile, threading, time
from pathlib import Path
import torch
from torch import nn
from edgepose.atomic import staged_dir
from edgepose.export import tflite as tfl

out, delays = Path(sys.argv[1]), json.loads(sys.argv[2])
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()
armed = []

def on_sigint(signum, frame):  # Python's own behaviour (KeyboardInterrupt), but only while a round runs
    if armed:
        armed.clear()
        raise KeyboardInterrupt

signal.signal(signal.SIGINT, on_sigint)

def children():
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open("/proc/%s/stat" % entry).read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found

for delay in delays:
    sent = []

    def ctrl_c():
        sent.append(time.monotonic())
        os.killpg(os.getpgrp(), signal.SIGINT)  # what a terminal's Ctrl-C does

    timer = threading.Timer(delay, ctrl_c) if delay is not None else None
    try:
        armed.append(True)
        if timer:
            timer.start()
        with staged_dir(out, lambda path: None) as stage:
            (stage / "model.tflite").write_bytes(tfl.convert_fp32(model, ["out"], (16, 16)))
        outcome = "published"
        armed.clear()
    except KeyboardInterrupt:
        outcome = "interrupted"
    ended = time.monotonic()
    armed.clear()
    if timer:
        timer.cancel()
        timer.join()
    print(json.dumps({
        "delay": delay, "outcome": outcome, "latency": ended - sent[0] if sent else None,
        "folder": sorted(os.listdir(out.parent)), "content": sorted(os.listdir(out)) if out.is_dir() else None,
        "temp": sorted(os.listdir(tempfile.gettempdir())), "children": children(),
    }), flush=True)

data = (out / "model.tflite").read_bytes()
same = data == tfl._convert_fp32(model, ["out"], (16, 16), torch.get_num_threads())  # in this process
print(json.dumps({"same_as_in_process": same, "bytes": len(data)}), flush=True)
"""


@pytest.mark.slow
@needs_litert_torch
def test_ctrl_c_at_any_moment_of_a_tflite_conversion_ends_it_at_once(tmp_path):
    out, scratch = tmp_path / "out" / "art", tmp_path / "tmp"
    out.parent.mkdir()
    scratch.mkdir()
    # First a round without Ctrl-C (the control, and the folder the others must leave in place), then 21
    # rounds with Ctrl-C at moments spread over the child's life: starting, importing, converting.
    delays = [None, 0.0, 0.01, 0.05] + [round(0.2 * i, 2) for i in range(1, 18)]
    proc = start(
        [sys.executable, "-c", CONVERT, str(out), json.dumps(delays)],
        env=dict(os.environ, TMPDIR=str(scratch)),
    )
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr  # neither from the harness nor from a converter child
    rounds = [
        json.loads(line) for line in stdout.splitlines() if line.startswith("{")
    ]  # not the converter's log
    final = rounds.pop()
    assert [r["delay"] for r in rounds] == delays
    assert rounds[0]["outcome"] == "published"
    assert final["same_as_in_process"] and final["bytes"] > 1000  # the child's bytes are the in-process bytes
    interrupted = [r for r in rounds if r["outcome"] == "interrupted"]
    assert len(interrupted) >= 20, rounds  # every Ctrl-C was honoured (a swallowed one reads 'published')
    for r in rounds:
        assert r["folder"] == ["art"], r  # no staging folder, no lock file
        assert r["content"] == ["model.tflite"], r  # the old or the new artifact, whole
        assert r["temp"] == [] and r["children"] == [], r  # the child and its scratch folder are gone
    latencies = sorted(r["latency"] for r in interrupted)
    print(f"Ctrl-C to cleaned up: median {latencies[len(latencies) // 2]:.3f} s, max {latencies[-1]:.3f} s")
    assert latencies[-1] < 2.0, interrupted


@pytest.mark.slow
@needs_litert_torch
def test_ctrl_c_during_a_real_tflite_export_is_exit_130_and_one_line(tmp_path):
    edgepose = Path(sys.executable).parent / "edgepose"
    out = tmp_path / "out" / "xs"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    argv = [
        str(edgepose),
        "export",
        "litepose-xs",
        "--target",
        "rpi4",
        "--input",
        "128x128",
        "--out",
        str(out),
    ]
    proc = start(argv, env=dict(os.environ, TMPDIR=str(scratch)))
    deadline = time.monotonic() + 300
    converter = []
    while not converter and proc.poll() is None and time.monotonic() < deadline:
        converter = [pid for pid, cmd in children(proc.pid) if "edgepose.export.isolated" in cmd]
        time.sleep(0.05)
    assert converter, "the conversion child never started"
    time.sleep(1.0)  # inside the conversion
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    latency = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "edgepose: interrupted" and "Traceback" not in stderr, stderr
    assert latency < 2.0
    assert not alive(converter[0])
    assert not out.parent.exists()  # not even the folder made for --out
    assert list(scratch.iterdir()) == []  # nor the converter's scratch folder


def test_the_child_returns_bytes_its_error_line_or_how_it_crashed(capsys):
    from edgepose.device.formats import get_format
    from edgepose.errors import EdgeposeError
    from edgepose.export.isolated import run_isolated

    assert run_isolated(bytes, 3, what="x") == b"\0\0\0"  # the function and its arguments travel by pickle
    with pytest.raises(EdgeposeError, match="^unknown format 'nope'"):  # the child's own one line
        run_isolated(get_format, "nope", what="x")
    with pytest.raises(EdgeposeError, match=r"^the converter failed in its child process \(signal SIGABRT\)"):
        run_isolated(os.abort, what="the converter")  # e.g. a converter aborting (exit 134 in a shell)


@needs_litert_torch
def test_kill_9_of_an_export_ends_its_converter_child_and_removes_its_scratch_folder(tmp_path):
    # kill -9 of the parent: its converter child notices, removes its scratch folder and ends itself.
    script = (
        "import sys, torch; from torch import nn; from edgepose.export import tflite as tfl; "
        "print('go', flush=True); tfl.convert_fp32(nn.Conv2d(3, 2, 1).eval(), ['out'], (8, 8))"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = start([sys.executable, "-c", script], env=dict(os.environ, TMPDIR=str(scratch)))
    assert proc.stdout.readline().strip() == "go"
    deadline = time.monotonic() + 60
    converter = []
    while not converter and time.monotonic() < deadline:
        converter = [pid for pid, cmd in children(proc.pid) if "edgepose.export.isolated" in cmd]
        time.sleep(0.05)
    assert converter
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 10
    while (alive(converter[0]) or list(scratch.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(converter[0]) and list(scratch.iterdir()) == []


# -------------------------------------------------------------------------------------------- bench


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return sealed(make_artifact(tmp_path_factory.mktemp("tiny") / "tiny-bu")[0])


def wait_for_records(path, count, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_in_the_device_timer_keeps_what_it_measured_without_a_traceback(tiny, tmp_path):
    records = tmp_path / "r.jsonl"
    argv = [sys.executable, "-m", "edgepose_device.bench", "--runs", "2000", "--warmup", "1",
            "--max-seconds", "30", "--quiet", "--out", str(records)]  # fmt: skip
    proc = start(argv, cwd=str(tiny), env=dict(os.environ, PYTHONPATH=str(tiny)))
    # The model alone is timed first (2000 runs of the tiny model: well under a second), then the pipeline
    # (2000 runs of ~0.1 s, capped at 30 s): Ctrl-C comes in between, however late this process wakes.
    assert wait_for_records(records, 1, timeout=120) or proc.poll() is not None, proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "edgepose_device.bench: interrupted", stderr
    kept = read_records([records])
    assert [r["timed"] for r in kept][:1] == ["model"] and kept[0]["runs_done"] > 0
    assert [json.loads(line)["timed"] for line in stdout.splitlines()] == [r["timed"] for r in kept]


def test_a_ctrl_c_while_a_record_is_written_lands_after_both_copies(tmp_path, monkeypatch, capsys):
    # The Ctrl-C arrives just after the record reached the file (the race the test above can hit): it is
    # held back until stdout has the same line, then raised.
    from edgepose.device import bench as device_bench

    real = device_bench.append_line

    def append_then_interrupt(path, line):
        real(path, line)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(device_bench, "append_line", append_then_interrupt)
    # Ctrl-C as in a terminal, whatever this worker inherited (a background job ignores SIGINT).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            RecordWriter(str(tmp_path / "r.jsonl"), stdout=True).write({"timed": "model"})
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().out == (tmp_path / "r.jsonl").read_text() == '{"timed": "model"}\n'


BENCH = r"""
import sys
from pathlib import Path
from edgepose.bench.options import BenchOptions
from edgepose.bench.profiles import load_profile
from edgepose.bench.records import RecordWriter
from edgepose.bench.runner import bench_artifact
from edgepose.bench.transports import Local

folder, out = Path(sys.argv[1]), sys.argv[2]
profile = load_profile("host")
opts = BenchOptions(runs=100000, warmup=1, max_seconds=float(sys.argv[3]), progress=False)
try:
    bench_artifact(folder, profile, opts, RecordWriter(out), Local(profile))
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_during_edgepose_bench_keeps_the_finished_measurement(tiny, tmp_path):
    folder = Path(__import__("shutil").copytree(tiny, tmp_path / "art"))
    out = tmp_path / "user.jsonl"
    proc = start([sys.executable, "-c", BENCH, str(folder), str(out), "5"])
    # The timer's own file in the folder shows when the model measurement is done (the pipeline is next).
    assert wait_for_records(folder / "records.jsonl", 1), proc.stderr.read()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert stdout.strip() == "interrupted" and "Traceback" not in stderr, stderr
    assert "edgepose_device.bench: interrupted" in stderr
    kept = read_records([out])
    assert [r["timed"] for r in kept] == ["model"] and kept[0]["device_profile"]["name"] == "host"
    assert not (folder / "records.jsonl").exists()  # the timer's scratch file is cleaned up
    RecordWriter(str(out)).write(dict(kept[0], timed="again"))  # the file stays appendable
    assert [r["timed"] for r in read_records([out])] == ["model", "again"]
