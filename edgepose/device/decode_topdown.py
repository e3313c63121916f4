"""Top-down decoding for Lite-HRNet: heatmap argmax with the quarter offset (or DARK), plus the flip test.

Follows mmpose 0.x ``keypoints_from_heatmaps`` as used by the Lite-HRNet configs (litehrnet.md §5):
argmax per joint (score = the maximum; a joint whose maximum is <= 0 gets coordinates -1), then either
the 'default' +-0.25 step towards the higher neighbour, or 'unbiased' DARK (Gaussian blur rescaled to the
original maximum, log, one Newton step with a finite-difference Hessian). Coordinates are returned in
heatmap pixels times the stride, i.e. input pixels; the pipeline maps them back to the image with the
crop's affine transform, which is mmpose's ``transform_preds``.
"""

import cv2
import numpy as np


class TopDownDecoder(object):
    """Decode (N, J, h, w) heatmaps into (N, J, 3) keypoints (x, y, score) in input pixels."""

    def __init__(self, flip_index=None, dark=False, blur_kernel=11, shift_heatmap=True):
        self.flip_index = list(flip_index) if flip_index is not None else None
        self.dark = bool(dark)
        self.blur_kernel = int(blur_kernel)
        self.shift_heatmap = bool(shift_heatmap)

    def __call__(self, heatmaps, flipped=None, input_size=None):
        """Decode a batch; ``flipped`` holds the heatmaps of the flipped crops (or None)."""
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        if flipped is not None:
            heatmaps = self.merge_flip(heatmaps, flipped)
        coords, scores = argmax_points(heatmaps)
        if self.dark:
            coords = dark_refine(heatmaps, coords, self.blur_kernel)
        else:
            coords = quarter_offset(heatmaps, coords)
        if input_size is not None:
            coords[..., 0] *= float(input_size[1]) / heatmaps.shape[3]
            coords[..., 1] *= float(input_size[0]) / heatmaps.shape[2]
        return np.concatenate([coords, scores[..., None]], axis=-1).astype(np.float32)

    def merge_flip(self, heatmaps, flipped):
        """Average with the flipped pass: swap left/right channels, mirror, shift one pixel right."""
        if self.flip_index is None:
            raise ValueError("the flip test needs flip_index")
        back = np.asarray(flipped, dtype=np.float32)[:, self.flip_index, :, ::-1].copy()
        if self.shift_heatmap:
            back[:, :, :, 1:] = back[:, :, :, :-1].copy()
        return (heatmaps + back) * 0.5


def argmax_points(heatmaps):
    """Per-map argmax: coords (N, J, 2) float (x, y), -1 where the maximum <= 0; scores (N, J)."""
    n, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, j, h * w)
    idx = flat.argmax(axis=2)
    scores = np.take_along_axis(flat, idx[:, :, None], axis=2)[:, :, 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    coords[scores <= 0] = -1
    return coords, scores


def quarter_offset(heatmaps, coords):
    """mmpose 'default': +-0.25 px by the sign of the neighbour difference, away from the border."""
    n, j, h, w = heatmaps.shape
    px = coords[..., 0].astype(np.int64)
    py = coords[..., 1].astype(np.int64)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    nn_, jj = np.nonzero(inside)
    x, y = px[inside], py[inside]
    maps = heatmaps[nn_, jj]
    dx = maps[np.arange(len(x)), y, x + 1] - maps[np.arange(len(x)), y, x - 1]
    dy = maps[np.arange(len(x)), y + 1, x] - maps[np.arange(len(x)), y - 1, x]
    out = coords.copy()
    out[nn_, jj, 0] += np.sign(dx) * 0.25
    out[nn_, jj, 1] += np.sign(dy) * 0.25
    return out


def dark_refine(heatmaps, coords, kernel=11):
    """DARK (Zhang et al. 2020): blur, log, and one Newton step around the argmax."""
    n, j, h, w = heatmaps.shape
    maps = heatmaps.reshape(n * j, h, w)
    blurred = np.empty_like(maps)
    for i in range(n * j):
        # Zero padding, as mmpose pads by (k-1)/2 zeros before cv2.GaussianBlur and crops back.
        b = cv2.GaussianBlur(maps[i], (kernel, kernel), 0, borderType=cv2.BORDER_CONSTANT)
        peak, new_peak = maps[i].max(), b.max()
        blurred[i] = b * (peak / new_peak) if new_peak != 0 else b
    logs = np.log(np.maximum(blurred, 1e-10)).reshape(n, j, h, w)
    px = coords[..., 0].astype(np.int64)
    py = coords[..., 1].astype(np.int64)
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    nn_, jj = np.nonzero(inside)
    x, y = px[inside], py[inside]
    m = logs[nn_, jj]
    k = np.arange(len(x))
    dx = 0.5 * (m[k, y, x + 1] - m[k, y, x - 1])
    dy = 0.5 * (m[k, y + 1, x] - m[k, y - 1, x])
    dxx = 0.25 * (m[k, y, x + 2] - 2 * m[k, y, x] + m[k, y, x - 2])
    dxy = 0.25 * (m[k, y + 1, x + 1] - m[k, y - 1, x + 1] - m[k, y + 1, x - 1] + m[k, y - 1, x - 1])
    dyy = 0.25 * (m[k, y + 2, x] - 2 * m[k, y, x] + m[k, y - 2, x])
    det = dxx * dyy - dxy * dxy
    ok = det != 0
    safe = np.where(ok, det, 1.0)
    # offset = -H^-1 g with H = [[dxx, dxy], [dxy, dyy]]
    off_x = -(dyy * dx - dxy * dy) / safe
    off_y = -(-dxy * dx + dxx * dy) / safe
    out = coords.copy()
    out[nn_[ok], jj[ok], 0] += off_x[ok]
    out[nn_[ok], jj[ok], 1] += off_y[ok]
    return out
