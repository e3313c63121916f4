"""Write files and folders so that a failure never leaves a half-written artifact behind.

Files: the one atomic-write helper lives device-side (:mod:`edgepose.device.atomic`, Python 3.6) and is
re-exported here; folders: :func:`staged_dir`, which builds a folder under a hidden staging name and
publishes it at the final path.

What publishing promises (README, "What edgepose promises"):

- Nothing that exists at the final path is replaced unless the caller's ``may_replace`` check allows it
  (export: an edgepose artifact folder holding only files edgepose wrote, or ``--force``).
- Replacing is atomic at every instant: on Linux (``renameat2(RENAME_EXCHANGE)``) and macOS
  (``renamex_np(RENAME_SWAP)``) the old and the new folder swap names in one system call, so a kill at any
  point leaves the old or the new folder at the path. Where the system or file system cannot swap
  (other systems, some network file systems), the old folder is renamed aside and the new one renamed
  in: a kill between those two renames leaves the old folder as ``.NAME.XXXXXXXX.old``, which the next run
  on the path renames back before anything else.
- Leftovers of a killed run (``.NAME.XXXXXXXX.staging``, ``.NAME.XXXXXXXX.old``, ``.NAME.lock``) are
  recognised by those names and removed by the next run on the same path.
- One run at a time per path: a lock next to the path (``flock`` on ``.NAME.lock``) makes a second run
  fail at once with one line instead of racing the first.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgepose.device.atomic import _umask, deferred_interrupts, write_bytes, write_text
from edgepose.errors import EdgeposeError

__all__ = ["staged_dir", "write_bytes", "write_text"]

STAGING = ".staging"
ASIDE = ".old"


def _step(name: str) -> None:
    """Called at each step of publishing; fault-injection tests replace it to kill the process there."""


def leftovers(final: Path) -> list[Path]:
    """Staging folders and set-aside copies that killed runs on ``final`` left next to it."""
    name = re.escape(final.name)
    pattern = re.compile(rf"\.{name}\.[a-z0-9_]{{8}}(?:{re.escape(STAGING)}|{re.escape(ASIDE)})\Z")
    try:
        names = os.listdir(final.parent)
    except FileNotFoundError:
        return []
    return sorted(final.parent / n for n in names if pattern.match(n))


@contextmanager
def path_lock(final: Path) -> Iterator[None]:
    """Hold the lock of ``final`` (``.NAME.lock`` next to it) for the block; fail at once if another run has it.

    The lock file is removed on release. A run that opened the file just before it was removed ends up
    holding a lock on a deleted file, so it checks that it locked the file that is at the name, and
    retries otherwise.
    """
    lock = final.parent / f".{final.name}.lock"
    with deferred_interrupts():  # a Ctrl-C must not leave the lock taken by a file nobody will close
        fd = _acquire(lock, final)
    try:
        yield
    finally:
        with deferred_interrupts():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
            os.close(fd)


def _acquire(lock: Path, final: Path) -> int:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EdgeposeError(
                f"another edgepose run is writing {final} right now: wait for it, or choose another --out"
            ) from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest last."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:  # another process made it meanwhile: not ours to remove on failure
            continue
        created.append(path)
    return created


def _remove(path: Path) -> None:
    """Remove a file or folder tree if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _recover(final: Path) -> None:
    """Clear what killed runs left: restore a set-aside copy when nothing is at ``final``, remove the rest."""
    found = leftovers(final)
    aside = [p for p in found if p.name.endswith(ASIDE)]
    if aside and not os.path.lexists(final):
        newest = max(aside, key=lambda p: p.stat().st_mtime)
        os.rename(newest, final)  # killed between the two renames of the fallback: put the old folder back
        found.remove(newest)
    for path in found:
        _remove(path)


@contextmanager
def staged_dir(final: str | os.PathLike, may_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder next to ``final``; on success it is published at ``final``.

    ``may_replace(final)`` is called when something is at ``final`` (before the block and again before
    publishing) and raises to refuse replacing it; without it, an existing ``final`` is refused. On any
    exception (Ctrl-C included) the staging folder, the lock and the folders created for ``final`` are
    removed and ``final`` is left as it was. An ``OSError`` becomes one line naming ``final`` and the cause.
    """
    final = Path(final).absolute()
    created: list[Path] = []
    stage: Path | None = None
    try:
        with deferred_interrupts():  # what is made is also remembered, so that it can be removed
            created = _make_parents(final.parent)
        with path_lock(final):
            _step("locked")
            _recover(final)
            _step("recovered")
            _check_replace(final, may_replace)
            with deferred_interrupts():
                stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=STAGING, dir=final.parent))
            yield stage
            _step("staged")
            os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; an artifact gets the user's usual mode
            _check_replace(final, may_replace)
            _publish(stage, final)
            stage = None
            _step("published")
    except BaseException as exc:  # Ctrl-C too: no staging folder may survive an interrupted export
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        if isinstance(exc, OSError) and _concerns(exc, final):
            raise EdgeposeError(f"cannot write {final}: {_cause(exc, stage, final)}") from None
        raise


def _check_replace(final: Path, may_replace: Callable[[Path], None] | None) -> None:
    if not os.path.lexists(final):
        return
    if may_replace is None:
        raise EdgeposeError(f"{final} already exists")
    may_replace(final)


def _concerns(exc: OSError, final: Path) -> bool:
    """True when ``exc`` is about writing ``final`` (a file next to or under it, or no file named)."""
    return not exc.filename or Path(os.fsdecode(exc.filename)).absolute().is_relative_to(final.parent)


def _cause(exc: OSError, stage: Path | None, final: Path | None = None) -> str:
    """The reason of ``exc``, with the file it concerns when that is not the folder being written."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT and final is not None and final.parent.is_dir() and stage is None:
        return f"{final.parent} does not accept new files ({reason})"  # /proc, /sys: ENOENT on create
    name = Path(os.fsdecode(exc.filename)) if exc.filename else None
    if stage is not None and name is not None and name.is_relative_to(stage) and name != stage:
        return f"{name.relative_to(stage)}: {reason}"
    return reason


def _publish(stage: Path, final: Path) -> None:
    """Put ``stage`` at ``final``: a swap when something is there (then remove the old), else a rename."""
    if not os.path.lexists(final):
        if not _rename_noreplace(stage, final):
            raise EdgeposeError(f"{final} appeared while edgepose was writing it; nothing was replaced")
        return
    if _exchange(stage, final):
        _step("exchanged")
        _remove(stage)  # the old folder, now under the staging name
        return
    # No atomic swap here: rename the old folder aside, then the new one in (_recover undoes a kill between).
    aside = Path(str(stage)[: -len(STAGING)] + ASIDE)
    os.rename(final, aside)
    _step("set-aside")
    try:
        os.rename(stage, final)
    except BaseException:
        os.rename(aside, final)
        raise
    _step("renamed")
    _remove(aside)


# --- atomic renames through the C library (Linux renameat2, macOS renamex_np) -------------------------

_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2  # linux/fs.h
_RENAME_SWAP, _RENAME_EXCL = 2, 4  # macOS sys/stdio.h
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "armv7l": 382, "armv6l": 382}  # where libc lacks the wrapper
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


@functools.cache
def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _rename_flags(src: Path, dst: Path, linux_flag: int, mac_flag: int) -> bool | None:
    """Rename with a flag; True done, None when this system or file system lacks the call or the flag."""
    libc = _libc()
    a, b = os.fsencode(src), os.fsencode(dst)
    if sys.platform.startswith("linux"):
        if hasattr(libc, "renameat2"):
            result = libc.renameat2(_AT_FDCWD, a, _AT_FDCWD, b, ctypes.c_uint(linux_flag))
        elif os.uname().machine in _SYS_RENAMEAT2:
            number = _SYS_RENAMEAT2[os.uname().machine]
            result = libc.syscall(number, _AT_FDCWD, a, _AT_FDCWD, b, ctypes.c_uint(linux_flag))
        else:
            return None
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        result = libc.renamex_np(a, b, ctypes.c_uint(mac_flag))
    else:
        return None
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return None
    raise OSError(err, os.strerror(err), str(dst))


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names of ``a`` and ``b`` in one step; False where that cannot be done here."""
    return bool(_rename_flags(a, b, _RENAME_EXCHANGE, _RENAME_SWAP))


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` unless something is at ``dst`` (False then)."""
    try:
        done = _rename_flags(src, dst, _RENAME_NOREPLACE, _RENAME_EXCL)
    except FileExistsError:
        return False
    if done is None:  # no flag here: a plain rename (replaces an empty folder that appeared meanwhile)
        if os.path.lexists(dst):
            return False
        os.rename(src, dst)
    return True
