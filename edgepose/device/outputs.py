"""The files and folders one run of run.py creates: each image written whole (temp + rename), and every
path this run made remembered so that :meth:`RunOutputs.abort` removes them again. A run that fails or
is interrupted leaves no output of its own behind, whichever writer (annotated frames, ``--mask``
label maps) made it.
"""

import errno
import os

from .atomic import write_bytes
from .errors import EdgeposeError


class RunOutputs(object):
    """What this run created, in order (folders before their files)."""

    def __init__(self):
        self.created = []

    def folder(self, folder):
        """Make ``folder`` and its missing parents, remembering them for :meth:`abort`."""
        missing = []
        folder = os.path.abspath(folder)
        while not os.path.isdir(folder):
            if os.path.lexists(folder):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder)
            missing.append(folder)
            if os.path.dirname(folder) == folder:
                break
            folder = os.path.dirname(folder)
        for path in reversed(missing):
            os.mkdir(path)
            self.created.append(path)

    def keep(self, path, existed):
        """Remember ``path`` as this run's unless it was there before (an overwritten file stays)."""
        if not existed:
            self.created.append(path)

    def image(self, path, image, what="image"):
        """Encode ``image`` by ``path``'s extension and write it whole; an OSError names ``path``."""
        import cv2

        try:
            self.folder(os.path.dirname(os.path.abspath(path)))
            ok, encoded = cv2.imencode(os.path.splitext(path)[1], image)
            if not ok:
                raise EdgeposeError("cannot encode {} {}".format(what, path))
            existed = os.path.lexists(path)
            write_bytes(path, encoded.tobytes())
            self.keep(path, existed)
        except OSError as exc:  # name the output asked for, whatever step failed
            raise OSError(exc.errno, exc.strerror, path) from None

    def abort(self):
        for path in reversed(self.created):
            try:
                os.rmdir(path) if os.path.isdir(path) else os.remove(path)
            except OSError:
                pass  # a folder that holds something else now stays
        self.created = []
