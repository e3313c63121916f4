"""Write a file so that no reader ever sees half of it: a temporary name in the same folder, then a rename.

The one atomic-write helper of edgepose (host and device; Python 3.6, stdlib only). On any failure,
Ctrl-C included, the temporary file is removed and the destination is left as it was; an ``OSError``
names the destination (not the hidden temporary name) with its cause. :func:`append_line` is the
append-only counterpart for JSON-lines records: each line lands whole or not at all.
"""

import contextlib
import errno
import os
import signal
import tempfile
import threading


@contextlib.contextmanager
def deferred_interrupts():
    """Hold a Ctrl-C back until the block ends, then deliver it: for steps that must not be cut in two
    (a file created and not yet remembered, a lock taken and not yet released)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread anyway
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if caught:
            os.kill(os.getpid(), signal.SIGINT)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _about(exc, path):
    """``exc`` again, naming ``path`` (the file the user asked for) instead of a temporary name."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path))


def temp_name(path):
    """A hidden temporary name next to ``path`` with the same extension (OpenCV picks codecs by it)."""
    folder, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(folder, ".{}.{}.partial{}".format(stem, os.getpid(), ext))


def publish(tmp, path):
    """Give the finished temporary file normal permissions and rename it onto ``path``."""
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; published files get the user's usual mode
        os.replace(tmp, path)
    except OSError as exc:
        discard(tmp)
        raise _about(exc, path) from None


def discard(tmp):
    """Remove a temporary file if it is there."""
    if tmp and os.path.exists(tmp):
        os.remove(tmp)


class AtomicFile(object):
    """A file written under a temporary name and renamed onto ``path`` by :meth:`commit`.

    As a context manager it commits on success and discards on any exception (Ctrl-C included). Every
    ``OSError`` (no space, read-only folder, permission denied) names ``path``.
    """

    def __init__(self, path, mode="wb"):
        self.path = os.fspath(path)
        self.tmp = None
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder)
            with deferred_interrupts():  # a temporary file exists only once self.tmp names it
                fd, self.tmp = tempfile.mkstemp(
                    prefix="." + os.path.basename(self.path) + ".", suffix=".tmp", dir=folder
                )
                self.fh = os.fdopen(fd, mode)
        except OSError as exc:
            raise _about(exc, self.path) from None

    def write(self, data):
        try:
            self.fh.write(data)
        except BaseException as exc:  # a full disk, or Ctrl-C mid-write: no temporary file may stay
            self.abort()
            if isinstance(exc, OSError):
                raise _about(exc, self.path) from None
            raise

    def commit(self):
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            publish(self.tmp, self.path)
        except BaseException as exc:  # e.g. the last buffer hits a full disk at flush
            self.abort()
            if isinstance(exc, OSError):
                raise _about(exc, self.path) from None
            raise

    def abort(self):
        try:
            self.fh.close()
        except OSError:
            pass  # closing flushes; a full disk fails it again, and the file is removed anyway
        discard(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.commit()
        else:
            self.abort()
        return False


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with AtomicFile(path, "wb") as fh:
        fh.write(data)
    return path


def write_text(path, text):
    """Text variant of :func:`write_bytes` (UTF-8)."""
    return write_bytes(path, text.encode("utf-8"))


def append_line(path, line):
    """Append ``line`` (text, no newline) to ``path`` as one whole line, then fsync.

    One ``write`` of the full line on an ``O_APPEND`` file, so a crash cannot leave half of it; a short
    write (the disk filled up) is cut off again before the error is raised. If the file does not end in
    a newline (a torn line from an older writer or a crash), the line starts on a fresh one, so a torn
    line never swallows the next record. Meant for one writer per file at a time: the cut-back after a
    short write would also cut a line another process appended in between.
    """
    data = (line + "\n").encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    # Ctrl-C waits for the line to be written and synced: a measurement that finished is kept, whole.
    with deferred_interrupts():
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder)
            existed = os.path.exists(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise _about(exc, path) from None
        try:
            size = os.fstat(fd).st_size
            if size and not _ends_with_newline(path, size):
                data = b"\n" + data
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # all or nothing: never leave part of a line
                if not existed and size == 0:
                    os.remove(path)  # nor an empty file this call made
                raise
        except OSError as exc:
            raise _about(exc, path) from None
        finally:
            os.close(fd)


def _ends_with_newline(path, size):
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"
