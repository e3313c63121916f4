"""Fault injection: full disks, read-only folders, impossible paths, kill -9 while publishing, concurrent
exports, torn records, edited artifact folders, folders of good and bad images.

Every fault has a control: the same operation under the same conditions without the fault succeeds.
Full disks are real (a small tmpfs) where the tests run as root and may mount; elsewhere ENOSPC is
injected at the points where edgepose's writes land (fsync and append). Ctrl-C is in test_interrupts.py.
"""

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from test_device_runtime import exported, make_artifact
from test_run_script import run_py, write_clip

import edgepose.device.atomic as device_atomic
from edgepose.atomic import write_bytes
from edgepose.bench.records import RecordWriter, read_records
from edgepose.cli import main as edgepose_main
from edgepose.device.bench import SCHEMA
from edgepose.device.cli import main as device_main
from edgepose.device.runtime import open_runtime
from edgepose.errors import EdgeposeError
from edgepose.export import pipeline
from edgepose.export.pipeline import artifact_table, check_replaceable

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- disks and helpers


def _can_mount():
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(tempfile.gettempdir()) / f"edgepose-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)]).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


CAN_MOUNT = _can_mount()


class Disk:
    """A small folder that can be made full or read-only: a real tmpfs, or injected errors where we cannot mount."""

    def __init__(self, path, monkeypatch, read_only=False):
        self.path = path
        self.real = CAN_MOUNT
        self.monkeypatch = monkeypatch
        path.mkdir()
        if self.real:
            options = "size=1m" + (",ro" if read_only else "")
            subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
        elif read_only:
            if os.geteuid() == 0:
                pytest.skip("running as root without mount: a read-only folder cannot be made")
            path.chmod(0o555)

    def fill(self):
        """Leave no free byte: a real filler file, or ENOSPC injected on every edgepose write under the folder."""
        if self.real:
            with open(self.path / "filler", "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            return
        real_fsync, real_write = os.fsync, os.write

        def under(fd):
            try:
                return os.readlink(f"/proc/self/fd/{fd}").startswith(str(self.path))
            except OSError:
                return False

        def fsync(fd):
            if under(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        def write(fd, data):
            if under(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        self.monkeypatch.setattr(device_atomic.os, "fsync", fsync)
        self.monkeypatch.setattr(device_atomic.os, "write", write)

    def free(self):
        """Undo :meth:`fill` (the control)."""
        if self.real:
            (self.path / "filler").unlink()
        else:
            self.monkeypatch.undo()

    def contents(self):
        return sorted(p.name for p in self.path.iterdir() if p.name not in ("filler", "lost+found"))

    def close(self):
        if self.real:
            subprocess.run(["umount", "-l", str(self.path)])
        else:
            self.path.chmod(0o755)


@pytest.fixture()
def disk(tmp_path, monkeypatch):
    d = Disk(tmp_path / "disk", monkeypatch)
    yield d
    d.close()


@pytest.fixture()
def read_only(tmp_path, monkeypatch):
    d = Disk(tmp_path / "ro", monkeypatch, read_only=True)
    yield d
    d.close()


def tree(folder):
    """{relative path: sha256 or 'dir'} of everything under ``folder`` (to prove it untouched)."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def edgepose_errors(err, prefix="edgepose: error:"):
    return [line for line in err.splitlines() if line.startswith(prefix)]


def one_error(capsys, code, text, prefix="edgepose: error:"):
    """The command returned 2 with exactly one error line containing ``text`` and no traceback."""
    err = capsys.readouterr().err
    assert code == 2, err
    ours = edgepose_errors(err, prefix)
    assert len(ours) == 1 and text in ours[0], err
    assert "Traceback" not in err
    return ours[0]


@pytest.fixture()
def fake_lowering(monkeypatch):
    """Make the ONNX lowering write a small model file at once: the rest of export_model runs for real."""

    def lower(job):
        write_bytes(job.stage / "model.onnx", b"onnx" * 4096)
        return {}

    monkeypatch.setattr(pipeline, "_import_lowering", lambda fmt: types.SimpleNamespace(lower=lower))
    monkeypatch.setattr(pipeline, "_macs", lambda model, size: None)


def export(out, *extra):
    return edgepose_main(["export", "litepose-xs", "--target", "onnx", "--out", str(out), *extra])


# ----------------------------------------------------------------------------- --out and what it replaces


def test_export_never_touches_a_folder_or_file_it_did_not_write(tmp_path, capsys, fake_lowering):
    user = tmp_path / "d"
    (user / "sub").mkdir(parents=True)
    (user / "thesis.txt").write_text("keep")
    note = tmp_path / "notes.txt"
    note.write_text("keep too")
    before = tree(tmp_path)
    one_error(capsys, export(user), "not an edgepose artifact folder")
    one_error(capsys, export(note), "is not an artifact folder")
    assert tree(tmp_path) == before
    # Control: a new path is written, and then replaced by the next export (it is ours now).
    assert export(tmp_path / "art") == 0
    (tmp_path / "art" / "model.onnx").write_bytes(b"stale")
    assert export(tmp_path / "art") == 0
    assert (tmp_path / "art" / "model.onnx").read_bytes() == b"onnx" * 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "d", "notes.txt"]


def test_an_artifact_holding_a_users_file_is_refused_and_force_replaces_anything(
    tmp_path, capsys, fake_lowering
):
    art = tmp_path / "art"
    assert export(art) == 0
    (art / "out.jpg").write_bytes(b"the user's photo")
    line = one_error(capsys, export(art), "edgepose did not write out.jpg")
    assert "--force" in line and (art / "out.jpg").read_bytes() == b"the user's photo"
    note = tmp_path / "notes.txt"
    note.write_text("x")
    for target in (art, note):  # --force: replaced whatever it is
        assert export(target, "--force") == 0
        assert (target / "manifest.json").is_file() and not (target / "out.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "notes.txt"]


def test_what_the_device_side_writes_into_an_artifact_may_be_replaced(tmp_path):
    folder = sealed(make_artifact(tmp_path / "a")[0])
    (folder / "engine.json").write_text("{}")  # a TensorRT build on the device
    (folder / "records.jsonl").write_text("")  # the bench's timer
    (folder / "edgepose_device" / "__pycache__").mkdir(exist_ok=True)
    check_replaceable(folder)  # control: no error
    (folder / "edgepose_device" / "mine.py").write_text("")
    with pytest.raises(EdgeposeError, match="edgepose_device/mine.py"):
        check_replaceable(folder)


# ------------------------------------------------------------------------------- storage errors, export


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(disk, capsys, fake_lowering):
    disk.fill()
    line = one_error(capsys, export(disk.path / "art"), "No space left on device")
    assert str(disk.path / "art") in line
    assert disk.contents() == []  # no staging folder, no lock file, no half-written model
    disk.free()  # control: the same export with room on the disk
    assert export(disk.path / "art") == 0
    assert disk.contents() == ["art"]


def test_export_into_a_read_only_folder_is_one_line(read_only, capsys, fake_lowering):
    line = one_error(capsys, export(read_only.path / "art"), "cannot write")
    assert str(read_only.path / "art") in line
    assert read_only.contents() == []


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
def test_export_to_an_impossible_path_is_one_line(tmp_path, capsys, fake_lowering, where):
    if where == "proc" and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = Path("/proc/edgepose-fault-test") if where == "proc" else blocker / "art"
    one_error(capsys, export(out), str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert export(tmp_path / "art") == 0  # control


def test_missing_parents_are_made_and_removed_again_if_the_export_fails(tmp_path, capsys, monkeypatch):
    def lower(job):
        raise EdgeposeError("parity check failed")

    monkeypatch.setattr(pipeline, "_import_lowering", lambda fmt: types.SimpleNamespace(lower=lower))
    one_error(capsys, export(tmp_path / "new" / "deeper" / "art"), "parity check failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_real_onnx_export_onto_a_full_disk(disk, capsys):
    disk.fill()
    one_error(capsys, export(disk.path / "xs", "--input", "128x128"), "No space left on device")
    assert disk.contents() == []
    disk.free()
    folder, _ = exported("litepose-xs", "onnx", (128, 128), "crowdpose")  # control (shared with other tests)
    assert (folder / "model.onnx").stat().st_size > 1_000_000


# ---------------------------------------------------------------------------- storage errors, run.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny bottom-up artifact whose manifest lists every file (as `edgepose export` writes)."""
    return sealed(make_artifact(tmp_path_factory.mktemp("tiny") / "tiny-bu")[0])


def sealed(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"] = artifact_table(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[::4, ::4])
    return path


@pytest.mark.parametrize("output", ["image", "json", "video"])
def test_run_py_outputs_onto_a_full_disk(tiny, photo, disk, capsys, output, tmp_path):
    if output == "video" and not disk.real:
        pytest.skip("OpenCV's video writer bypasses Python: needs a real full disk (root and mount)")
    source = write_clip(tmp_path / "clip.avi", frames=3) if output == "video" else photo
    args = {
        "image": ["--out", str(disk.path / "o.jpg")],
        "json": ["--json", str(disk.path / "p.jsonl")],
        "video": ["--out", str(disk.path / "o.avi")],
    }[output]
    disk.fill()
    code = device_main(["--source", str(source), "--quiet", *args], model_dir=str(tiny))
    line = one_error(capsys, code, str(disk.path), prefix="run.py: error:")
    assert "No space left on device" in line or "is the disk full" in line
    assert disk.contents() == []
    disk.free()  # control
    assert device_main(["--source", str(source), "--quiet", *args], model_dir=str(tiny)) == 0
    assert len(disk.contents()) == 1


def test_run_py_outputs_into_a_read_only_folder_or_under_a_file(tiny, photo, read_only, capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for args in (
        ["--out", str(read_only.path / "o.jpg")],
        ["--json", str(read_only.path / "p.jsonl")],
        ["--out", str(blocker / "o.jpg")],
        ["--json", str(blocker / "sub" / "p.jsonl")],
    ):
        one_error(
            capsys,
            device_main(["--source", str(photo), *args], model_dir=str(tiny)),
            args[1],
            "run.py: error:",
        )
    assert read_only.contents() == [] and sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "ro"]


def test_a_failed_folder_run_removes_the_outputs_it_made(tiny, photo, tmp_path, capsys, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(photo, frames / name)
    calls = []
    real = device_atomic.os.replace

    def third_fails(src, dst):  # the third image hits the full disk
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        return real(src, dst)

    monkeypatch.setattr(device_atomic.os, "replace", third_fails)
    out = tmp_path / "annotated"
    args = ["--source", str(frames), "--out", str(out), "--json", str(tmp_path / "p.jsonl"), "--quiet"]
    one_error(
        capsys, device_main(args, model_dir=str(tiny)), "c.jpg: No space left on device", "run.py: error:"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # the two images made before went too
    monkeypatch.undo()
    assert device_main(args, model_dir=str(tiny)) == 0  # control
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]


# ------------------------------------------------------------------------------ kill -9 while publishing

PUBLISH = """
import os, signal, sys
from pathlib import Path
import edgepose.atomic as atomic

out, step, swap = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "swap"

def reached(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)

atomic._step = reached
if not swap:
    atomic._exchange = lambda a, b: False  # a system without an atomic swap
with atomic.staged_dir(out, lambda path: None) as stage:
    for i in range(20):
        (stage / "part{}".format(i)).write_bytes(b"new" * 1000)
        if step == "writing" and i == 10:
            os.kill(os.getpid(), signal.SIGKILL)
    (stage / "version").write_text("new")
"""
SWAP_STEPS = ["locked", "recovered", "writing", "staged", "exchanged", "published"]
FALLBACK_STEPS = ["locked", "recovered", "writing", "staged", "set-aside", "renamed", "published"]


def publish_in_child(out, step, mode):
    return subprocess.run(
        [sys.executable, "-c", PUBLISH, str(out), step, mode], capture_output=True, text=True, timeout=60
    )


def version(folder):
    """'old' or 'new' for a complete folder; anything else is a half state."""
    if not folder.is_dir():
        return "missing"
    v = (folder / "version").read_text() if (folder / "version").is_file() else "none"
    parts = sorted(p.name for p in folder.iterdir() if p.name.startswith("part"))
    whole = {"old": parts == ["part_old"], "new": len(parts) == 20}
    return v if whole.get(v) else f"half ({v}, {len(parts)} parts)"


@pytest.mark.parametrize(
    "mode,step", [("swap", s) for s in SWAP_STEPS] + [("rename", s) for s in FALLBACK_STEPS]
)
def test_kill_9_at_each_step_of_publishing_leaves_the_old_or_the_new_folder(tmp_path, mode, step):
    out = tmp_path / "art"
    out.mkdir()
    (out / "version").write_text("old")
    (out / "part_old").write_text("old")
    proc = publish_in_child(out, step, mode)
    assert proc.returncode == -9, proc.stderr  # it really was killed there
    state = version(out)
    if mode == "rename" and step == "set-aside":
        # The one window without a swap: the old folder waits under its aside name for the next run.
        assert state == "missing" and any(p.name.endswith(".old") for p in tmp_path.iterdir())
    else:
        assert state in ("old", "new"), state
    expected_new = {"exchanged", "published", "renamed"}
    if state in ("old", "new"):
        assert state == ("new" if step in expected_new else "old")
    # Control: the next run on the path finds the leftovers, removes them, and publishes.
    done = publish_in_child(out, "none", mode)
    assert done.returncode == 0, done.stderr
    assert version(out) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


RACE = """
import sys, time
from pathlib import Path
import edgepose.atomic as atomic
from edgepose.errors import EdgeposeError

out, go, me, rounds, hold = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
(go.parent / ("ready-" + me)).write_text("")
while not go.exists():
    time.sleep(0.001)
for _ in range(rounds):
    try:
        with atomic.staged_dir(out, lambda path: None) as stage:
            for i in range(5):
                (stage / "part{}".format(i)).write_text(me)
            time.sleep(hold)
        print("published")
    except EdgeposeError as exc:
        print("refused: " + str(exc))
"""


def race(tmp_path, runners, rounds, hold):
    out, go = tmp_path / "art", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(out), str(go), f"p{i}", str(rounds), str(hold)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(runners)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < runners and time.monotonic() < deadline:
        time.sleep(0.01)  # every runner has started and waits at the line
    go.write_text("")
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in results]
    go.unlink()
    for ready in tmp_path.glob("ready-*"):
        ready.unlink()
    lines = [line for out_text, _ in results for line in out_text.splitlines()]
    return out, lines


def test_two_exports_publishing_at_once_one_wins_the_other_gets_one_line(tmp_path):
    out, lines = race(tmp_path, runners=2, rounds=1, hold=2.0)
    assert sorted(line.split(":")[0] for line in lines) == ["published", "refused"], lines
    assert "another edgepose run is writing" in [x for x in lines if x.startswith("refused")][0]
    writer = {p.read_text() for p in out.iterdir()}
    assert len(writer) == 1  # one runner's complete folder, not a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no orphans, no lock file


def test_many_exports_racing_on_one_path_never_leave_a_mix_or_an_orphan(tmp_path):
    out, lines = race(tmp_path, runners=3, rounds=30, hold=0.0)
    assert len(lines) == 90 and any(x == "published" for x in lines)
    assert all(x == "published" or "another edgepose run is writing" in x for x in lines), lines
    assert len({p.read_text() for p in out.iterdir()}) == 1 and len(list(out.iterdir())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_a_locked_path_is_one_line_from_the_cli(tmp_path, capsys, fake_lowering):
    from edgepose.atomic import path_lock

    out, held, release = tmp_path / "art", threading.Event(), threading.Event()

    def hold():
        with path_lock(out.absolute()):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(10)
        one_error(capsys, export(out), "another edgepose run is writing")
    finally:
        release.set()
        holder.join()
    assert export(out) == 0  # control: once the other run is done


# ------------------------------------------------------------------------------------------ records


def record(median):
    return {"schema": SCHEMA, "model": "m", "timed": f"t{median}", "date": f"2026-01-0{median}T00:00:00Z",
            "stats": {"median_ms": float(median)}}  # fmt: skip


def test_a_torn_line_is_reported_skipped_and_never_swallows_the_next_record(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    writer = RecordWriter(str(path))
    writer.write(record(1))
    with open(path, "a") as fh:
        fh.write('{"schema": "edgepose.bench/1", "mod')  # a crash mid-line (an older writer)
    writer.write(record(2))  # starts on a fresh line
    writer.write(record(3))
    assert [r["stats"]["median_ms"] for r in read_records([path])] == [1.0, 2.0, 3.0]
    assert f"{path}:2: not a whole JSON record" in capsys.readouterr().err
    code = edgepose_main(["report", "--raw", "--records", str(path), "--format", "csv"])
    out, err = capsys.readouterr()
    assert code == 0 and len(out.strip().splitlines()) == 4  # header + the three records
    assert edgepose_errors(err, "warning:") == [
        f"warning: {path}:2: not a whole JSON record (torn or edited), skipped"
    ]


def test_a_record_that_does_not_fit_on_the_disk_leaves_no_half_line(disk):
    path = disk.path / "r.jsonl"
    writer = RecordWriter(str(path))
    writer.write(record(1))
    before = path.read_bytes()
    disk.fill()  # the records file's last page still has room for part of a line
    big = dict(record(2), notes=["x" * 9000])
    with pytest.raises(OSError) as info:
        writer.write(big)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before  # all or nothing
    disk.free()
    writer.write(big)  # control
    assert [r["stats"]["median_ms"] for r in read_records([path])] == [1.0, 2.0]


def test_the_bench_timer_on_a_full_disk_is_one_line(tiny, disk, capsys):
    from edgepose.device.bench import main as bench_main

    disk.fill()
    code = bench_main(["--runs", "2", "--warmup", "0", "--no-pipeline", "--quiet", "--out", str(disk.path / "r.jsonl")],
                      model_dir=str(tiny))  # fmt: skip
    one_error(capsys, code, "No space left on device")
    assert disk.contents() == []  # not even an empty records file
    disk.free()
    assert bench_main(["--runs", "2", "--warmup", "0", "--no-pipeline", "--quiet", "--out", str(disk.path / "r.jsonl")],
                      model_dir=str(tiny)) == 0  # fmt: skip
    assert len(read_records([disk.path / "r.jsonl"])) == 1


# ------------------------------------------------------------------------- edited artifact folders


@pytest.fixture()
def copy(tiny, tmp_path):
    return Path(shutil.copytree(tiny, tmp_path / "copy"))


def edit_manifest(folder, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def run_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("run.py: error:")]


def test_the_device_script_refuses_a_manifest_that_disagrees_with_its_model(copy, photo):
    assert run_py(copy, "--source", photo, "--quiet").returncode == 0  # control
    edit_manifest(copy, lambda m: m["input"].update(shape=[1, 3, 80, 80]))
    proc = run_py(copy, "--source", photo)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = run_lines(proc)
    assert "input input of model.onnx is [1, 3, 64, 64], but manifest.json says [1, 3, 80, 80]" in line
    edit_manifest(copy, lambda m: m["outputs"][1].update(shape=[1, 14, 40, 40]))
    proc = run_py(copy, "--source", photo)
    assert len(run_lines(proc)) == 2  # one line per difference
    assert (
        "output heatmaps of model.onnx is [1, 14, 32, 32], but manifest.json says [1, 14, 40, 40]"
        in proc.stderr
    )


def test_the_device_script_refuses_edited_code_and_model_files(copy, photo):
    with open(copy / "edgepose_device" / "draw.py", "a") as fh:
        fh.write("\n# edited by hand\n")
    proc = run_py(copy, "--source", photo)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = run_lines(proc)
    assert "edgepose_device/draw.py in" in line and "does not match its manifest" in line
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes() + b"\0")
    (copy / "run.py").rename(copy / "run_moved.py")
    proc = subprocess.run([sys.executable, str(copy / "run_moved.py"), "--source", str(photo)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = run_lines(proc)
    assert proc.returncode == 2 and len(lines) == 3, proc.stderr  # one line per file
    assert "edgepose_device/draw.py in" in lines[0] and "model.onnx in" in lines[1]
    assert "run.py in" in lines[2] and "is missing" in lines[2]


@pytest.mark.slow
def test_the_tflite_runtime_refuses_a_manifest_that_disagrees_with_its_model(tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (export extra)")
    pytest.importorskip("ai_edge_litert", reason="the TFLite runtime is ai-edge-litert")
    folder = exported("litepose-xs", "rpi4", (128, 128), "crowdpose")[0]  # shared with test_device_runtime
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    manifest = json.loads((copy / "manifest.json").read_text())
    runtime = open_runtime(str(copy), manifest)  # control
    assert set(runtime.run(np.zeros((1, 3, 128, 128), np.float32))) == {"heatmaps_tags", "heatmaps"}
    manifest["input"]["shape"] = [1, 160, 160, 3]
    with pytest.raises(
        EdgeposeError, match=r"model.tflite is \[1, 128, 128, 3\], but manifest.json says \[1, 160"
    ):
        open_runtime(str(copy), manifest)


# ------------------------------------------------------------------------- folders of good and bad images


def test_a_folder_source_skips_unreadable_files_and_says_so(tiny, photo, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    data = photo.read_bytes()
    shutil.copy(photo, frames / "a_good.jpg")
    (frames / "b_corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (frames / "c_empty.png").write_bytes(b"")
    (frames / "d_folder.jpg").mkdir()
    (frames / "e_truncated.jpg").write_bytes(data[: len(data) * 2 // 3])  # a copy cut short
    shutil.copy(photo, frames / "f_good.jpg")
    out, poses = tmp_path / "annotated", tmp_path / "poses.jsonl"
    proc = run_py(tiny, "--source", frames, "--out", out, "--json", poses)
    assert proc.returncode == 1, proc.stderr  # some files failed, the rest were processed
    assert "Traceback" not in proc.stderr
    # OpenCV 5 refuses a truncated JPEG (skipped); OpenCV 4 decodes it with gray below the cut (processed).
    cut = data[: len(data) * 2 // 3]
    refused = cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR) is None
    skipped = ["b_corrupt.jpg", "c_empty.png", "d_folder.jpg"] + (["e_truncated.jpg"] if refused else [])
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert [w.split(":")[1].strip() for w in warnings] == ["b_corrupt.jpg", "c_empty.png", "d_folder.jpg",
                                                           "e_truncated.jpg"]  # fmt: skip
    assert "truncated JPEG" in warnings[3] and ("skipped" in warnings[3]) == refused
    assert f"skipped {len(skipped)} unreadable file(s): {', '.join(skipped)}" in proc.stdout
    records = [json.loads(line) for line in poses.read_text().splitlines()]
    assert [r["source"] for r in records] == sorted(p.name for p in frames.iterdir())
    assert [r["source"] for r in records if "skipped" in r] == skipped
    assert all("people" in r for r in records if "skipped" not in r)
    truncated = [r for r in records if r["source"] == "e_truncated.jpg"][0]
    assert (truncated.get("skipped") or truncated.get("warning")).startswith("truncated JPEG")
    written = ["a_good.jpg", "f_good.jpg"] + ([] if refused else ["e_truncated.jpg"])
    assert sorted(p.name for p in out.iterdir()) == sorted(written)
    for bad in ("b_corrupt.jpg", "c_empty.png", "e_truncated.jpg"):
        (frames / bad).unlink()
    (frames / "d_folder.jpg").rmdir()
    control = run_py(tiny, "--source", frames, "--json", poses)
    # (the tiny model's random weights get their own one-line warning; no file does)
    assert control.returncode == 0 and not [
        w for w in control.stderr.splitlines() if w.startswith("warning:")
    ]


def test_a_folder_with_no_readable_image_is_an_error_and_writes_nothing(tiny, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "x.jpg").write_bytes(b"nope")
    (frames / "y.png").write_bytes(b"nope")
    proc = run_py(tiny, "--source", frames, "--json", tmp_path / "p.jsonl", "--out", tmp_path / "o")
    assert proc.returncode == 2 and "no readable image in folder" in run_lines(proc)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
