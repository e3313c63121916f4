"""Crowds (issue #14): the crowd grouping finds every person of synthetic scenes of 1 to 100 people, with
every joint where it was drawn and nobody invented; the official grouping's breakdown past 30 people."""

import json
import warnings

import numpy as np
import pytest
from synthetic_crowds import check_people, cluster_scene, grid_scene, network_outputs

from edgepose.device.decode_bottomup import MIN_JOINTS, BottomUpDecoder
from edgepose.device.errors import EdgeposeError
from edgepose.device.pipeline import PosePipeline
from edgepose.device.skeletons import get_skeleton

SKELETONS = {"coco": 17, "crowdpose": 14}


def decoder(dataset, **options):
    return BottomUpDecoder(SKELETONS[dataset], get_skeleton(dataset)["flip_index"], **options)


@pytest.mark.parametrize("dataset", sorted(SKELETONS))
@pytest.mark.parametrize("n_people", [1, 12, 30, 34, 60, 100])
def test_every_person_of_a_crowd_is_found_with_every_joint_in_place(n_people, dataset):
    scene = grid_scene(n_people, SKELETONS[dataset], seed=n_people)
    poses, scores = decoder(dataset).group(scene.det, scene.tags)
    assert check_people(poses, scene.truth) == []
    assert len(poses) == n_people
    # score: the mean over joints of the peak pixels' values, a little under the drawn peaks (off-centre)
    owner = [np.argmin(((scene.truth[:, 0, :2] - pose[0, :2]) ** 2).sum(axis=1)) for pose in poses]
    drawn = scene.truth[owner, :, 2].mean(axis=1)
    assert np.all(scores <= drawn + 0.005) and np.all(scores >= 0.9 * drawn)


@pytest.mark.parametrize("dataset", sorted(SKELETONS))
@pytest.mark.parametrize("n_people", [12, 34, 100])
def test_overlapping_people_are_kept_apart(n_people, dataset):
    scene = cluster_scene(n_people, SKELETONS[dataset], seed=n_people)
    steps = np.diff(scene.truth[:, :, :2], axis=0)
    close = np.sqrt((steps**2).sum(axis=2)) <= 10
    assert close.sum() >= n_people // 2  # the scene really has neighbours 6-10 px apart
    poses, _ = decoder(dataset).group(scene.det, scene.tags)
    assert check_people(poses, scene.truth) == []
    assert len(poses) == n_people


@pytest.mark.parametrize("layout", [grid_scene, cluster_scene])
@pytest.mark.parametrize("dataset", sorted(SKELETONS))
def test_people_with_missing_joints_are_found_and_too_few_joints_are_nobody(layout, dataset):
    scene = layout(60, SKELETONS[dataset], seed=7, missing=0.8)
    drawn = (scene.truth[:, :, 2] > 0).sum(axis=1)
    assert (drawn < MIN_JOINTS).sum() >= 10 and (drawn >= MIN_JOINTS).sum() >= 20
    poses, _ = decoder(dataset).group(scene.det, scene.tags)
    assert check_people(poses, scene.truth, min_joints=MIN_JOINTS) == []
    assert len(poses) == (drawn >= MIN_JOINTS).sum()
    everyone, _ = decoder(dataset, min_joints=1).group(scene.det, scene.tags)
    assert check_people(everyone, scene.truth, min_joints=1) == []
    assert len(everyone) == (drawn > 0).sum()


@pytest.mark.parametrize("dataset", sorted(SKELETONS))
@pytest.mark.parametrize("flip", [False, True])
def test_network_outputs_of_a_hundred_people_decode_in_input_pixels(dataset, flip):
    joints = SKELETONS[dataset]
    scene = grid_scene(100, joints, seed=3)
    quarter, half = network_outputs(scene)
    dec = decoder(dataset)
    flipped = None
    if flip:  # the mirrored image's outputs: channel c holds the mirrored map of joint flip_index[c]
        fi = dec.flip_index
        flipped = (quarter[fi + [j + joints for j in fi]][:, :, ::-1], half[fi][:, :, ::-1])
    height, width = half.shape[1:]
    poses, _ = dec(quarter, half, flipped, input_size=(2 * height, 2 * width))
    poses[:, :, :2] /= 2
    assert check_people(poses, scene.truth) == []


@pytest.mark.parametrize("dataset", sorted(SKELETONS))
def test_the_official_grouping_is_right_up_to_thirty_and_fragments_people_past_it(dataset):
    joints = SKELETONS[dataset]
    thirty = grid_scene(30, joints, seed=30)
    poses, _ = decoder(dataset, grouping="official").group(thirty.det, thirty.tags)
    assert check_people(poses, thirty.truth) == []
    scene = grid_scene(34, joints, seed=34)
    poses, _ = decoder(dataset, grouping="official").group(scene.det, scene.tags)
    # Only 30 peaks per joint survive and only 30 people take joints: 4 people lose every joint to
    # top-k or to one-joint fragments; no pose mixes two people, but most poses are fragments.
    assert len(poses) > 2 * 34
    assert (poses[:, :, 2] > 0).sum() <= 30 * joints
    truth = scene.truth
    for pose in poses:
        owners = set()
        for j in np.flatnonzero(pose[:, 2] > 0):
            owners.add(int(np.argmin(((truth[:, j, :2] - pose[j, :2]) ** 2).sum(axis=1))))
        assert len(owners) == 1


def test_a_joint_with_more_peaks_than_the_cap_warns_and_keeps_the_strongest():
    # 12 one-joint people 10 px apart, scores 0.2, 0.25, ..., 0.75, tags 3 apart; the cap is 10.
    peaks = [(0, 5 + 10 * i, 5, 3.0 * i, 0.2 + 0.05 * i) for i in range(12)]
    det, tags = _tags(peaks, 1, (10, 125))
    with pytest.warns(RuntimeWarning, match="more than 10 peaks"):
        poses, _ = BottomUpDecoder(1, max_people=10, min_joints=1, adjust=False).group(det, tags)
    assert sorted(p[0][0] for p in poses.tolist()) == [5 + 10 * i for i in range(2, 12)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        poses, _ = BottomUpDecoder(1, min_joints=1).group(det, tags)  # the default cap (500) is far away
    assert len(poses) == 12


def _tags(people, joints, hw):
    """(J, H, W) heatmaps and (J, H, W, 1) tags, one peak of 1.0 at integer (x, y) per given joint."""
    det = np.zeros((joints, hw[0], hw[1]), np.float32)
    tags = np.zeros((joints, hw[0], hw[1], 1), np.float32)
    for j, x, y, tag, score in people:
        det[j, y, x] = score
        tags[j, y - 2 : y + 3, x - 2 : x + 3] = tag
    return det, tags


def test_crowd_grouping_does_not_trade_a_right_pair_for_rejected_ones():
    # Joint 0 makes people A (tag 0) and B (tag 1.65). Joint 1 has p (tag 0.2: A's, 0.2 away) and q
    # (tag -1.45: nobody's, 1.45 from A and 3.1 from B). Official costs, round(d)*100 - score:
    # p->A, q->B = 0 + 300; p->B, q->A = 100 + 100: the official parser picks the second, the threshold
    # rejects both pairs, and A loses p. With pairs beyond the threshold left out, p joins A.
    peaks = [(0, 5, 5, 0.0, 1.0), (0, 25, 5, 1.65, 1.0), (1, 5, 15, 0.2, 0.8), (1, 25, 15, -1.45, 0.8)]
    det, tags = _tags(peaks, 2, (30, 40))
    for grouping, a_has_p in (("official", False), ("crowd", True)):
        poses, _ = BottomUpDecoder(2, adjust=False, grouping=grouping, min_joints=1).group(det, tags)
        poses = poses.tolist()
        a = [p for p in poses if p[0] == [5, 5, 1.0]][0]
        assert (a[1] == [5, 15, pytest.approx(0.8)]) == a_has_p, grouping
        assert len(poses) == (3 if a_has_p else 4)


def test_crowd_grouping_prefers_the_closer_tag_not_the_first_of_a_rounded_tie():
    # A (tag 0) and B (tag 0.45); joint 1: p (tag 0.4) and q (tag 0.05), both within 0.5 of both people:
    # rounded costs tie, the unrounded ones put p with B and q with A.
    peaks = [(0, 5, 5, 0.0, 1.0), (0, 25, 5, 0.45, 1.0), (1, 5, 15, 0.4, 0.9), (1, 25, 15, 0.05, 0.9)]
    det, tags = _tags(peaks, 2, (30, 40))
    poses, _ = BottomUpDecoder(2, adjust=False, min_joints=1).group(det, tags)
    pairs = sorted((p[0][0], p[1][0]) for p in poses.tolist())
    assert pairs == [(5, 25), (25, 5)]


def _manifest(joints, hw):
    skeleton = get_skeleton("coco" if joints == 17 else "crowdpose")
    out = lambda name, role, c, s: {"name": name, "role": role, "layout": "NCHW", "shape": [1, c, s[0], s[1]]}  # noqa: E731
    return {
        "model": {"kind": "bottom-up", "num_joints": joints, "flip_index": skeleton["flip_index"]},
        "input": {
            "shape": [1, 3, hw[0], hw[1]],
            "layout": "NCHW",
            "scale": 1.0,
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
        },
        "outputs": [
            out("maps", "heatmaps_tags", 2 * joints, (hw[0] // 4, hw[1] // 4)),
            out("heat", "heatmaps", joints, (hw[0] // 2, hw[1] // 2)),
        ],
    }


class _Replay:
    """A runtime that returns the given outputs whatever the input."""

    def __init__(self, outputs):
        self.outputs = outputs

    def run(self, batch):
        return {k: np.repeat(v[None], len(batch), axis=0) for k, v in self.outputs.items()}


@pytest.mark.parametrize("grouping,expected", [("crowd", 34), ("official", None)])
def test_the_pipeline_keeps_every_person(grouping, expected):
    scene = grid_scene(34, 14, seed=34)
    quarter, half = network_outputs(scene)
    hw = (2 * half.shape[1], 2 * half.shape[2])
    manifest = _manifest(14, hw)
    runtime = _Replay({"maps": quarter, "heat": half})
    pipe = PosePipeline("unused", runtime=runtime, manifest=manifest, grouping=grouping)
    assert PosePipeline("unused", runtime=runtime, manifest=manifest).decoder.grouping == "crowd"
    people = pipe(np.zeros(hw + (3,), np.uint8))["people"]
    poses, _ = pipe.decoder(quarter, half, input_size=hw)
    assert len(people) == len(poses) == (expected or len(poses))
    assert len(people) > 30  # no cut at 30 (the official grouping finds fragments, and all are kept)
    assert [p["score"] for p in people] == sorted((p["score"] for p in people), reverse=True)


def test_the_pipeline_refuses_bad_grouping_options():
    manifest = _manifest(14, (64, 64))
    with pytest.raises(EdgeposeError, match="min-joints"):
        PosePipeline("unused", runtime=_Replay({}), manifest=manifest, min_joints=0)
    with pytest.raises(EdgeposeError, match="grouping"):
        PosePipeline("unused", runtime=_Replay({}), manifest=manifest, grouping="greedy")


def test_run_py_takes_the_grouping_options(tmp_path, capsys):
    import cv2
    import skimage.data
    from test_device_runtime import make_artifact

    from edgepose.device.cli import main

    folder = make_artifact(tmp_path / "bu")[0]
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))

    def people(*options):
        argv = ["--source", str(photo), "--json", str(tmp_path / "p.jsonl"), "--quiet"] + list(options)
        assert main(argv, model_dir=str(folder)) == 0
        return json.loads((tmp_path / "p.jsonl").read_text())["people"]

    # The tiny random model's tags make more than 30 people; the crowd grouping keeps them all.
    crowd, official = people(), people("--grouping", "official")
    assert len(crowd) > 30 and len(official) != len(crowd)
    assert people("--min-joints", "15") == []  # CrowdPose has 14 joints
    capsys.readouterr()  # the runs above warned about the random weights, once each
    assert main(["--source", str(photo), "--min-joints", "0"], model_dir=str(folder)) == 2
    assert capsys.readouterr().err.strip() == "run.py: error: --min-joints must be at least 1, got 0"
    assert main(["--source", str(photo), "--det-threshold", "-1"], model_dir=str(folder)) == 2
    assert capsys.readouterr().err.strip() == "run.py: error: det_threshold must be at least 0, got -1.0"


@pytest.mark.parametrize("seed", range(3))
def test_crowd_assignment_is_optimal_over_the_allowed_pairs_only(seed):
    from scipy.optimize import linear_sum_assignment

    from edgepose.device.grouping import crowd_assign

    rng = np.random.RandomState(seed)
    for _ in range(200):
        n, groups = rng.randint(1, 25), rng.randint(1, 25)
        dist = rng.rand(n, groups) * rng.choice([1.5, 3.0, 8.0])  # from everyone near to most far
        if rng.rand() < 0.5:
            dist = np.round(dist * 4) / 4  # ties
        scores = rng.uniform(0.1, 1, n)
        group = crowd_assign(dist, scores, 1.0)
        joined = group >= 0
        assert np.all(dist[joined, group[joined]] < 1.0)  # never a pair at or beyond the threshold
        assert len(set(group[joined].tolist())) == joined.sum()  # one peak per person
        # the reference: scipy on the same problem (squared distance), disallowed pairs forbidden,
        # "new person" costs 1
        cost = np.full((n, groups + n), np.inf)
        cost[:, :groups] = np.where(dist < 1.0, dist**2 - scores[:, None], np.inf)
        cost[np.arange(n), groups + np.arange(n)] = 1.0
        rows, cols = linear_sum_assignment(cost)
        ours = np.where(joined, dist[np.arange(n), np.maximum(group, 0)] ** 2 - scores, 1.0).sum()
        assert ours == pytest.approx(cost[rows, cols].sum(), abs=1e-9)


def test_crowd_assignment_keeps_the_order_where_plain_distances_tie():
    # One-dimensional tags, two peaks p < q on the same side of two people A < B, all within the
    # threshold: |p-A| + |q-B| == |p-B| + |q-A| exactly, so with plain distances float rounding (and the
    # 1e-6 between onnxruntime and PyTorch) picks the pairing. Squared, p->A and q->B win by 2 (q-p)(B-A).
    from edgepose.device.grouping import crowd_assign

    rng = np.random.RandomState(0)
    for _ in range(200):
        p, q, a, b = np.sort(rng.uniform(0, 0.9, 4))
        if rng.rand() < 0.5:
            p, q, a, b = a, b, p, q  # the peaks above the people
        people = np.array([a, b]) if rng.rand() < 0.5 else np.array([b, a])
        peaks = np.array([p, q]) if rng.rand() < 0.5 else np.array([q, p])
        dist = np.abs(peaks[:, None] - people[None, :])
        group = crowd_assign(dist, rng.uniform(0.1, 1, 2), 1.0)
        assert people[group].tolist() == [a if x == p else b for x in peaks], (p, q, a, b)


def test_assignment_refuses_bad_matrices_in_one_message_each():
    from edgepose.device.assignment import min_cost_assignment

    with pytest.raises(ValueError) as err:
        min_cost_assignment(np.zeros((3, 2)))
    assert str(err.value) == "min_cost_assignment needs rows <= columns, got 3x2"
    with pytest.raises(ValueError) as err:
        min_cost_assignment(np.array([[0.0, np.inf]]))
    assert str(err.value) == "min_cost_assignment needs a finite cost matrix"
    assert min_cost_assignment(np.zeros((0, 4))).tolist() == []  # nothing to assign is no error


def test_assignment_of_integer_costs_and_ties_picks_free_columns_first():
    from edgepose.device.assignment import min_cost_assignment

    # Integer input: the optimum of [[1, 2], [1, 3]] is rows -> (1, 0), cost 3.
    assert min_cost_assignment(np.array([[1, 2], [1, 3]])).tolist() == [1, 0]
    # Every row wants column 0 equally; the search ends at a free column as soon as one ties.
    picked = min_cost_assignment(np.zeros((3, 3)))
    assert sorted(picked.tolist()) == [0, 1, 2]


def test_assignment_of_float32_costs_is_computed_in_float64():
    from edgepose.device.assignment import min_cost_assignment

    # float32 holds every entry exactly but not the sums the search forms (2**24 + 1 rounds to 2**24):
    # in float32 this search ends at rows -> (1, 0, 3, 2), which costs 2**24 + 5; the optimum costs 2**24 + 4.
    big = float(2**24)
    cost = np.array(
        [[big, 2, 2 * big, big], [0, 2, big + 4, 1], [2, big, big, 1], [1, big, big + 2, big]], np.float32
    )
    picked = min_cost_assignment(cost)
    assert cost.astype(np.float64)[np.arange(4), picked].sum() == big + 4


def test_each_grouping_marks_a_candidate_that_joins_nobody_with_minus_one():
    from edgepose.device.grouping import crowd_assign, official_assign

    # Candidate 0 is near group 0, candidate 1 far from every group (official: it takes a padding column).
    dist, scores = np.array([[0.2, 5.0], [5.0, 5.0]]), np.array([0.9, 0.9])
    assert crowd_assign(dist, scores, 1.0).tolist() == [0, -1]  # nobody competes: the shortcut
    assert official_assign(dist[:, :1], scores, 1.0).tolist() == [0, -1]
    # Two candidates for group 0: the assignment (the stronger joins).
    dist = np.array([[0.2, 5.0], [0.3, 5.0], [5.0, 5.0]])
    assert crowd_assign(dist, np.array([0.5, 0.9, 0.9]), 1.0).tolist() == [-1, 0, -1]


def test_crowd_cost_scales_the_distance_by_the_threshold():
    from edgepose.device.grouping import crowd_assign

    # Threshold 2, one person, two candidates competing for it. Costs (d / 2)^2 - score:
    # a (d 1.0, score 0.5) -0.25, b (d 0.2, score 0.1) -0.09: a joins, b starts a person.
    # Scaled the wrong way, (d * 2)^2 - score, a would cost 3.5 (worse than a new person, 1) and b join.
    group = crowd_assign(np.array([[1.0], [0.2]]), np.array([0.5, 0.1]), tag_threshold=2.0)
    assert group.tolist() == [0, -1]


def test_a_peak_exactly_at_the_detection_threshold_is_not_a_peak():
    det, tags = _tags([(0, 5, 5, 0.0, 0.25)], 1, (12, 12))  # 0.25: exact in float32 and float64
    decoder = BottomUpDecoder(1, det_threshold=0.25, min_joints=1, adjust=False)
    assert len(decoder.group(det, tags)[0]) == 0
    det[0, 5, 5] = np.nextafter(np.float32(0.25), np.float32(1))  # the next float32 above it is one
    assert len(decoder.group(det, tags)[0]) == 1


def test_people_seen_only_by_joints_visited_out_of_index_order_are_found():
    # Only joints 7 and 11 have peaks; the official order visits 11 before 7, so the first person
    # starts at joint 11 while joint 7's peaks come first in the sorted peak list.
    det, tags = _tags([(7, 6, 6, 0.0, 0.9), (11, 6, 16, 0.1, 0.8)], 17, (24, 14))
    poses, _ = BottomUpDecoder(17, min_joints=1, adjust=False).group(det, tags)
    assert len(poses) == 1 and poses[0, 7, :2].tolist() == [6, 6] and poses[0, 11, :2].tolist() == [6, 16]


def test_the_flip_test_without_flip_index_is_one_message():
    maps = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ValueError) as err:
        BottomUpDecoder(2).aggregate(maps, None, flipped=(maps, None))
    assert str(err.value) == "the flip test needs flip_index"


def test_decoder_messages_in_full():
    with pytest.raises(ValueError) as err:
        BottomUpDecoder(1, grouping="greedy")
    assert str(err.value) == "grouping must be one of crowd, official, got 'greedy'"
    for option, bad, message in [
        ("det_threshold", -0.01, "det_threshold must be at least 0, got -0.01"),
        ("tag_threshold", 0, "tag_threshold must be above 0, got 0"),
        ("tag_threshold", float("nan"), "tag_threshold must be above 0, got nan"),
    ]:
        with pytest.raises(ValueError) as err:
            BottomUpDecoder(1, **{option: bad})
        assert str(err.value) == message
    BottomUpDecoder(1, det_threshold=0.0, tag_threshold=1e-6)  # the bounds themselves are fine
    det, tags = _tags([(0, 5 + 10 * i, 5, 3.0 * i, 0.5) for i in range(3)], 1, (10, 35))
    with pytest.warns(RuntimeWarning) as caught:
        BottomUpDecoder(1, max_people=2, min_joints=1).group(det, tags)
    assert (
        str(caught[0].message)
        == "more than 2 peaks of one joint above 0.1: kept the 2 strongest (max_people)"
    )
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, 4, 4] = 0.9
    decoder = BottomUpDecoder(1, refine=True, min_joints=1)
    det, lazy = decoder.aggregate(maps, None, lazy_tags=True)
    with pytest.raises(ValueError) as err:
        decoder.group(det, lazy)
    assert str(err.value) == "refine needs full tag maps (aggregate with lazy_tags=False)"


def test_min_joints_two_drops_one_joint_people():
    # A: joints 0 and 1 (tags 0, 0.1); B: joint 0 only (tag 3).
    det, tags = _tags([(0, 5, 5, 0.0, 0.9), (1, 5, 15, 0.1, 0.9), (0, 25, 5, 3.0, 0.9)], 2, (24, 34))
    kept = BottomUpDecoder(2, min_joints=2, adjust=False).group(det, tags)[0]
    assert len(kept) == 1 and kept[0, :, :2].tolist() == [[5, 5], [5, 15]]
    assert len(BottomUpDecoder(2, min_joints=1, adjust=False).group(det, tags)[0]) == 2
