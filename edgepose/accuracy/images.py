"""The photos accuracy runs on: a folder (or one image) of the user's, or scikit-image's bundled photos.

The bundled set is four real photos that ship inside scikit-image (no download): ``astronaut`` (one
person, colour), ``camera`` (the cameraman, one person, greyscale), ``chelsea`` (a cat) and ``coffee``
(a cup) — two with a person and two without, so an export that invents people shows too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgepose.device.sources import IMAGE_EXTS
from edgepose.errors import EdgeposeError

BUNDLED = ("astronaut", "camera", "chelsea", "coffee")
BUNDLED_LABEL = "scikit-image's bundled photos: " + ", ".join(BUNDLED)


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """(name, BGR uint8 frame) of each bundled photo."""
    try:
        from skimage import data
    except ImportError:
        raise EdgeposeError(
            "the default photos come with scikit-image: pip install 'edgepose[accuracy]', or pass --images DIR"
        ) from None
    return [(name, bundled_photo(name, data)) for name in BUNDLED]


def bundled_photo(name: str, data=None) -> np.ndarray:
    """One of scikit-image's bundled photos as a BGR uint8 frame (a greyscale one repeated)."""
    if data is None:
        from skimage import data
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, 2::-1])


def image_paths(path: str | os.PathLike) -> list[Path]:
    """The image files of a folder (sorted by name), or the one image given; a clear error otherwise."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise EdgeposeError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {path}")
        return files
    if path.is_file():
        return [path]
    raise EdgeposeError(f"images not found: {path}")


def read_images(paths: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(file name, BGR frame) of each readable image; an unreadable one is skipped with a warning."""
    import cv2

    for path in paths:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            print(f"warning: skipping {path}: not an image OpenCV can read", file=sys.stderr)
            continue
        yield path.name, frame
