"""Write a file so that no reader ever sees half of it: a temporary name in the same folder, then a rename.

The one atomic-write helper of edgepose (host and device; Python 3.6, stdlib only). On any failure,
Ctrl-C included, the temporary file is removed and the destination is left as it was.
"""

import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_name(path):
    """A hidden temporary name next to ``path`` with the same extension (OpenCV picks codecs by it)."""
    folder, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(folder, ".{}.{}.partial{}".format(stem, os.getpid(), ext))


def publish(tmp, path):
    """Give the finished temporary file normal permissions and rename it onto ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; published files get the user's usual mode
    os.replace(tmp, path)


def discard(tmp):
    """Remove a temporary file if it is there."""
    if tmp and os.path.exists(tmp):
        os.remove(tmp)


class AtomicFile(object):
    """A file written under a temporary name and renamed onto ``path`` by :meth:`commit`.

    As a context manager it commits on success and discards on any exception (Ctrl-C included).
    """

    def __init__(self, path, mode="wb"):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            os.makedirs(folder)
        fd, self.tmp = tempfile.mkstemp(
            prefix="." + os.path.basename(self.path) + ".", suffix=".tmp", dir=folder
        )
        self.fh = os.fdopen(fd, mode)

    def write(self, data):
        self.fh.write(data)

    def commit(self):
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        publish(self.tmp, self.path)

    def abort(self):
        self.fh.close()
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
