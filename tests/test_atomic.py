"""Atomic writes: a failure (Ctrl-C included) never leaves a half-written file or folder behind.

The fault-injection tests (full disks, kill -9 while publishing, races) are in test_faults.py.
"""

import errno
import os
import signal
import threading

import pytest

import edgepose.atomic as atomic_mod
import edgepose.device.atomic as device_atomic
from edgepose.atomic import leftovers, path_lock, staged_dir, write_bytes, write_text
from edgepose.device.atomic import AtomicFile, append_line
from edgepose.errors import EdgeposeError


def allow(path):
    """A ``may_replace`` that lets anything be replaced."""


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert names(target.parent) == ["a.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_published_files_and_folders_get_the_users_usual_mode(tmp_path, umask):
    # mkstemp makes 0600 files and mkdtemp 0700 folders: without the fix an artifact is unreadable to others.
    previous = os.umask(umask)
    try:
        write_bytes(tmp_path / "f.bin", b"x")
        with staged_dir(tmp_path / "art") as stage:
            (stage / "model.onnx").write_bytes(b"m")
    finally:
        os.umask(previous)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "art").stat().st_mode & 0o777 == 0o777 & ~umask


def test_ctrl_c_while_writing_leaves_no_temp_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    fh = AtomicFile(target, "wb")
    fh.write(b"half of the new")

    def interrupted(fd):
        raise KeyboardInterrupt

    original = device_atomic.os.fsync
    device_atomic.os.fsync = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            fh.commit()  # used without `with` (as run.py does): commit itself must clean up
    finally:
        device_atomic.os.fsync = original
    assert names(tmp_path) == ["a.txt"] and target.read_text() == "old"


def test_a_write_error_names_the_destination_not_the_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    fh = AtomicFile(target, "w")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(device_atomic.os, "fsync", full)
    with pytest.raises(OSError) as info:
        fh.commit()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert names(tmp_path) == []


def test_staged_dir_publishes_on_success_and_replaces_what_it_may(tmp_path):
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with staged_dir(final, allow) as stage:
        (stage / "model.onnx").write_bytes(b"new")
        assert not (final / "model.onnx").exists()  # nothing visible before success
    assert names(final) == ["model.onnx"]
    assert names(tmp_path) == ["artifact"]


def test_staged_dir_refuses_an_existing_path_unless_allowed(tmp_path):
    final = tmp_path / "thesis"
    final.mkdir()
    (final / "chapter1.tex").write_text("keep")

    def refuse(path):
        raise EdgeposeError(f"{path} is not ours")

    for check in (None, refuse):
        with pytest.raises(EdgeposeError):
            with staged_dir(final, check) as stage:
                (stage / "model.onnx").write_bytes(b"x")
    assert (final / "chapter1.tex").read_text() == "keep"
    assert names(tmp_path) == ["thesis"]


def test_staged_dir_failure_leaves_nothing_not_even_the_folders_it_made(tmp_path):
    final = tmp_path / "new" / "deeper" / "artifact"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as stage:
            (stage / "model.onnx").write_bytes(b"half")
            raise RuntimeError("parity check failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_staged_dir_failure_keeps_previous_artifact(tmp_path, error):
    # KeyboardInterrupt is not an Exception: only `except BaseException` removes the staging folder on Ctrl-C.
    final = tmp_path / "artifact"
    final.mkdir()
    (final / "model.onnx").write_bytes(b"good")
    with pytest.raises(error):
        with staged_dir(final, allow) as stage:
            (stage / "model.onnx").write_bytes(b"bad")
            raise error("boom")
    assert (final / "model.onnx").read_bytes() == b"good"
    assert names(tmp_path) == ["artifact"]


def test_staged_dir_turns_a_storage_error_into_one_line_naming_the_path(tmp_path):
    final = tmp_path / "artifact"
    with pytest.raises(EdgeposeError, match=r"cannot write .*artifact: model.onnx: No space left on device"):
        with staged_dir(final) as stage:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stage / "model.onnx"))
    assert list(tmp_path.iterdir()) == []


def test_leftovers_are_recognised_by_name_and_removed_by_the_next_run(tmp_path):
    final = tmp_path / "art"
    final.mkdir()
    (final / "model.onnx").write_bytes(b"old")
    stale = tmp_path / ".art.k3j5x9_q.staging"
    stale.mkdir()
    (tmp_path / ".art.lock").write_text("")  # a killed run's lock file: no process holds it
    others = [".art.old", ".artwork.abcdefgh.staging", ".art.b.abcdefgh.staging", "art.k3j5x9_q.staging"]
    for name in others:  # not ours: another path's leftovers, or a user's files
        (tmp_path / name).mkdir()
    assert leftovers(final) == [stale]
    with staged_dir(final, allow) as stage:
        (stage / "model.onnx").write_bytes(b"new")
    assert (final / "model.onnx").read_bytes() == b"new"
    assert names(tmp_path) == sorted(["art", *others])


def test_a_copy_set_aside_by_a_killed_run_is_put_back_first(tmp_path):
    # The no-swap fallback renames the old folder aside before renaming the new one in; killed in
    # between, only the aside copy exists. The next run on the path restores it before anything else.
    final = tmp_path / "art"
    aside = tmp_path / ".art.abcd1234.old"
    aside.mkdir()
    (aside / "model.onnx").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with staged_dir(final, allow):
            raise RuntimeError("this export fails")
    assert (final / "model.onnx").read_bytes() == b"old"
    assert names(tmp_path) == ["art"]


def test_without_an_atomic_swap_the_two_renames_still_replace(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_mod, "_exchange", lambda a, b: False)
    final = tmp_path / "art"
    final.mkdir()
    (final / "model.onnx").write_bytes(b"old")
    with staged_dir(final, allow) as stage:
        (stage / "model.onnx").write_bytes(b"new")
    assert (final / "model.onnx").read_bytes() == b"new"
    assert names(tmp_path) == ["art"]


def test_the_swap_exchanges_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not atomic_mod._exchange(a, b):
        pytest.skip("this system or file system has no atomic swap (the fallback is tested above)")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_a_second_run_on_a_locked_path_fails_at_once(tmp_path):
    final = tmp_path / "art"
    entered, release = threading.Event(), threading.Event()

    def hold():
        with path_lock(final):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(10)
        with pytest.raises(EdgeposeError, match="another edgepose run is writing"):
            with staged_dir(final):
                pass
    finally:
        release.set()
        holder.join()
    assert list(tmp_path.iterdir()) == []  # the lock file goes with its holder


def test_append_line_starts_a_fresh_line_after_a_torn_one(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"torn": ')
    append_line(str(path), '{"b": 2}')
    assert path.read_text().splitlines() == ['{"a": 1}', '{"torn": ', '{"b": 2}']


def test_append_line_is_all_or_nothing_on_a_short_write(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    append_line(str(path), '{"a": 1}')
    real_write = os.write

    def half(fd, data):  # what a filling disk does: part of the buffer, then no more
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(device_atomic.os, "write", half)
    with pytest.raises(OSError) as info:
        append_line(str(path), '{"b": 2, "long": "' + "x" * 100 + '"}')
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_text() == '{"a": 1}\n'


@pytest.fixture()
def ctrl_c_raises():
    """Ctrl-C as in a terminal session (a test worker may run with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_a_record_is_synced_keeps_the_whole_line(tmp_path, monkeypatch, ctrl_c_raises):
    path = tmp_path / "r.jsonl"
    real_fsync = os.fsync

    def slow_disk(fd):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the disk syncs the finished line
        return real_fsync(fd)

    monkeypatch.setattr(device_atomic.os, "fsync", slow_disk)
    with pytest.raises(KeyboardInterrupt):  # still delivered, once the line is safe
        append_line(str(path), '{"a": 1}')
    assert path.read_text() == '{"a": 1}\n'
