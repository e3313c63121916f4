"""Run a converter in a child process that Ctrl-C always ends at once, leaving nothing behind.

Why a child: litert-torch imports jax, whose garbage-collection callback can swallow the KeyboardInterrupt
of a Ctrl-C (the export then finishes as if nothing happened), and a converter interrupted half-way can
abort the whole process (exit 134, no message). So :func:`run_isolated` runs the function in a fresh
Python (``python -m edgepose.export.isolated FOLDER``; a fresh interpreter, like multiprocessing's
'spawn', never a fork of a process with threads) in its own session: a terminal's Ctrl-C reaches only
the parent, which kills the child (SIGKILL: it holds nothing worth saving), waits for it and removes its
private folder. The child also ends itself, removing that folder, if the parent dies (kill -9).

The function (module-level, pickled by name) and its arguments travel as a pickle in the private folder;
the child writes the returned bytes there. An EdgeposeError in the child comes back as the same one
line, a crash as one line naming the signal or exit status; either after the tail of what the child
printed (the converters' own logs, silent when all goes well).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgepose.device.atomic import deferred_interrupts
from edgepose.errors import EdgeposeError

CALL, RESULT, ERROR, LOG = "call.pkl", "result.bin", "error.txt", "log.txt"
LOG_TAIL = 4000  # characters of the child's output shown when it crashes
FAILED = 2  # the child's exit status after an EdgeposeError (its message is in ERROR)


def run_isolated(func: Callable[..., bytes], *args: object, what: str) -> bytes:
    """``func(*args)`` (bytes) computed in a child process; ``what`` names it in errors ("litert-torch")."""
    with tempfile.TemporaryDirectory(prefix="edgepose-child-") as tmp:
        folder = Path(tmp)
        with open(folder / CALL, "wb") as fh:
            pickle.dump((func, args), fh, protocol=pickle.HIGHEST_PROTOCOL)
        code = _run_child(folder)
        if code == 0:
            return (folder / RESULT).read_bytes()
        tail = (folder / LOG).read_bytes()[-LOG_TAIL:].decode("utf-8", "replace")
        sys.stderr.write(
            tail if tail.endswith("\n") or not tail else tail + "\n"
        )  # the converter's own words
        if code == FAILED and (folder / ERROR).is_file():
            raise EdgeposeError((folder / ERROR).read_text())
        last = (tail.strip().splitlines() or [""])[-1]
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        raise EdgeposeError(f"{what} failed in its child process ({how}): {last}".rstrip(": "))


def _run_child(folder: Path) -> int:
    """Start the child on ``folder`` and wait; on any exception (Ctrl-C) kill it first. Returns its exit status."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    )
    proc = None
    try:
        with open(folder / LOG, "wb") as log, deferred_interrupts():  # no child without its pid kept
            proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(folder), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # not in the terminal's process group: Ctrl-C is the parent's to handle
            )
        return proc.wait()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _exit_with_parent(parent: int, folder: str) -> None:
    """End this child, and remove its folder, when its parent is gone (killed with -9: nobody else will)."""
    while os.getppid() == parent:
        time.sleep(0.2)
    shutil.rmtree(folder, ignore_errors=True)
    os._exit(1)


def child_main(folder: str, parent: int) -> int:
    """The child: load the call, run it, write the result or the error into ``folder``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C means
    threading.Thread(target=_exit_with_parent, args=(parent, folder), daemon=True).start()
    os.environ["TMPDIR"] = folder  # the converters' scratch files go where the parent cleans up
    tempfile.tempdir = folder
    with open(os.path.join(folder, CALL), "rb") as fh:
        func, args = pickle.load(fh)
    try:
        result = func(*args)
    except EdgeposeError as exc:
        with open(os.path.join(folder, ERROR), "w") as fh:
            fh.write(str(exc))
        return FAILED
    with open(os.path.join(folder, RESULT), "wb") as fh:
        fh.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1], int(sys.argv[2])))
