"""Calibration images for int8 export (``--calib DIR``), pre-processed exactly like on-device inference.

The device pipeline's own functions do the work (``edgepose.device.preprocess``): a bottom-up model
sees each image letterboxed into its input; a top-down model sees the image as one person box
(enlarged by 1.25 and fitted to the input's aspect ratio), as ``run.py`` does when no boxes are given.
Normalisation is the manifest's (RGB, /255, ImageNet mean/std). No images is an error: an int8
model is never written with made-up ranges.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgepose.device.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_NORMALIZATION,
    Normalizer,
    model_input_matrix,
    warp,
)
from edgepose.device.sources import IMAGE_EXTS
from edgepose.errors import EdgeposeError


def input_value_range() -> tuple[float, float]:
    """The smallest and largest value a normalised pixel can take (any channel): the int8 input range.

    Pixels are 0..255 in every image, so this range is known exactly; calibrating it instead would clip
    whatever the calibration images happen not to contain (a white shirt, a black coat).
    """
    lows = [(0.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    highs = [(1.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    return float(min(lows)), float(max(highs))


def find_images(folder: str | os.PathLike | None) -> list[Path]:
    """The image files directly in ``folder`` (sorted); a clear error when there are none."""
    if folder is None:
        raise EdgeposeError(
            "int8 export needs calibration images: pass --calib DIR with a few hundred typical frames "
            "(jpg/png); the model's int8 ranges are measured on them"
        )
    path = Path(folder)
    if not path.is_dir():
        raise EdgeposeError(f"--calib must be a folder of images (jpg/png), got {path}")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise EdgeposeError(
            f"no calibration images in {path} (looked for {', '.join(IMAGE_EXTS)}); int8 needs real frames"
        )
    return images


def preprocess(image_bgr: np.ndarray, input_size: tuple[int, int], kind: str) -> np.ndarray:
    """One BGR uint8 image -> the (3, H, W) float32 model input, as the device pipeline makes it."""
    matrix = model_input_matrix(image_bgr.shape[:2], input_size, kind)
    return Normalizer(INPUT_NORMALIZATION)([warp(image_bgr, matrix, input_size)])[0]


def load_calibration(
    folder: str | os.PathLike | None, input_size: tuple[int, int], kind: str, max_images: int = 200
) -> np.ndarray:
    """Read up to ``max_images`` images of ``folder`` into an (N, 3, H, W) float32 batch."""
    batch = []
    for path in find_images(folder)[:max_images]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise EdgeposeError(f"cannot read calibration image {path}: not a valid image file")
        batch.append(preprocess(image, input_size, kind))
    return np.stack(batch).astype(np.float32)


def write_sample_images(folder: str | os.PathLike, count: int = 16, seed: int = 0) -> Path:
    """Write ``count`` JPEG crops of scikit-image photos (varied brightness, mirrored) for tests and demos.

    A stand-in when no real frames are at hand; int8 ranges from them suit only similar inputs.
    """
    from skimage import data  # dev/export dependency, imported late like parity.sample_input

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [
        data.astronaut()[..., ::-1],
        cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR),
        data.coffee()[..., ::-1],
    ]
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        y, x = rng.integers(0, h // 3), rng.integers(0, w // 3)
        crop = img[y : y + h // 2 + rng.integers(0, h // 3), x : x + w // 2 + rng.integers(0, w // 3)]
        crop = np.clip(crop * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"calib{i:02d}.jpg"), np.ascontiguousarray(crop[:, ::-1] if i % 2 else crop))
    return folder
