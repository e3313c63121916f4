"""OKS, matching and AP (edgepose.accuracy.oks / ap), held to pycocotools' own figures; the photos."""

import contextlib
import io

import numpy as np
import pytest

from edgepose.accuracy.ap import (
    GroundTruth,
    average_precision,
    match_image,
    pose_annotation,
)
from edgepose.accuracy.oks import SIGMAS, oks_matrix, sigmas_for
from edgepose.errors import EdgeposeError


def _gt(poses, kpt_threshold=0.0):
    poses = np.asarray(poses, np.float64)
    anns = [pose_annotation(p, kpt_threshold) for p in poses]
    return GroundTruth.from_annotations(anns, poses.shape[1] if poses.ndim == 3 else 17)


def _pose(rng, joints, center=(200.0, 200.0), size=80.0):
    xy = np.asarray(center) + rng.randn(joints, 2) * size
    return np.concatenate([xy, rng.uniform(0.2, 1.0, (joints, 1))], axis=1)


def test_sigma_sets_by_dataset_and_by_joint_count():
    assert sigmas_for("coco", 17)[0] == "coco" and len(sigmas_for("coco", 17)[1]) == 17
    assert sigmas_for("crowdpose", 14)[0] == "crowdpose"
    assert sigmas_for(None, 14)[0] == "crowdpose" and sigmas_for("other", 16)[0] == "mpii"
    assert sigmas_for("coco", 14)[0] == "crowdpose"  # the head's joint count wins over a wrong name
    np.testing.assert_allclose(SIGMAS["coco"][:3], [0.026, 0.025, 0.025])
    np.testing.assert_allclose(SIGMAS["crowdpose"][-2:], [0.079, 0.079])
    with pytest.raises(EdgeposeError, match="no OKS sigmas for a 5-joint head"):
        sigmas_for("coco", 5)


def test_oks_is_one_for_the_same_pose_and_follows_the_formula():
    rng = np.random.RandomState(0)
    pose = _pose(rng, 17)
    gt = _gt([pose])
    assert oks_matrix(gt.keypoints, gt.areas, gt.boxes, pose[None], SIGMAS["coco"])[0, 0] == pytest.approx(
        1.0
    )
    moved = gt.keypoints[0].copy()  # the annotation (rounded to 0.01 px), every joint 3 px to the right
    moved[:, 0] += 3.0
    expected = np.mean(np.exp(-9.0 / (2 * gt.areas[0] * (2 * SIGMAS["coco"]) ** 2)))
    got = oks_matrix(gt.keypoints, gt.areas, gt.boxes, moved[None], SIGMAS["coco"])[0, 0]
    assert got == pytest.approx(expected, rel=1e-9) and got < 1.0


def test_pose_annotation_labels_joints_above_the_threshold_and_boxes_them():
    pose = np.array([[10.0, 20.0, 0.9], [50.0, 80.0, 0.5], [300.0, 300.0, 0.05]])
    ann = pose_annotation(pose, kpt_threshold=0.1)
    assert ann["num_keypoints"] == 2 and ann["keypoints"][6:] == [0.0, 0.0, 0.0]
    assert ann["bbox"] == [10.0, 20.0, 40.0, 60.0] and ann["area"] == 2400.0
    assert pose_annotation(pose, kpt_threshold=0.95)["num_keypoints"] == 0


def test_perfect_missing_and_extra_people():
    rng = np.random.RandomState(1)
    sigmas = SIGMAS["crowdpose"]
    poses = np.stack([_pose(rng, 14, (100.0 + 150 * i, 200.0)) for i in range(4)])
    gt = _gt(poses)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    perfect = average_precision([match_image(gt, poses, scores, sigmas)])
    assert (perfect.ap, perfect.ap50, perfect.ap75, perfect.found) == (1.0, 1.0, 1.0, 1.0)
    assert (perfect.people, perfect.detections) == (4, 4)
    missing = average_precision([match_image(gt, poses[:3], scores[:3], sigmas)])
    assert missing.found == 0.75 and missing.ap < 1.0
    junk = np.concatenate([poses, poses[:2] + 500.0])  # two confident people that are not there
    extra = average_precision([match_image(gt, junk, np.r_[scores, 0.95, 0.95], sigmas)])
    assert extra.found == 1.0 and extra.ap < 1.0
    nobody = average_precision([match_image(_gt(np.zeros((0, 14, 3))), poses, scores, sigmas)])
    assert nobody.ap is None and nobody.people == 0 and nobody.detections == 4
    found_nothing = average_precision([match_image(gt, np.zeros((0, 14, 3)), np.zeros(0), sigmas)])
    assert found_nothing.ap == 0.0 and found_nothing.found == 0.0


def _synthetic_set(seed, joints):
    """A few images of people (some with no labelled joint: ignored) and noisy / invented detections."""
    rng = np.random.RandomState(seed)
    images, anns, dets = [], [], []
    for image_id in range(1, 7):
        images.append({"id": image_id, "width": 640, "height": 480})
        for _ in range(rng.randint(0, 5)):
            pose = _pose(rng, joints, rng.uniform(60, 560, 2), rng.uniform(15, 90))
            threshold = 1.1 if rng.rand() < 0.15 else 0.3  # now and then a person with no labelled joint
            ann = pose_annotation(pose, threshold)
            ann.update(id=len(anns) + 1, image_id=image_id, category_id=1)
            anns.append(ann)
            for _ in range(rng.randint(0, 3)):
                noisy = pose[:, :2] + rng.randn(joints, 2) * rng.uniform(0.5, 20)
                dets.append((image_id, noisy, rng.rand()))
        for _ in range(rng.randint(0, 3)):
            dets.append((image_id, rng.uniform(0, 640, (joints, 2)), rng.rand()))
    results = [
        {
            "image_id": i,
            "category_id": 1,
            "keypoints": np.concatenate([xy, np.ones((joints, 1))], 1).round(2).ravel().tolist(),
            "score": float(s),
        }
        for i, xy, s in dets
    ]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}, results


@pytest.mark.parametrize("dataset", ["coco", "crowdpose"])
def test_ap_equals_pycocotools_on_synthetic_sets(dataset):
    pytest.importorskip("pycocotools", reason="pycocotools is in the 'accuracy' extra")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    sigmas = SIGMAS[dataset]
    joints = len(sigmas)
    checked = ignored = 0
    for seed in range(12):
        data, results = _synthetic_set(seed, joints)
        if not results:
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = data
            gt.createIndex()
            evaluator = COCOeval(gt, gt.loadRes(results), "keypoints")
            evaluator.params.kpt_oks_sigmas = sigmas
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        matches = []
        for image in data["images"]:
            anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
            mine = [r for r in results if r["image_id"] == image["id"]]
            keypoints = np.array([r["keypoints"] for r in mine]).reshape(-1, joints, 3)
            scores = np.array([r["score"] for r in mine])
            matches.append(match_image(GroundTruth.from_annotations(anns, joints), keypoints, scores, sigmas))
            ignored += sum(a["num_keypoints"] == 0 for a in anns)
        ours = average_precision(matches)
        theirs = evaluator.stats  # AP, AP50, AP75, ..., AR50 at index 6
        np.testing.assert_allclose(
            [ours.ap, ours.ap50, ours.ap75, ours.found], theirs[[0, 1, 2, 6]], atol=1e-12
        )
        checked += 1
    assert checked >= 10 and ignored > 0  # ignored people were part of the comparison


def test_bundled_photos_are_four_bgr_frames():
    from edgepose.accuracy.images import BUNDLED, bundled_photos

    photos = bundled_photos()
    assert [name for name, _ in photos] == list(BUNDLED)
    assert all(f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8 for _, f in photos)
    astronaut = dict(photos)["astronaut"]
    import skimage.data

    np.testing.assert_array_equal(astronaut[..., ::-1], skimage.data.astronaut())  # BGR of the RGB photo


def test_an_unreadable_image_is_skipped_with_a_warning(tmp_path, capsys):
    import cv2

    from edgepose.accuracy.images import image_paths, read_images

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image name")
    paths = image_paths(tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.jpg"]
    frames = list(read_images(paths))
    assert [name for name, _ in frames] == ["a.png"]
    err = capsys.readouterr().err
    assert "warning: skipping" in err and "b.jpg" in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeposeError, match="no images"):
        image_paths(tmp_path / "empty")
    with pytest.raises(EdgeposeError, match="images not found"):
        image_paths(tmp_path / "missing")
