"""Write files and folders so that a failure never leaves a half-written artifact behind.

Files: the one atomic-write helper lives device-side (:mod:`edgepose.device.atomic`, Python 3.6) and is
re-exported here; folders: :func:`staged_dir`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgepose.device.atomic import _umask, write_bytes, write_text

__all__ = ["staged_dir", "write_bytes", "write_text"]


@contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder next to ``final``; on success it replaces ``final``.

    On any exception the staging folder is removed and ``final`` is left untouched, so an
    export that fails its checks leaves no artifact.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_umask())
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)
