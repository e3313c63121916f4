"""Lite-HRNet decoding: argmax + quarter offset, DARK, the flip test, and the crop's back-transform."""

import numpy as np
import pytest

from edgepose.device.decode_topdown import TopDownDecoder, argmax_points, dark_refine, quarter_offset
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


# ---- the edges of each rule, and DARK against a second implementation ----


def one_peak(hw, x, y, right=0.5, below=0.25):
    """A (h, w) map: 1 at (x, y), ``right`` at (x + 1, y) and ``below`` at (x, y + 1) where they exist."""
    h, w = hw
    m = np.zeros((h, w), np.float32)
    m[y, x] = 1.0
    if x + 1 < w:
        m[y, x + 1] = right
    if y + 1 < h:
        m[y + 1, x] = below
    return m


def test_quarter_offset_applies_strictly_inside_one_pixel_from_the_border():
    # mmpose: the +-0.25 step only where 1 < px < w - 1 and 1 < py < h - 1 (w = 9, h = 7 here).
    hw = (7, 9)
    cases = [  # (x, y) of the argmax -> the offset applied (right/below neighbours higher: +0.25 each)
        ((1, 3), False), ((2, 3), True), ((7, 3), True), ((8, 3), False),
        ((4, 1), False), ((4, 2), True), ((4, 5), True), ((4, 6), False),
    ]  # fmt: skip
    maps = np.stack([one_peak(hw, x, y) for (x, y), _ in cases])[None]
    out = TopDownDecoder()(maps)
    for k, ((x, y), inside) in enumerate(cases):
        want = [x + 0.25, y + 0.25] if inside else [x, y]
        assert out[0, k, :2].tolist() == want, (x, y)


def test_argmax_of_an_all_zero_map_is_no_keypoint():
    maps = np.zeros((1, 2, 5, 5), np.float32)
    maps[0, 1, 3, 2] = 0.5
    out = TopDownDecoder()(maps)
    assert out[0, 0].tolist() == [-1.0, -1.0, 0.0]  # a maximum of 0 is not a detection (<= 0)
    assert out[0, 1].tolist() == [2.0, 3.0, 0.5]
    assert out.dtype == np.float32


def test_decoding_runs_in_float32_whatever_it_is_given():
    # Two values that differ in float64 but not in float32: the first (the runtimes' float32) wins.
    maps = np.zeros((1, 1, 5, 5), np.float64)
    maps[0, 0, 2, 2], maps[0, 0, 3, 3] = 1.0, 1.0 + 1e-12
    out = TopDownDecoder()(maps)
    assert out[0, 0, :2].tolist() == [2.0, 2.0] and out.dtype == np.float32


def test_the_flipped_pass_is_merged_in_float32_too():
    flipped = np.zeros((1, 1, 3, 3), np.float64)
    flipped[0, 0, 1, 2], flipped[0, 0, 1, 0] = 1.0, 1.0 + 1e-12  # a float32 tie; mirrored: x 0 and 2
    merged = TopDownDecoder(flip_index=[0], shift_heatmap=False).merge_flip(
        np.zeros((1, 1, 3, 3), np.float32), flipped
    )
    assert merged.dtype == np.float32 and merged[0, 0, 1].tolist() == [0.5, 0.0, 0.5]


def test_flip_merge_by_hand():
    # Joint 0 of the flipped pass is joint 1 of the crop: swapped, mirrored, shifted one pixel right, averaged.
    flipped = np.zeros((1, 2, 1, 4), np.float32)
    flipped[0, 1, 0] = [1, 2, 3, 4]  # becomes joint 0: mirrored [4, 3, 2, 1], shifted [4, 4, 3, 2]
    heatmaps = np.full((1, 2, 1, 4), 2.0, np.float32)
    merged = TopDownDecoder(flip_index=[1, 0]).merge_flip(heatmaps, flipped)
    assert merged[0, 0, 0].tolist() == [3.0, 3.0, 2.5, 2.0]  # (2 + [4, 4, 3, 2]) / 2
    assert merged[0, 1, 0].tolist() == [1.0, 1.0, 1.0, 1.0]
    unshifted = TopDownDecoder(flip_index=[1, 0], shift_heatmap=False).merge_flip(heatmaps, flipped)
    assert unshifted[0, 0, 0].tolist() == [3.0, 2.5, 2.0, 1.5]
    with pytest.raises(ValueError, match="^the flip test needs flip_index$"):
        TopDownDecoder().merge_flip(heatmaps, flipped)


def dark_loop(hm, px, py, kernel=11):
    """DARK for one map, written from the paper and mmpose's description with a numpy blur (no OpenCV):
    Gaussian kernel of OpenCV's default sigma for the size, zero padding, rescaled to the map's maximum,
    log, derivatives by central differences, one Newton step."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    r = kernel // 2
    g = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    g /= g.sum()
    h, w = hm.shape
    pad = np.zeros((h + 2 * r, w + 2 * r))
    pad[r:-r, r:-r] = hm
    rows = np.array([[np.dot(pad[i, j : j + kernel], g) for j in range(w)] for i in range(h + 2 * r)])
    blur = np.array([[np.dot(rows[i : i + kernel, j], g) for j in range(w)] for i in range(h)])
    if blur.max() > 0:
        blur *= hm.max() / blur.max()
    lg = np.log(np.maximum(blur, 1e-10))
    if not (1 < px < w - 2 and 1 < py < h - 2):
        return float(px), float(py)
    dx = (lg[py, px + 1] - lg[py, px - 1]) / 2
    dy = (lg[py + 1, px] - lg[py - 1, px]) / 2
    dxx = (lg[py, px + 2] - 2 * lg[py, px] + lg[py, px - 2]) / 4
    dyy = (lg[py + 2, px] - 2 * lg[py, px] + lg[py - 2, px]) / 4
    dxy = (lg[py + 1, px + 1] - lg[py - 1, px + 1] - lg[py + 1, px - 1] + lg[py - 1, px - 1]) / 4
    hessian = np.array([[dxx, dxy], [dxy, dyy]])
    if np.linalg.det(hessian) == 0:
        return float(px), float(py)
    step = -np.linalg.solve(hessian, [dx, dy])
    return px + step[0], py + step[1]


def test_dark_matches_a_second_implementation_on_tilted_and_uneven_peaks():
    rng = np.random.RandomState(1)
    h, w = 20, 16
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = []
    for cx, cy, a, b, c in [(7.3, 9.6, 2.0, 0.9, 3.0), (8.8, 8.2, 4.0, -1.5, 1.5)]:  # tilted: b != 0
        dx, dy = xx - cx, yy - cy
        maps.append(np.exp(-(a * dx * dx + 2 * b * dx * dy + c * dy * dy) / 8))
    maps.append(rng.rand(h, w) * (np.abs(xx - 6) + np.abs(yy - 11) < 3))  # an uneven blob
    tiny = np.zeros((h, w))
    # Blurred, these fall below the 1e-10 clamp unless rescaled to the map's maximum (the rescale matters there).
    tiny[10, 8], tiny[10, 9], tiny[11, 8] = 1e-9, 0.6e-9, 0.3e-9
    maps.append(tiny)
    heat = np.asarray(maps, np.float32)[None]
    coords, _ = argmax_points(heat)
    for kernel in (11, 9):  # above 7: OpenCV computes the kernel from sigma (smaller ones come from a table)
        out = TopDownDecoder(dark=True, blur_kernel=kernel)(heat)
        for k in range(len(maps)):
            want = dark_loop(
                heat[0, k].astype(np.float64), int(coords[0, k, 0]), int(coords[0, k, 1]), kernel
            )
            np.testing.assert_allclose(out[0, k, :2], want, atol=2e-3, err_msg=f"map {k}, kernel {kernel}")
    # dark_refine's own default kernel is the decoder's, 11.
    np.testing.assert_allclose(dark_refine(heat, coords), TopDownDecoder(dark=True)(heat)[..., :2], atol=1e-6)
    # The tilted Gaussians' centres themselves: DARK is exact for a Gaussian (its log is quadratic).
    np.testing.assert_allclose(
        TopDownDecoder(dark=True)(heat)[0, :2, :2], [[7.3, 9.6], [8.8, 8.2]], atol=0.02
    )


def test_dark_refines_strictly_inside_two_pixels_from_the_border():
    # mmpose: only where 1 < px < w - 2 and 1 < py < h - 2 (the Hessian reaches two pixels out); w = 11, h = 9.
    hw = (9, 11)
    cases = [
        ((1, 4), False), ((2, 4), True), ((8, 4), True), ((9, 4), False), ((10, 4), False),
        ((5, 1), False), ((5, 2), True), ((5, 6), True), ((5, 7), False), ((5, 8), False),
    ]  # fmt: skip
    heat = np.stack([one_peak(hw, x, y) for (x, y), _ in cases])[None]
    out = TopDownDecoder(dark=True)(heat)
    for k, ((x, y), inside) in enumerate(cases):
        moved = out[0, k, :2] != [x, y]
        assert moved.all() if inside else not moved.any(), ((x, y), out[0, k, :2])
        if inside:
            np.testing.assert_allclose(
                out[0, k, :2], dark_loop(heat[0, k].astype(np.float64), x, y), atol=2e-3
            )


def test_dark_on_an_all_zero_map_is_quiet_and_leaves_it():
    import warnings

    heat = np.zeros((1, 2, 9, 9), np.float32)
    heat[0, 1] = one_peak((9, 9), 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 / 0 rescale of an empty map
        out = TopDownDecoder(dark=True)(heat)
    assert out[0, 0].tolist() == [-1.0, -1.0, 0.0]
