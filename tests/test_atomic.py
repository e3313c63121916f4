"""Atomic writes: a failure (Ctrl-C included) never leaves a half-written file or folder behind.

The fault-injection tests (full disks, kill -9 while publishing, races) are in test_faults.py.
"""

import errno
import os
import re
import signal
import sys
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


# ---- the system calls behind the swap, and the error plumbing, one at a time ----


class FakeLibc:
    """A C library with only the named functions; each records its arguments and returns ``result``."""

    def __init__(self, result=0, error=0, **functions):
        self.calls = []
        for name in functions:
            setattr(self, name, self._record(name, result, error))

    def _record(self, name, result, error):
        import ctypes

        def call(*args):
            self.calls.append((name, args))
            ctypes.set_errno(error)
            return result

        return call


def folders(tmp_path, *names_):
    out = []
    for name in names_:
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text(name)
        out.append(tmp_path / name)
    return out


def test_the_swap_through_the_raw_system_call_where_libc_lacks_renameat2(tmp_path, monkeypatch):
    import ctypes
    import ctypes.util
    import platform

    if not sys.platform.startswith("linux") or platform.machine() not in atomic_mod._SYS_RENAMEAT2:
        pytest.skip("the raw renameat2 system call is the Linux fallback")
    real = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    only_syscall = type("Libc", (), {"syscall": staticmethod(real.syscall)})()
    monkeypatch.setattr(atomic_mod, "_libc", lambda: only_syscall)
    a, b = folders(tmp_path, "a", "b")
    assert atomic_mod._exchange(a, b) is True
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    assert atomic_mod._rename_noreplace(a, b) is False  # b exists: EEXIST, nothing moved
    assert (
        atomic_mod._rename_noreplace(a, tmp_path / "c") is True and (tmp_path / "c" / "x").read_text() == "b"
    )
    with pytest.raises(FileNotFoundError) as info:  # a real error names the destination
        atomic_mod._exchange(tmp_path / "missing", b)
    assert info.value.filename == str(b) and info.value.strerror == os.strerror(errno.ENOENT)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the renameat2 arguments are Linux's")
def test_renameat2_gets_both_paths_relative_to_the_working_folder_and_the_flag(tmp_path, monkeypatch):
    libc = FakeLibc(renameat2=True)
    monkeypatch.setattr(atomic_mod, "_libc", lambda: libc)
    assert atomic_mod._exchange(tmp_path / "a", tmp_path / "b") is True
    assert atomic_mod._rename_flags(tmp_path / "c", tmp_path / "d", 1, 4) is True
    (name, (d1, a, d2, b, flag)), (_, (*_, flag2)) = libc.calls
    assert name == "renameat2" and d1 == d2 == -100  # AT_FDCWD
    assert (a, b) == (os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b"))
    assert (flag.value, flag2.value) == (2, 1)  # RENAME_EXCHANGE; RENAME_NOREPLACE


def test_macos_uses_renamex_np_with_its_own_flags(tmp_path, monkeypatch):
    libc = FakeLibc(renamex_np=True)
    monkeypatch.setattr(atomic_mod, "_libc", lambda: libc)
    monkeypatch.setattr(atomic_mod.sys, "platform", "darwin")
    assert atomic_mod._exchange(tmp_path / "a", tmp_path / "b") is True
    assert atomic_mod._rename_flags(tmp_path / "c", tmp_path / "d", 1, 4) is True
    (name, (a, b, flag)), (_, (_, _, flag2)) = libc.calls
    assert name == "renamex_np" and (a, b) == (os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b"))
    assert (flag.value, flag2.value) == (2, 4)  # RENAME_SWAP; RENAME_EXCL
    # A macOS without renamex_np, another system, or an unsupported flag: no swap here (None), no error.
    monkeypatch.setattr(atomic_mod, "_libc", lambda: FakeLibc(renameat2=True))
    assert atomic_mod._rename_flags(tmp_path / "a", tmp_path / "b", 2, 2) is None
    monkeypatch.setattr(atomic_mod.sys, "platform", "sunos5")
    monkeypatch.setattr(atomic_mod, "_libc", lambda: FakeLibc(renameat2=True, renamex_np=True))
    assert atomic_mod._rename_flags(tmp_path / "a", tmp_path / "b", 2, 2) is None


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP])
def test_an_unsupported_swap_is_no_swap_and_other_errors_are_errors(tmp_path, monkeypatch, code):
    monkeypatch.setattr(atomic_mod.sys, "platform", "linux")
    monkeypatch.setattr(atomic_mod, "_libc", lambda: FakeLibc(result=-1, error=code, renameat2=True))
    assert atomic_mod._exchange(tmp_path / "a", tmp_path / "b") is False
    monkeypatch.setattr(atomic_mod, "_libc", lambda: FakeLibc(result=-1, error=errno.EXDEV, renameat2=True))
    with pytest.raises(OSError) as info:
        atomic_mod._exchange(tmp_path / "a", tmp_path / "b")
    assert (info.value.errno, info.value.strerror, info.value.filename) == (
        errno.EXDEV,
        os.strerror(errno.EXDEV),
        str(tmp_path / "b"),
    )


def test_without_the_noreplace_flag_a_plain_rename_that_never_replaces(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_mod, "_rename_flags", lambda *a: None)
    a, b = folders(tmp_path, "a", "b")
    assert atomic_mod._rename_noreplace(a, b) is False and (b / "x").read_text() == "b"
    assert atomic_mod._rename_noreplace(a, tmp_path / "c") is True
    assert not a.exists() and (tmp_path / "c" / "x").read_text() == "a"


def test_remove_takes_files_folders_and_links_but_never_what_a_link_points_to(tmp_path):
    (target,) = folders(tmp_path, "target")
    link = tmp_path / "link"
    link.symlink_to(target)
    atomic_mod._remove(link)
    assert not os.path.lexists(link) and (target / "x").read_text() == "target"
    (tmp_path / "file").write_text("f")
    atomic_mod._remove(tmp_path / "file")
    (target / "sub").mkdir()
    os.chmod(target / "sub", 0o500)  # rmtree errors are ignored: what can go, goes
    try:
        atomic_mod._remove(target)
    finally:
        os.chmod(target / "sub", 0o700) if (target / "sub").exists() else None
    atomic_mod._remove(tmp_path / "never-there")  # nothing to remove: no error
    assert names(tmp_path) in ([], ["target"])


def test_storage_error_text_names_the_file_it_concerns(tmp_path):
    final, stage = tmp_path / "art", tmp_path / ".art.abcdefgh.staging"
    enospc = OSError(errno.ENOSPC, "No space left on device", str(stage / "model.onnx"))
    assert atomic_mod._cause(enospc, stage, final) == "model.onnx: No space left on device"
    assert atomic_mod._cause(OSError(errno.ENOSPC, "No space", str(stage)), stage, final) == "No space"
    assert atomic_mod._cause(OSError(errno.EIO, "I/O error", "/elsewhere/f"), stage, final) == "I/O error"
    assert atomic_mod._cause(OSError(errno.EIO, "I/O error"), stage, final) == "I/O error"  # no file named
    assert atomic_mod._cause(OSError("plain text"), None, final) == "plain text"
    # ENOENT creating in an existing folder (/proc, /sys) before any staging folder exists:
    enoent = OSError(errno.ENOENT, "No such file or directory", str(tmp_path / ".art.x.staging"))
    assert (
        atomic_mod._cause(enoent, None, final)
        == f"{tmp_path} does not accept new files (No such file or directory)"
    )
    assert atomic_mod._cause(enoent, stage, final) == "No such file or directory"
    assert atomic_mod._cause(enoent, None, tmp_path / "no" / "art") == "No such file or directory"
    assert atomic_mod._cause(enoent, None, None) == "No such file or directory"
    assert atomic_mod._concerns(OSError(errno.EIO, "x"), final)  # no file named: ours
    assert atomic_mod._concerns(OSError(errno.EIO, "x", str(tmp_path / "a" / "b")), final)
    assert not atomic_mod._concerns(OSError(errno.EIO, "x", "/etc/passwd"), final)


def test_about_names_the_destination_and_keeps_other_errors(tmp_path):
    renamed = device_atomic._about(OSError(errno.EACCES, "Permission denied", "/tmp/.x.tmp"), tmp_path / "f")
    assert (renamed.errno, renamed.strerror, renamed.filename) == (
        errno.EACCES,
        "Permission denied",
        str(tmp_path / "f"),
    )
    assert isinstance(renamed, PermissionError)
    bare = device_atomic._about(OSError(errno.EIO, None), "f")
    assert bare.strerror == os.strerror(errno.EIO) and bare.filename == "f"
    other, no_errno = ValueError("x"), OSError("no errno")
    assert device_atomic._about(other, "f") is other and device_atomic._about(no_errno, "f") is no_errno


def test_temp_name_is_hidden_next_to_the_file_with_its_extension(tmp_path):
    name = device_atomic.temp_name(str(tmp_path / "out.mp4"))
    assert name == str(tmp_path / f".out.{os.getpid()}.partial.mp4")
    assert device_atomic.temp_name("rel/clip") == os.path.abspath(f"rel/.clip.{os.getpid()}.partial")


def test_publish_failure_names_the_destination_and_removes_the_temporary_file(tmp_path):
    tmp = tmp_path / ".f.tmp"
    tmp.write_bytes(b"x")
    with pytest.raises(FileNotFoundError) as info:
        device_atomic.publish(str(tmp), str(tmp_path / "missing-folder" / "f"))
    assert info.value.filename == str(tmp_path / "missing-folder" / "f") and not tmp.exists()
    device_atomic.discard(None)  # nothing to discard: no error
    device_atomic.discard(str(tmp))


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_append_line_creates_files_with_the_users_usual_mode(tmp_path, umask):
    previous = os.umask(umask)
    try:
        append_line(str(tmp_path / "new" / "r.jsonl"), "{}")  # and the folder
    finally:
        os.umask(previous)
    assert (tmp_path / "new" / "r.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "new" / "r.jsonl").read_text() == "{}\n"


def test_append_line_after_a_whole_line_adds_no_blank_line(tmp_path):
    path = tmp_path / "r.jsonl"
    for text, line, want in [
        ("a\n", "b", "a\nb\n"),
        ("ab\n", "c", "ab\nc\n"),
        ("ab", "c", "ab\nc\n"),
        ("", "é", "é\n"),
    ]:
        path.write_text(text, encoding="utf-8")
        append_line(str(path), line)
        assert path.read_text(encoding="utf-8") == want, text


def test_a_failed_append_removes_only_the_empty_file_it_made(tmp_path, monkeypatch):
    monkeypatch.setattr(device_atomic.os, "write", lambda fd, data: 0)
    new, empty, full = tmp_path / "new.jsonl", tmp_path / "empty.jsonl", tmp_path / "full.jsonl"
    empty.write_text("")
    full.write_text("a\n")
    for path in (new, empty, full):
        with pytest.raises(OSError) as info:
            append_line(str(path), "b")
        assert (info.value.errno, info.value.strerror, info.value.filename) == (
            errno.ENOSPC,
            os.strerror(errno.ENOSPC),
            str(path),
        )
    assert not new.exists() and empty.read_text() == "" and full.read_text() == "a\n"


def test_append_line_errors_name_the_file(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        append_line(str(tmp_path / "dir.jsonl"), "x")
    assert info.value.filename == str(tmp_path / "dir.jsonl")


def test_the_temporary_file_is_hidden_next_to_the_destination_until_commit(tmp_path):
    fh = AtomicFile(tmp_path / "f.bin")  # binary by default
    fh.write(b"data")
    (temp,) = os.listdir(tmp_path)  # in the destination's folder (a rename never crosses file systems)
    assert temp.startswith(".f.bin.") and temp.endswith(".tmp") and len(temp) > len(".f.bin..tmp")
    fh.commit()
    assert names(tmp_path) == ["f.bin"] and (tmp_path / "f.bin").read_bytes() == b"data"


def test_an_error_inside_the_block_propagates_and_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicFile(tmp_path / "f.bin") as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert names(tmp_path) == []


def test_the_newest_set_aside_copy_is_the_one_put_back(tmp_path):
    final = tmp_path / "art"
    old, older = tmp_path / ".art.aaaaaaaa.old", tmp_path / ".art.bbbbbbbb.old"
    for path, when in ((old, 2_000_000_000), (older, 1_000_000_000)):
        path.mkdir()
        (path / "which").write_text(path.name)
        os.utime(path, (when, when))
    atomic_mod._recover(final)
    assert (final / "which").read_text() == old.name and names(tmp_path) == ["art"]


def test_may_replace_is_asked_about_the_final_path_and_refusal_names_it(tmp_path):
    final = tmp_path / "art"
    final.mkdir()
    asked = []
    with staged_dir(final, asked.append) as stage:
        (stage / "f").write_text("new")
    assert asked == [final, final]  # before the block and again before publishing
    with pytest.raises(EdgeposeError, match=f"^{final} already exists$"):
        with staged_dir(final):
            pass


def test_the_lock_file_has_the_users_usual_mode_while_held(tmp_path):
    previous = os.umask(0o022)
    try:
        with path_lock(tmp_path / "art"):
            mode = (tmp_path / ".art.lock").stat().st_mode & 0o777
    finally:
        os.umask(previous)
    assert mode == 0o644


def test_publishing_steps_in_order_with_and_without_the_swap(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(atomic_mod, "_step", lambda name: seen.append((name, names(tmp_path))))
    final = tmp_path / "art"
    with staged_dir(final, allow):
        pass
    assert [s for s, _ in seen] == ["locked", "recovered", "staged", "published"]  # nothing to replace
    seen.clear()
    with staged_dir(final, allow):
        pass
    assert [s for s, _ in seen] == ["locked", "recovered", "staged", "exchanged", "published"]
    seen.clear()
    monkeypatch.setattr(atomic_mod, "_exchange", lambda a, b: False)
    with staged_dir(final, allow):
        pass
    assert [s for s, _ in seen] == ["locked", "recovered", "staged", "set-aside", "renamed", "published"]
    aside = [n for n in dict(seen)["set-aside"] if n.endswith(".old")]
    assert len(aside) == 1 and atomic_mod.leftovers(final) == [] and names(tmp_path) == ["art"]
    assert re.fullmatch(r"\.art\.[a-z0-9_]{8}\.old", aside[0])  # what _recover recognises after a kill


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_mod, "_exchange", lambda a, b: False)
    final = tmp_path / "art"
    final.mkdir()
    (final / "f").write_text("old")
    real_rename = os.rename

    def fail_moving_in(src, dst):
        if str(src).endswith(".staging"):
            raise OSError(errno.EIO, "I/O error", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(atomic_mod.os, "rename", fail_moving_in)
    with pytest.raises(EdgeposeError, match="I/O error"):
        with staged_dir(final, allow) as stage:
            (stage / "f").write_text("new")
    assert (final / "f").read_text() == "old" and names(tmp_path) == ["art"]


def test_a_folder_that_appears_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_mod, "_rename_noreplace", lambda src, dst: False)
    final = tmp_path / "art"
    with pytest.raises(
        EdgeposeError, match=f"^{final} appeared while edgepose was writing it; nothing was replaced$"
    ):
        with staged_dir(final):
            pass
    assert names(tmp_path) == []


def test_leftovers_that_resist_removal_do_not_fail_the_run(tmp_path, monkeypatch):
    def rmtree(path, ignore_errors=False):
        if not ignore_errors:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(atomic_mod.shutil, "rmtree", rmtree)
    (tmp_path / "d").mkdir()
    atomic_mod._remove(tmp_path / "d")


def test_macos_no_replace_asks_for_rename_excl(tmp_path, monkeypatch):
    libc = FakeLibc(renamex_np=True)
    monkeypatch.setattr(atomic_mod, "_libc", lambda: libc)
    monkeypatch.setattr(atomic_mod.sys, "platform", "darwin")
    assert atomic_mod._rename_noreplace(tmp_path / "a", tmp_path / "b") is True
    ((_, (_, _, flag)),) = libc.calls
    assert flag.value == 4  # RENAME_EXCL


def test_a_lock_file_removed_under_a_new_holder_is_taken_again(tmp_path, monkeypatch):
    real_stat, calls = os.stat, []

    def stat_once_missing(path, *a, **k):
        if str(path).endswith(".lock") and not calls:
            calls.append(path)
            raise FileNotFoundError(errno.ENOENT, "gone", str(path))
        return real_stat(path, *a, **k)

    monkeypatch.setattr(atomic_mod.os, "stat", stat_once_missing)
    with path_lock(tmp_path / "art"):
        assert (tmp_path / ".art.lock").exists() and len(calls) == 1  # retried once, then held
    assert names(tmp_path) == []


def test_atomic_file_errors_name_the_destination_and_leave_nothing(tmp_path):
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(OSError) as info:
        AtomicFile(tmp_path / "file" / "f.bin")  # its folder cannot be made
    assert info.value.filename == str(tmp_path / "file" / "f.bin")
    fh = AtomicFile(tmp_path / "f.bin")

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device", "/tmp/.hidden")

        def close(self):
            pass

    real, fh.fh = fh.fh, FullDisk()
    with pytest.raises(OSError) as info:
        fh.write(b"x")
    real.close()
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(tmp_path / "f.bin"))
    assert names(tmp_path) == ["file"]


def test_the_kernels_no_replace_answer_is_final_even_where_nothing_was_there_a_moment_ago(
    tmp_path, monkeypatch
):
    # The race a plain check-then-rename loses: the destination appears after any check. With the flag,
    # the kernel's EEXIST is the answer (False, nothing moved), never a rename over what appeared.
    monkeypatch.setattr(atomic_mod.sys, "platform", "linux")
    monkeypatch.setattr(atomic_mod, "_libc", lambda: FakeLibc(result=-1, error=errno.EEXIST, renameat2=True))
    (a,) = folders(tmp_path, "a")
    assert atomic_mod._rename_noreplace(a, tmp_path / "b") is False
    assert (a / "x").read_text() == "a" and not (tmp_path / "b").exists()


def test_a_parent_folder_made_by_another_process_meanwhile_is_no_error(tmp_path, monkeypatch):
    # Another process creates "new" between the existence check and mkdir: no error, and "new" is not
    # counted among the folders made here (a failed export removes those).
    real_mkdir = type(tmp_path).mkdir

    def mkdir_after_someone_else(self, *args, **kwargs):
        if self.name == "new":
            os.mkdir(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", mkdir_after_someone_else)
    assert atomic_mod._make_parents(tmp_path / "new" / "deeper") == [tmp_path / "new" / "deeper"]
    assert (tmp_path / "new" / "deeper").is_dir()
