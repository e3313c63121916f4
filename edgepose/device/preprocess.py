"""Pre-processing: image -> model input with a 2x3 affine transform that the decoders later undo.

Bottom-up models see the whole frame letterboxed (aspect kept, centred, black bars); top-down models
see one crop per person box, enlarged by 1.25 and widened or heightened to the model's aspect ratio
(mmpose ``bbox_xywh2cs`` + ``get_affine_transform`` without rotation). Both are one
``cv2.warpAffine``; normalisation (colour order, scale, mean, std) comes from the manifest.
"""

import cv2
import numpy as np

from .errors import EdgeposeError

# ImageNet statistics, as both papers' pre-processing uses; every manifest's input section states them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# How every exported model wants its input: RGB, /255, then ImageNet mean/std (manifest ``input``).
INPUT_NORMALIZATION = {
    "color": "RGB",
    "scale": 1.0 / 255.0,
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}


def letterbox_matrix(image_hw, input_hw):
    """Affine image -> input that fits the whole image into the input, centred."""
    ih, iw = float(image_hw[0]), float(image_hw[1])
    h, w = float(input_hw[0]), float(input_hw[1])
    k = min(w / iw, h / ih)
    return np.array([[k, 0.0, (w - k * iw) * 0.5], [0.0, k, (h - k * ih) * 0.5]])


def box_matrix(box, input_hw, padding=1.25):
    """Affine image -> input for a person box (x1, y1, x2, y2): centre, pad, fix the aspect ratio."""
    x1, y1, x2, y2 = [float(v) for v in box[:4]]
    h, w = float(input_hw[0]), float(input_hw[1])
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cx, cy = x1 + bw * 0.5, y1 + bh * 0.5
    aspect = w / h
    if bw > aspect * bh:
        bh = bw / aspect
    else:
        bw = bh * aspect
    k = w / (bw * padding)
    return np.array([[k, 0.0, w * 0.5 - k * cx], [0.0, k, h * 0.5 - k * cy]])


def warp(image, matrix, input_hw):
    """Apply ``matrix`` (image -> input) with bilinear sampling; outside the image is black."""
    return cv2.warpAffine(
        image,
        matrix,
        (int(input_hw[1]), int(input_hw[0])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def model_input_matrix(image_hw, input_hw, kind):
    """The affine a model of ``kind`` sees a whole image through: letterboxed (bottom-up), or the image
    as one person box (top-down, as run.py does when no boxes are given)."""
    if kind == "top-down":
        return box_matrix([0.0, 0.0, float(image_hw[1]), float(image_hw[0])], input_hw)
    return letterbox_matrix(image_hw, input_hw)


def to_image(points, matrix):
    """Map (..., 2) input-pixel points back to the image through the inverse of ``matrix``."""
    inverse = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    pts = np.asarray(points, dtype=np.float64)
    out = pts.dot(inverse[:, :2].T) + inverse[:, 2]
    return out


class Normalizer(object):
    """BGR uint8 crops -> the NCHW float32 batch the model expects (manifest ``input``)."""

    def __init__(self, input_spec):
        self.rgb = str(input_spec.get("color", "RGB")).upper() == "RGB"
        scale = float(input_spec.get("scale", 1.0 / 255.0))
        mean = np.asarray(input_spec.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32)
        std = np.asarray(input_spec.get("std", [1.0, 1.0, 1.0]), dtype=np.float32)
        if mean.shape != (3,) or std.shape != (3,) or np.any(std == 0):
            raise EdgeposeError("manifest input mean/std must be 3 numbers each, std non-zero")
        # x = (pixel * scale - mean) / std == pixel * a + b
        self.a = (scale / std).astype(np.float32)
        self.b = (-mean / std).astype(np.float32)

    def __call__(self, crops):
        """Stack HWC uint8 BGR crops into an (N, 3, H, W) float32 batch."""
        batch = np.stack(crops, axis=0)
        if self.rgb:
            batch = batch[..., ::-1]
        batch = batch.astype(np.float32) * self.a + self.b
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
