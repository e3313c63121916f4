"""Segmentation decoding: class logits -> a class per frame pixel -> class shares and a colour overlay.

The logits (C, h, w) lie on a grid at 1/stride of the model input, and the input saw the frame through
an affine (the letterbox, ``preprocess.letterbox_matrix``). One ``cv2.warpAffine`` resamples the logits
bilinearly straight onto the frame's pixels (the bars of the letterbox fall outside the frame and are
never decoded), then the argmax over the classes gives the label map: resize, then argmax, as
mmsegmentation does. A frame larger than the model input (a 2048x1024 Cityscapes frame into 1024x512) is
decoded at the size the model saw it and the labels are enlarged (nearest): the model cannot resolve
finer detail, and the argmax over C channels is the costly step. Torch-free, Python 3.6.
"""

import cv2
import numpy as np

from .errors import EdgeposeError


def _compose(outer, inner):
    """The 2x3 affine of ``outer`` applied after ``inner``."""
    o, i = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.hstack([o[:, :2].dot(i[:, :2]), o[:, :2].dot(i[:, 2:]) + o[:, 2:]])


def _resample_matrix(src_hw, dst_hw):
    """The affine src pixel -> dst pixel of a plain resize with pixel centres aligned."""
    sy, sx = float(dst_hw[0]) / src_hw[0], float(dst_hw[1]) / src_hw[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def decode_size(matrix, frame_hw):
    """The (H, W) the labels are computed at: the frame's, or smaller where the model saw it shrunk."""
    scale = min(1.0, abs(float(np.asarray(matrix)[0][0])), abs(float(np.asarray(matrix)[1][1])))
    return max(1, int(round(frame_hw[0] * scale))), max(1, int(round(frame_hw[1] * scale)))


def logits_matrix(matrix, stride):
    """The affine frame -> logit grid, from ``matrix`` (frame -> model input) and the logits' stride.

    A logit cell u covers input pixels s*u .. s*u + s - 1, centred at s*u + (s - 1) / 2, so the input
    pixel x sits at u = (x - (s - 1) / 2) / s (bilinear resizing without corner alignment).
    """
    m = np.asarray(matrix, dtype=np.float64)
    s = float(stride)
    out = m / s
    out[:, 2] = (m[:, 2] - (s - 1.0) * 0.5) / s
    return out


class SegmentationDecoder(object):
    """Logits -> labels on the frame, class shares, colours; built from a manifest's label set."""

    def __init__(self, classes, palette_rgb, stride):
        if not classes:
            raise EdgeposeError("a segmentation manifest needs its class names (model.classes)")
        if len(palette_rgb or []) != len(classes):
            raise EdgeposeError(
                "model.palette_rgb has {} colours for {} classes".format(len(palette_rgb or []), len(classes))
            )
        self.classes = [str(c) for c in classes]
        self.stride = int(stride)
        self.palette_bgr = np.asarray(palette_rgb, dtype=np.uint8).reshape(-1, 3)[:, ::-1].copy()

    def __call__(self, logits, matrix, frame_hw):
        """(C, h, w) logits of a frame the model saw through ``matrix`` -> (H, W) uint8 class ids."""
        channels = logits.shape[0]
        if channels != len(self.classes):
            raise EdgeposeError(
                "the model gives {} class logits, the manifest names {} classes".format(
                    channels, len(self.classes)
                )
            )
        frame_hw = int(frame_hw[0]), int(frame_hw[1])
        height, width = decode_size(matrix, frame_hw)
        # decode grid -> frame -> model input -> logit grid, in one bilinear resampling
        to_logits = _compose(logits_matrix(matrix, self.stride), _resample_matrix((height, width), frame_hw))
        grid = np.ascontiguousarray(np.asarray(logits, dtype=np.float32).transpose(1, 2, 0))
        scores = cv2.warpAffine(
            grid,
            to_logits,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        labels = scores.reshape(height * width, -1).argmax(axis=1).astype(np.uint8).reshape(height, width)
        if (height, width) == frame_hw:
            return labels
        return cv2.warpAffine(
            labels,
            _resample_matrix(frame_hw, (height, width)),
            (frame_hw[1], frame_hw[0]),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def shares(self, labels):
        """The fraction of the frame's pixels each class holds, as an array in class order."""
        counts = np.bincount(np.asarray(labels).ravel(), minlength=len(self.classes))[: len(self.classes)]
        return counts / float(max(labels.size, 1))

    def named_shares(self, shares, digits=5):
        """{class name: share} of the classes present, largest first (the JSON lines' ``class_shares``)."""
        order = np.argsort(-np.asarray(shares), kind="stable")
        return dict((self.classes[i], round(float(shares[i]), digits)) for i in order if shares[i] > 0)

    def colorize(self, labels):
        """(H, W) class ids -> (H, W, 3) BGR colours of the palette."""
        return self.palette_bgr[labels]

    def overlay(self, frame, labels, alpha=0.5):
        """Blend the class colours into ``frame`` (in place): ``alpha`` of colour, the rest of the frame."""
        if not 0.0 <= alpha <= 1.0:
            raise EdgeposeError("--alpha must be between 0 and 1, got {}".format(alpha))
        cv2.addWeighted(frame, 1.0 - alpha, self.colorize(labels), alpha, 0.0, dst=frame)
        return frame
