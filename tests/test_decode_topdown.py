"""Lite-HRNet decoding: argmax + quarter offset, DARK, the flip test, and the crop's back-transform."""

import numpy as np
import pytest

from edgepose.device.decode_topdown import TopDownDecoder, argmax_points, quarter_offset
from edgepose.device.preprocess import box_matrix, letterbox_matrix, to_image
from edgepose.device.skeletons import get_skeleton

COCO = get_skeleton("coco")


def gaussians(centres, hw=(64, 48), sigma=2.0):
    """(1, J, h, w) heatmaps with a unit Gaussian at each (x, y) centre (None: an all-zero map)."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = np.zeros((1, len(centres), h, w), np.float32)
    for j, c in enumerate(centres):
        if c is not None:
            maps[0, j] = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * sigma**2))
    return maps


def test_quarter_offset_moves_towards_the_true_peak():
    centres = [(10.3, 20.0), (30.0, 40.7), (5.0, 5.0), (24.6, 33.2)]
    out = TopDownDecoder()(gaussians(centres))
    want = [(10.25, 20.0), (30.0, 40.75), (5.0, 5.0), (24.75, 33.25)]  # argmax +- 0.25, 0 on a tie
    np.testing.assert_allclose(out[0, :, :2], want, atol=1e-6)
    assert np.all(out[0, :, 2] > 0.9)


def test_border_peaks_and_empty_maps():
    maps = gaussians([(0.0, 30.0), None], hw=(64, 48))
    maps[0, 1] = -0.5  # nothing positive: coordinates -1, score <= 0
    out = TopDownDecoder()(maps)
    assert out[0, 0, :2].tolist() == [0.0, 30.0]  # no offset at the border (1 < x < W-1 fails)
    assert out[0, 1, :2].tolist() == [-1.0, -1.0] and out[0, 1, 2] <= 0


def test_quarter_offset_matches_a_loop_reference():
    rng = np.random.RandomState(0)
    maps = rng.rand(2, 5, 16, 12).astype(np.float32)
    coords, _ = argmax_points(maps)
    got = quarter_offset(maps, coords)
    for n in range(2):
        for k in range(5):
            px, py = int(coords[n, k, 0]), int(coords[n, k, 1])
            want = coords[n, k].copy()
            if 1 < px < 11 and 1 < py < 15:
                hm = maps[n, k]
                want += np.sign([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]]) * 0.25
            np.testing.assert_allclose(got[n, k], want)


def test_dark_recovers_subpixel_centres():
    centres = [(10.3, 20.6), (30.8, 40.1), (20.45, 12.55)]
    out = TopDownDecoder(dark=True)(gaussians(centres))
    np.testing.assert_allclose(out[0, :, :2], centres, atol=0.05)
    plain = TopDownDecoder()(gaussians(centres))
    assert np.abs(out[0, :, :2] - centres).max() < np.abs(plain[0, :, :2] - centres).max()


def test_flip_test_merges_the_mirrored_pass():
    centres = [(12.0 + j, 20.0 + j) for j in range(17)]
    maps = gaussians(centres)
    # The mirrored crop's heatmaps: channel c shows joint flip_index[c], mirrored, one pixel to the left
    # of where a perfect mirror would put it once flipped back (what shift_heatmap undoes).
    fi = COCO["flip_index"]
    mirrored = np.zeros_like(maps)
    mirrored[0, :, :, 1:] = maps[0, fi, :, ::-1][:, :, :-1]
    out = TopDownDecoder(flip_index=fi)(maps, flipped=mirrored)
    np.testing.assert_allclose(out[0, :, :2], centres, atol=1e-6)
    with pytest.raises(ValueError):
        TopDownDecoder()(maps, flipped=mirrored)


def test_input_scaling_and_box_back_transform_follow_mmpose():
    # A 100x200 box at (50, 60): aspect 0.75 -> 150x200, padded by 1.25 -> 187.5x250 mapped onto 192x256.
    box = [50.0, 60.0, 150.0, 260.0]
    matrix = box_matrix(box, (256, 192))
    heat = gaussians([(24.0, 32.0), (0.0, 0.0)], hw=(64, 48))
    out = TopDownDecoder()(heat, input_size=(256, 192))
    img = to_image(out[0, :, :2], matrix)
    centre, size = np.array([100.0, 160.0]), np.array([187.5, 250.0])
    # mmpose transform_preds: x_img = x_hm * size / heatmap_size + centre - size / 2
    want = np.array([[24.0, 32.0], [0.0, 0.0]]) * size / [48, 64] + centre - size / 2
    np.testing.assert_allclose(img, want, atol=1e-6)


def test_letterbox_round_trip():
    matrix = letterbox_matrix((480, 640), (448, 448))
    pts = np.array([[0.0, 0.0], [639.0, 479.0], [320.5, 10.25]])
    fwd = pts.dot(matrix[:, :2].T) + matrix[:, 2]
    assert fwd[:, 1].min() > 0 and fwd[:, 0].max() <= 448  # centred vertically, full width
    np.testing.assert_allclose(to_image(fwd, matrix), pts, atol=1e-9)
