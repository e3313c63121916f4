"""LitePose decoding on synthetic heatmaps and tags with known people, and the assignment solver."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from edgepose.device.assignment import min_cost_assignment
from edgepose.device.decode_bottomup import BottomUpDecoder
from edgepose.device.skeletons import get_skeleton

COCO = get_skeleton("coco")
CROWD = get_skeleton("crowdpose")
PEAK = float(np.exp(-0.09))  # a unit Gaussian centred at +0.3, +0.3 of its peak pixel


def synth(people, joints, hw, sigma=1.0, radius=3):
    """(J, H, W) heatmaps and (J, H, W, 1) tags: a Gaussian per joint; the person's tag in a disc around it."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    det = np.zeros((joints, h, w), np.float32)
    tags = np.zeros((joints, h, w, 1), np.float32)
    for tag, points in people:
        for j, pt in enumerate(points):
            if pt is None:
                continue
            x, y, v = pt
            d2 = (xx - x) ** 2 + (yy - y) ** 2
            peak = v * np.exp(-d2 / (2 * sigma**2))
            det[j] = np.maximum(det[j], np.where(peak < 1e-6, 0, peak))  # no denormals
            tags[j][d2 <= radius**2] = tag
    return det, tags


def crowd(n_people, joints, cell=20, cols=6, seed=0):
    """n people on a grid of cells, each joint at integer + 0.3 (so the adjust step is +0.25)."""
    rng = np.random.RandomState(seed)
    people = []
    for i in range(n_people):
        cx, cy = (i % cols) * cell, (i // cols) * cell
        pts = [
            (cx + rng.randint(3, cell - 3) + 0.3, cy + rng.randint(3, cell - 3) + 0.3, 1.0)
            for _ in range(joints)
        ]
        people.append((2.0 * i, pts))
    hw = (((n_people - 1) // cols + 1) * cell, cols * cell)
    return people, hw


def by_first_joint(poses):
    return sorted(poses.tolist(), key=lambda p: (p[0][1], p[0][0]))


def expected(people):
    # integer peak + 0.25 (adjust towards the higher neighbour) + 0.5 (pixel centre)
    out = [[[np.floor(x) + 0.75, np.floor(y) + 0.75, v * PEAK] for x, y, v in pts] for _, pts in people]
    return sorted(out, key=lambda p: (p[0][1], p[0][0]))


def test_thirty_people_seventeen_joints_are_recovered_exactly():
    people, hw = crowd(30, 17)
    det, tags = synth(people, 17, hw)
    poses, scores = BottomUpDecoder(17, COCO["flip_index"], grouping="official").group(det, tags)
    assert poses.shape == (30, 17, 3)
    np.testing.assert_allclose(by_first_joint(poses), expected(people), atol=1e-5)
    np.testing.assert_allclose(scores, PEAK, atol=1e-6)


def test_more_people_than_max_people_keep_later_groups_apart():
    people, hw = crowd(36, 14)
    det, tags = synth(people, 14, hw)
    poses, _ = BottomUpDecoder(14, CROWD["flip_index"], grouping="official").group(det, tags)
    # 30 peaks per joint at most (the official top-k), so no person is complete, but none is mixed up
    assert len(poses) >= 30
    truth = {
        (np.floor(x) + 0.75, np.floor(y) + 0.75): i for i, (_, pts) in enumerate(people) for x, y, _ in pts
    }
    for pose in poses:
        owners = {truth[(x, y)] for x, y, s in pose if s > 0}
        assert len(owners) == 1


def test_detection_threshold_drops_weak_peaks():
    people = [(0.0, [(10.3, 10.3, 1.0), (20.3, 12.3, 0.09), (14.3, 30.3, 0.5)])]
    det, tags = synth(people, 3, (40, 40))
    poses, scores = BottomUpDecoder(3, det_threshold=0.1, grouping="official").group(det, tags)
    assert len(poses) == 1
    assert poses[0, 1].tolist() == [0, 0, 0]  # 0.09 <= 0.1: not a joint
    assert poses[0, 2, 2] == pytest.approx(0.5 * PEAK, abs=1e-6)
    assert scores[0] == pytest.approx(1.5 * PEAK / 3, abs=1e-6)  # person score: mean over all joints


def test_tag_threshold_splits_far_tags_and_joins_near_ones():
    near = [(0.0, [(10.3, 10.3, 1.0), None]), (0.8, [None, (20.3, 20.3, 1.0)])]
    det, tags = synth(near, 2, (40, 40))
    assert len(BottomUpDecoder(2, tag_threshold=1.0, grouping="official").group(det, tags)[0]) == 1
    far = [(0.0, [(10.3, 10.3, 1.0), None]), (1.2, [None, (20.3, 20.3, 1.0)])]
    det, tags = synth(far, 2, (40, 40))
    assert len(BottomUpDecoder(2, tag_threshold=1.0, grouping="official").group(det, tags)[0]) == 2


def test_grouping_is_an_optimal_assignment_not_greedy():
    # People A (tag 0) and B (tag 1.6); joint 1 has a strong candidate p (tag 0.7: rounded distance 1 to
    # both) and a weaker q (tag 0: distance 0 to A, 2 to B). Greedy by score gives p to A (the first of
    # equal costs) and leaves q without a person; the optimal assignment is p -> B, q -> A.
    people = [
        (0.0, [(5.3, 5.3, 1.0), (5.3, 20.3, 0.6)]),  # A with q
        (1.6, [(30.3, 5.3, 1.0), None]),  # B
        (0.7, [None, (30.3, 20.3, 0.9)]),  # p
    ]
    det, tags = synth(people, 2, (40, 40))
    poses, _ = BottomUpDecoder(2, grouping="official").group(det, tags)
    assert len(poses) == 2
    got = by_first_joint(poses)
    assert got[0][1][:2] == [5.75, 20.75]  # A got q
    assert got[1][1][:2] == [30.75, 20.75]  # B got p (distance 0.9 < tag threshold 1.0)


def test_full_call_scales_to_input_pixels_and_flip_test_agrees():
    people, hw = crowd(4, 14, cell=24, cols=2)
    det, tags = synth(people, 14, hw)
    h2, w2 = hw
    heatmaps = 2 * det  # averaged with zero 1/4 heatmaps -> det
    tags4 = synth(people, 14, hw, radius=5)[1][:, ::2, ::2, 0]  # tags at 1/4 resolution
    hm_tags = np.concatenate([np.zeros((14, h2 // 2, w2 // 2), np.float32), tags4])
    decoder = BottomUpDecoder(14, CROWD["flip_index"], grouping="official")
    poses, _ = decoder(hm_tags, heatmaps, input_size=(2 * h2, 2 * w2))
    want = np.array(expected(people))
    want[:, :, :2] *= 2
    np.testing.assert_allclose(by_first_joint(poses), want, atol=1e-5)
    # The mirrored image's outputs: channel c holds the mirrored map of joint flip_index[c].
    fi = CROWD["flip_index"]
    flipped = (hm_tags[np.r_[fi, np.array(fi) + 14]][:, :, ::-1], heatmaps[fi][:, :, ::-1])
    poses_f, _ = decoder(hm_tags, heatmaps, flipped=flipped, input_size=(2 * h2, 2 * w2))
    np.testing.assert_allclose(by_first_joint(poses_f), want, atol=1e-5)


def test_refine_fills_a_missing_joint_from_the_tag_map():
    people = [(0.0, [(10.3, 10.3, 1.0), (20.3, 12.3, 0.08)]), (3.0, [(30.3, 30.3, 1.0), (8.3, 30.3, 0.9)])]
    det, tags = synth(people, 2, (40, 40))
    plain = by_first_joint(BottomUpDecoder(2, grouping="official").group(det, tags)[0])
    assert plain[0][1] == [0, 0, 0]
    refined = by_first_joint(BottomUpDecoder(2, refine=True, grouping="official").group(det, tags)[0])
    assert refined[0][1][:2] == [20.75, 12.75]
    assert refined[0][1][2] == pytest.approx(0.08 * PEAK, abs=1e-6)
    assert refined[1] == plain[1]  # complete people are untouched


@pytest.mark.parametrize("seed", range(3))
def test_assignment_cost_equals_scipy(seed):
    rng = np.random.RandomState(seed)
    for _ in range(200):
        n = rng.randint(1, 31)
        m = rng.randint(n, 41)
        cost = rng.rand(n, m) * 100
        if rng.rand() < 0.5:
            cost = np.round(cost / 25)  # many ties, like round(dist) * 100 - score
        cols = min_cost_assignment(cost)
        assert len(set(cols.tolist())) == n and cols.max() < m
        rows, ref = linear_sum_assignment(cost)
        assert cost[np.arange(n), cols].sum() == pytest.approx(cost[rows, ref].sum(), abs=1e-9)


def test_assignment_is_exact_where_the_optimum_is_unique():
    cost = np.random.RandomState(7).rand(25, 25)
    np.testing.assert_array_equal(min_cost_assignment(cost), linear_sum_assignment(cost)[1])
    with pytest.raises(ValueError):
        min_cost_assignment(np.ones((3, 2)))


@pytest.mark.parametrize("flip", [False, True])
def test_lazy_tags_equal_the_resized_tag_maps(flip):
    rng = np.random.RandomState(3)
    hm_tags = rng.randn(28, 12, 10).astype(np.float32)
    heatmaps = rng.rand(14, 24, 20).astype(np.float32)
    decoder = BottomUpDecoder(14, CROWD["flip_index"], grouping="official")
    flipped = (
        (rng.randn(28, 12, 10).astype(np.float32), rng.rand(14, 24, 20).astype(np.float32)) if flip else None
    )
    det_full, tags_full = decoder.aggregate(hm_tags, heatmaps, flipped)
    det_full, tags_full = det_full.copy(), tags_full.copy()
    det_lazy, tags_lazy = decoder.aggregate(hm_tags, heatmaps, flipped, lazy_tags=True)
    np.testing.assert_allclose(det_lazy, det_full, atol=1e-6)
    js, ys, xs = [a.ravel() for a in np.mgrid[0:14, 0:24, 0:20]]
    np.testing.assert_allclose(tags_lazy.at(js, ys, xs), tags_full[js, ys, xs], atol=1e-5)


# ---- official mode, pinned by hand-computed cases (issue #19's surviving mutants) ----


@pytest.mark.parametrize("grouping", ["official", "crowd"])
def test_a_person_takes_the_stronger_of_two_peaks_with_close_tags(grouping):
    # After joint 0, person A (tag 0). Joint 1: p (tag 0.1, peak 0.9) and q (tag 0.2, peak 0.5). Both
    # are 0 away after rounding: official costs -0.9 * PEAK and -0.5 * PEAK against 1e10 for a new
    # person, so A takes p (with the score's sign flipped it would take q); q starts a person.
    people = [
        (0.0, [(5.3, 5.3, 1.0), None]),
        (0.1, [None, (5.3, 20.3, 0.9)]),
        (0.2, [None, (25.3, 20.3, 0.5)]),
    ]
    det, tags = synth(people, 2, (30, 40))
    poses = by_first_joint(BottomUpDecoder(2, grouping=grouping, min_joints=1).group(det, tags)[0])
    assert len(poses) == 2
    assert poses[0][0] == [0, 0, 0] and poses[0][1][:2] == [25.75, 20.75]  # q alone
    assert poses[1][0][:2] == [5.75, 5.75] and poses[1][1][:2] == [5.75, 20.75]  # A with p
    assert poses[1][1][2] == pytest.approx(0.9 * PEAK, abs=1e-6)


def test_official_top_k_keeps_exactly_max_people_peaks_per_joint():
    # 31 peaks of one joint, 0.2 + 0.02 i, tags 3 apart: the weakest (x = 2.3) is not among the top 30.
    people = [(3.0 * i, [(2.3 + 8 * i, 4.3, 0.2 + 0.02 * i)]) for i in range(31)]
    det, tags = synth(people, 1, (10, 250))
    poses = BottomUpDecoder(1, grouping="official").group(det, tags)[0]
    assert sorted(p[0][0] for p in poses.tolist()) == [2.75 + 8 * i for i in range(1, 31)]


@pytest.mark.parametrize("grouping,expected", [("official", 5), ("crowd", 4)])
def test_official_only_the_first_max_people_groups_take_joints(grouping, expected):
    # max_people = 2. Joint 0 makes A (tag 0) and B (tag 3); joint 1 makes C (tag 6) and D (tag 9), groups
    # 3 and 4. Joint 2 has A's (tag 0) and C's (tag 6) peaks: officially only A and B may take them
    # (costs a->A 0, c->B 300 against a->B 300, c->A 600), so A takes a, c->B is rejected (3 > 1) and c
    # starts a fifth person. The crowd grouping lets C take c: four people.
    people = [
        (0.0, [(5.3, 5.3, 1.0), None, (5.3, 25.3, 1.0)]),
        (3.0, [(15.3, 5.3, 1.0), None, None]),
        (6.0, [None, (25.3, 15.3, 1.0), (25.3, 25.3, 1.0)]),
        (9.0, [None, (35.3, 15.3, 1.0), None]),
    ]
    det, tags = synth(people, 3, (35, 45))
    poses = by_first_joint(
        BottomUpDecoder(3, max_people=2, grouping=grouping, min_joints=1).group(det, tags)[0]
    )
    assert len(poses) == expected
    a = [p for p in poses if p[0][:2] == [5.75, 5.75]][0]
    assert a[2][:2] == [5.75, 25.75]
    c = [p for p in poses if p[1][:2] == [25.75, 15.75]][0]
    assert (c[2][:2] == [25.75, 25.75]) == (grouping == "crowd")


def test_quarter_pixel_step_sends_ties_down_and_follows_the_higher_neighbour():
    # Centred on pixel (10, 10): both neighbours tie, so -0.25 on each axis, +0.5: 10.25. Centred at
    # x = 29.7, y = 10.3 (peak pixel (30, 10)): the left and the lower neighbours are higher, so
    # 30 - 0.25 + 0.5 and 10 + 0.25 + 0.5.
    people = [(0.0, [(10.0, 10.0, 1.0), (29.7, 10.3, 1.0)])]
    det, tags = synth(people, 2, (20, 40))
    assert det[0, 10, 9] == det[0, 10, 11] and det[0, 9, 10] == det[0, 11, 10]
    poses = BottomUpDecoder(2, grouping="official").group(det, tags)[0]
    assert poses[0, 0, :2].tolist() == [10.25, 10.25]
    assert poses[0, 1, :2].tolist() == [30.25, 10.75]
