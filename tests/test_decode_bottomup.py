"""LitePose decoding on synthetic heatmaps and tags with known people, and the assignment solver."""

import warnings

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


# ---- refine, the flip pass, projection to the input and the official cost, by hand ----


def refine_case():
    """Three people on hand-set (J=2, 10x12) maps; joint 1 of P1 and P2 below the detection threshold.

    P3 (tag 20): joint 0 at (6, 1) = 1.2, joint 1 at (1, 8) = 0.9, both detected.
    P1 (tag 0): joint 0 at the corner (11, 9) = 1.0 (left and upper neighbours 0.5, where tag 3 lies).
    P2 (tag 10): joint 0 at the origin (0, 0) = 0.8 (its right and lower neighbours hold tag 3).
    Undetected joint 1 candidates: a at (8, 2) = 0.05, tag 0.2 (its right neighbour 0.01, tag 0.2);
    b at (8, 7) = 0.09, tag -0.7; c at (2, 5) = 0.04, tag 3; everywhere else det 0 and tag 5. Joint 0's
    tag is 3 at pixels a misread seen joint would take: (9, 9) (x and y swapped), (11, 1) (the score as y).
    """
    det = np.zeros((2, 10, 12), np.float32)
    tags = np.zeros((2, 10, 12, 1), np.float32)
    det[0, 1, 6], tags[0, 1, 6] = 1.2, 20.0
    det[0, 9, 11], det[0, 9, 10], det[0, 8, 11] = 1.0, 0.5, 0.5
    tags[0, 9, 10], tags[0, 8, 11] = 3.0, 3.0  # a clip one pixel short would read these
    det[0, 0, 0], tags[0, 0, 0] = 0.8, 10.0
    tags[0, 0, 1], tags[0, 1, 0] = 3.0, 3.0
    tags[1] = 5.0
    det[1, 8, 1], tags[1, 8, 1] = 0.9, 20.0
    det[1, 2, 8], det[1, 2, 9], tags[1, 2, 8], tags[1, 2, 9] = 0.05, 0.01, 0.2, 0.2
    det[1, 7, 8], tags[1, 7, 8] = 0.09, -0.7
    det[1, 5, 2], tags[1, 5, 2] = 0.04, 3.0  # wins only for a mean tag near 3
    tags[0, 9, 9], tags[0, 1, 11] = 3.0, 3.0
    return det, tags


def test_refine_fills_a_missing_joint_by_heatmap_minus_rounded_tag_distance():
    det, tags = refine_case()
    poses, scores = BottomUpDecoder(2, grouping="official", refine=True).group(det, tags)
    # Order: joint 0's peaks by value (P3 1.2, P1 1.0, P2 0.8). Quarter step: ties go to -0.25, then +0.5.
    p3, p1, p2 = poses.tolist()
    np.testing.assert_allclose(
        p3, [[6.25, 1.25, 1.2], [1.25, 8.25, 0.9]], rtol=1e-6
    )  # complete: nothing to refine
    # P1 (mean tag 0): a scores 0.05 - round(0.2) = 0.05, b 0.09 - round(0.7) = -0.91, the rest 0 - 5.
    # a at (8, 2): right 0.01 > left 0 (+0.25), down = up (-0.25): (8.75, 2.25).
    np.testing.assert_allclose(p1, [[11.75, 9.75, 1.0], [8.75, 2.25, 0.05]], rtol=1e-6)
    # P2 (mean tag 10): the best is a det-0 pixel (0 - 5; c 0.04 - 7): nothing is filled, not even a position.
    np.testing.assert_allclose(p2, [[0.25, 0.25, 0.8], [0.0, 0.0, 0.0]], rtol=1e-6)
    # Scores are the mean over joints before refine.
    assert scores.tolist() == pytest.approx([1.05, 0.5, 0.4])
    without = BottomUpDecoder(2, grouping="official").group(det, tags)[0]
    assert without[1, 1].tolist() == [0.0, 0.0, 0.0]


def test_refine_through_the_decoder_and_its_lazy_tag_guard():
    det, tags = refine_case()
    maps = np.concatenate([det, tags[..., 0]])  # (2J, H, W): heatmaps then tags, as the model outputs
    poses, _ = BottomUpDecoder(2, grouping="official", refine=True)(maps)
    assert poses[1, 1].tolist() == pytest.approx([8.75, 2.25, 0.05])
    with pytest.raises(ValueError, match="refine needs full tag maps"):
        BottomUpDecoder(2, grouping="official", refine=True).group(
            *BottomUpDecoder(2).aggregate(maps, lazy_tags=True)
        )


def test_flip_pass_is_averaged_in_and_its_tags_are_a_second_dimension():
    # One joint pair (J=2, flip_index swaps them); 8x10 maps at a single resolution (no 1/2 map).
    det = np.zeros((2, 8, 10), np.float32)
    det[0, 3, 2], det[1, 3, 7] = 1.0, 0.6
    tags = np.zeros((2, 8, 10), np.float32)
    tags[0, 3, 2], tags[1, 3, 7] = 0.3, 0.5
    # The flipped pass: joint 1 where joint 0 is mirrored (x = 9 - 2 = 7), weaker; and vice versa.
    fdet = np.zeros_like(det)
    fdet[1, 3, 7], fdet[0, 3, 2] = 0.2, 0.4
    ftags = np.zeros_like(tags)
    ftags[1, 3, 7], ftags[0, 3, 2] = 0.9, 0.1
    decoder = BottomUpDecoder(2, flip_index=[1, 0], grouping="official", adjust=False)
    plain, _ = decoder(np.concatenate([det, tags]))
    flipped, _ = decoder(np.concatenate([det, tags]), flipped=(np.concatenate([fdet, ftags]), None))
    # Averaged: joint 0 (1.0 + 0.2) / 2 = 0.6 at x 2; joint 1 (0.6 + 0.4) / 2 = 0.5 at x 7.
    np.testing.assert_allclose(plain[0], [[2, 3, 1.0], [7, 3, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(flipped[0], [[2, 3, 0.6], [7, 3, 0.5]], rtol=1e-6)
    # Tags (0.3, 0.9) and (0.5, 0.1): 2-D distance 0.82 < 1, one person; in 1-D it would be 0.2 either way.
    det2, tags2 = decoder.aggregate(np.concatenate([det, tags]), None, (np.concatenate([fdet, ftags]), None))
    assert tags2[0, 3, 2].tolist() == pytest.approx([0.3, 0.9]) and tags2[1, 3, 7].tolist() == pytest.approx(
        [0.5, 0.1]
    )
    with pytest.raises(ValueError, match="the flip test needs flip_index"):
        BottomUpDecoder(2)(np.concatenate([det, tags]), flipped=(np.concatenate([fdet, ftags]), None))


def test_projection_to_the_input_groups_on_input_sized_maps():
    # A single joint at map pixel (4, 3) of an 8x10 map; the input is 16x20 (twice). Without projection:
    # (4 - 0.25 + 0.5) * 2 = 8.5. With it, the resized map (bilinear, half-pixel centres: input pixel i
    # samples map (i + 0.5) / 2 - 0.5) holds 0.75 at 8 and 9 and 0.25 at 7: argmax 8, its right neighbour
    # higher, +0.25 + 0.5: 8.75 (x), 6.75 (y), at scale 1.
    det = np.zeros((1, 8, 10), np.float32)
    det[0, 3, 4] = 1.0
    maps = np.concatenate([det, np.zeros_like(det)])
    plain, _ = BottomUpDecoder(1, grouping="official")(maps, input_size=(16, 20))
    projected, _ = BottomUpDecoder(1, grouping="official", project_to_input=True)(maps, input_size=(16, 20))
    assert plain[0, 0, :2].tolist() == [8.5, 6.5]
    assert projected[0, 0, :2].tolist() == [8.75, 6.75]
    # Without an input size there is nothing to project to: map pixels, as without the option.
    assert BottomUpDecoder(1, grouping="official", project_to_input=True)(maps)[0][0, 0, :2].tolist() == [
        4.25,
        3.25,
    ]


def test_official_cost_puts_the_rounded_distance_before_the_score():
    # Person A (tag 0) from joint 0. Joint 1: p (tag 0.4, score 0.2) rounds to 0 away, q (tag 0.6, score 0.9)
    # to 1. Cost round(d) * 100 - score: p -0.2, q 99.1: A takes p although q is the stronger peak (and q,
    # 0.6 < 1 away, would be accepted). A cost that let the score outweigh the distance would pick q.
    people = [
        (0.0, [(5.3, 5.3, 1.0), None]),
        (0.4, [None, (5.3, 20.3, 0.2)]),
        (0.6, [None, (25.3, 20.3, 0.9)]),
    ]
    det, tags = synth(people, 2, (30, 40))
    poses = by_first_joint(BottomUpDecoder(2, grouping="official").group(det, tags)[0])
    a = [p for p in poses if p[0][:2] == [5.75, 5.75]][0]
    assert a[1][:2] == [5.75, 20.75]


@pytest.mark.parametrize("grouping", ["official", "crowd"])
def test_a_tag_exactly_at_the_threshold_starts_a_new_person(grouping):
    # Tags 0 and 1.0 (exact in float32): 1.0 is not below the threshold 1.0 -> two people; 0.75 joins.
    for tag, people in ((1.0, 2), (0.75, 1)):
        det, tags = synth([(0.0, [(5.3, 5.3, 1.0), None]), (tag, [None, (5.3, 20.3, 1.0)])], 2, (30, 12))
        poses = BottomUpDecoder(2, grouping=grouping, min_joints=1).group(det, tags)[0]
        assert len(poses) == people, (grouping, tag)


def test_refine_uses_the_mean_of_every_seen_joints_tag_vector():
    # J = 3, 2-D tags (as with the flip test). The person: joint 0 at (2, 2) tag (0, 0), joint 2 at (8, 2)
    # tag (0.8, 0) (0.8 < 1 away: it joins), mean (0.4, 0). Joint 1 undetected: c1 at (2, 6) = 0.02, tag
    # (0.4, 0): 0.02 - round(0) = 0.02; c2 at (8, 6) = 0.05, tag (0.2, 0.6): 0.63 away, 0.05 - 1. c1 wins,
    # ties all round: (2.25, 6.25). (A per-joint or all-dimension mean would pick c2.)
    det = np.zeros((3, 9, 11), np.float32)
    tags = np.full((3, 9, 11, 2), 5.0, np.float32)
    det[0, 2, 2], tags[0, 2, 2] = 1.0, (0.0, 0.0)
    det[2, 2, 8], tags[2, 2, 8] = 1.0, (0.8, 0.0)
    det[1, 6, 2], tags[1, 6, 2] = 0.02, (0.4, 0.0)
    det[1, 6, 8], tags[1, 6, 8] = 0.05, (0.2, 0.6)
    (pose,), _ = BottomUpDecoder(3, grouping="official", refine=True).group(det, tags)
    np.testing.assert_allclose(pose, [[2.25, 2.25, 1.0], [2.25, 6.25, 0.02], [8.25, 2.25, 1.0]], rtol=1e-6)


# ---- NMS window, edges, dtypes, work buffers and the lazy tag path (issue #19's surviving mutants) ----


def test_nms_keeps_peaks_three_pixels_apart_and_only_the_higher_of_two_apart():
    # A 5x5 window (+-2 px): b, 3 px right of the higher a, is a peak; c, 2 px left of the higher d, is not.
    # (A 3x3 window would keep c; a 6x6 one, reaching 3 px left, would drop b.)
    det = np.zeros((1, 12, 30), np.float32)
    det[0, 6, 10], det[0, 6, 13], det[0, 6, 20], det[0, 6, 22] = 1.0, 0.8, 0.8, 1.0
    js, ys, xs, vals = BottomUpDecoder(1).top_k(det)
    assert sorted(xs.tolist()) == [10, 13, 22] and ys.tolist() == [6, 6, 6]
    vertical = np.ascontiguousarray(det.transpose(0, 2, 1))
    assert sorted(BottomUpDecoder(1).top_k(vertical)[1].tolist()) == [10, 13, 22]


def test_official_grouping_keeps_thirty_peaks_per_joint_without_a_warning():
    people = [(3.0 * i, [(2.3 + 8 * i, 4.3, 0.2 + 0.02 * i)]) for i in range(31)]
    det, tags = synth(people, 1, (10, 250))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official parser's cap is its rule, not a surprise
        assert len(BottomUpDecoder(1, grouping="official").group(det, tags)[0]) == 30


def test_quarter_pixel_step_one_pixel_from_the_left_and_top_edges():
    # Peak at (1, 1): right / lower neighbours 0.5 above left / upper ones 0.2 at x = 0 / y = 0: +0.25 both.
    det = np.zeros((1, 10, 10), np.float32)
    det[0, 1, 1], det[0, 1, 2], det[0, 1, 0], det[0, 2, 1], det[0, 0, 1] = 1.0, 0.5, 0.2, 0.5, 0.2
    tags = np.zeros((1, 10, 10, 1), np.float32)
    poses, _ = BottomUpDecoder(1, min_joints=1).group(det, tags)
    assert poses[0, 0].tolist() == [1.75, 1.75, 1.0]


def random_outputs(joints, hw, seed):
    """Random float64 (2J, h, w) heatmaps_tags and (J, 2h, 2w) heatmaps, not representable in float32."""
    rng = np.random.RandomState(seed)
    h, w = hw
    return rng.rand(2 * joints, h, w) * 0.6, rng.rand(joints, 2 * h, 2 * w) * 0.6


@pytest.mark.parametrize("with_heatmaps", [True, False])
def test_other_float_inputs_decode_as_their_float32_values_and_results_are_float32(with_heatmaps):
    maps, half = random_outputs(4, (10, 12), seed=1)
    half = half if with_heatmaps else None
    as32 = (maps.astype(np.float32), half.astype(np.float32) if with_heatmaps else None)
    poses, scores = BottomUpDecoder(4, min_joints=1)(maps, half)
    poses32, scores32 = BottomUpDecoder(4, min_joints=1)(*as32)
    assert len(poses) > 5
    assert poses.dtype == scores.dtype == np.float32
    np.testing.assert_array_equal(poses, poses32)
    np.testing.assert_array_equal(scores, scores32)


def test_work_arrays_are_reused_across_frames_and_remade_when_the_size_changes():
    # Fresh arrays per frame cost page faults (issue #14); aggregate's docstring: the next call overwrites.
    decoder = BottomUpDecoder(4, min_joints=1)
    first = decoder.aggregate(*random_outputs(4, (10, 12), seed=1), lazy_tags=True)[0]
    second = decoder.aggregate(*random_outputs(4, (10, 12), seed=2), lazy_tags=True)[0]
    assert np.shares_memory(first, second)
    # Another size on the same decoder decodes as a fresh decoder does.
    bigger = random_outputs(4, (14, 9), seed=4)
    for got, want in zip(decoder(*bigger), BottomUpDecoder(4, min_joints=1)(*bigger)):
        np.testing.assert_array_equal(got, want)


def test_without_refine_or_projection_only_the_heatmaps_are_resized(monkeypatch):
    # Grouping reads tags at the peaks only (LazyTags): resizing the tag channels too is wasted work.
    from edgepose.device import decode_bottomup

    resized = []
    real = decode_bottomup._resize_maps

    def recording(maps, size, out=None):
        resized.append((maps.shape[0], None if out is None else out.shape[0]))
        return real(maps, size, out)

    monkeypatch.setattr(decode_bottomup, "_resize_maps", recording)
    maps, half = random_outputs(4, (10, 12), seed=1)
    BottomUpDecoder(4, min_joints=1)(maps, half, input_size=(40, 48))
    assert resized == [(4, 4)]
    del resized[:]
    BottomUpDecoder(4, min_joints=1, refine=True)(maps, half)  # refine reads whole tag maps
    assert resized == [(8, 8)]


def test_maps_already_at_the_heatmaps_size_are_averaged_as_they_are():
    maps, _ = random_outputs(2, (6, 8), seed=5)
    maps = maps.astype(np.float32)
    half = np.random.RandomState(6).rand(2, 6, 8).astype(np.float32)
    det, _ = BottomUpDecoder(2).aggregate(maps, half)
    np.testing.assert_allclose(det, (maps[:2] + half) * 0.5, rtol=1e-6)


def test_resize_maps_matches_torch_bilinear_for_more_channels_than_rows():
    import torch

    from edgepose.device.decode_bottomup import _resize_maps

    maps = np.random.RandomState(7).rand(5, 3, 4).astype(np.float32)  # 5 channels of 3x4
    got = _resize_maps(maps, (7, 10))
    want = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[None], size=(7, 10), mode="bilinear", align_corners=False
    )[0].numpy()
    assert got.shape == (5, 7, 10)
    np.testing.assert_allclose(got, want, atol=1e-6)
