"""Keypoint average precision of one set of poses against another, the way pycocotools computes it.

Ground truth is a list of people with labelled joints (:class:`GroundTruth`); detections are poses with
scores. Per image, detections are matched greedily in score order to the unmatched person of highest
OKS at each threshold 0.50:0.05:0.95 (``COCOeval.evaluateImg``, one category, every area, ``max_dets``
detections); over images, precision is interpolated at 101 recall points and averaged
(``COCOeval.accumulate``). A person with no labelled joint is ignored: a detection matched to it
counts neither way, as in COCO. tests/test_accuracy.py holds the figures to pycocotools' own.

Written here rather than called through pycocotools so that agreement needs no annotation files and
gives per-image figures; ``edgepose eval`` on a labelled set goes through pycocotools itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgepose.accuracy.oks import oks_matrix

THRESHOLDS = np.linspace(0.5, 0.95, 10)  # OKS thresholds of COCO's AP
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
COCO_MAX_DETS = 20  # COCO keypoints' maxDets


def pose_annotation(keypoints: np.ndarray, kpt_threshold: float = 0.0) -> dict:
    """A COCO keypoint annotation from one pose (J, 3) of (x, y, score).

    A joint is labelled (v = 2) when its score is above ``kpt_threshold``, else it is unlabelled
    (0, 0, 0). The box and area are those of the labelled joints, the way pycocotools' ``loadRes``
    gives a keypoint result its box and area (people have no segmentation here).
    """
    points = np.asarray(keypoints, np.float64).reshape(-1, 3)
    labelled = points[:, 2] > kpt_threshold
    flat = np.zeros((len(points), 3))
    flat[labelled, :2] = points[labelled, :2]
    flat[labelled, 2] = 2
    if labelled.any():
        x0, y0 = points[labelled, :2].min(axis=0)
        x1, y1 = points[labelled, :2].max(axis=0)
    else:
        x0 = y0 = x1 = y1 = 0.0
    return {
        "keypoints": [round(float(v), 2) for v in flat.ravel()],
        "num_keypoints": int(labelled.sum()),
        "area": round(float((x1 - x0) * (y1 - y0)), 2),
        "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
        "iscrowd": 0,
    }


@dataclass(frozen=True)
class GroundTruth:
    """The people of one image: keypoints (G, J, 3) with visibility, areas, xywh boxes, ignore flags."""

    keypoints: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray

    @classmethod
    def from_annotations(cls, annotations: Sequence[dict], num_joints: int) -> GroundTruth:
        """From COCO keypoint annotations (``keypoints``, ``area``, ``bbox``, ``num_keypoints``)."""
        n = len(annotations)
        return cls(
            keypoints=np.array([a["keypoints"] for a in annotations], np.float64).reshape(n, num_joints, 3),
            areas=np.array([a["area"] for a in annotations], np.float64).reshape(n),
            boxes=np.array([a["bbox"] for a in annotations], np.float64).reshape(n, 4),
            ignore=np.array(
                [a.get("num_keypoints", 1) == 0 or a.get("ignore", 0) for a in annotations], bool
            ),
        )

    @property
    def counted(self) -> int:
        """People that count (not ignored)."""
        return int((~self.ignore).sum())


@dataclass(frozen=True)
class ImageMatch:
    """Detections of one image after matching: scores (D,) in score order, matched and ignored (T, D)."""

    scores: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    gt_count: int  # people that count (not ignored)


def match_image(
    gt: GroundTruth,
    dt_keypoints: np.ndarray,
    dt_scores: np.ndarray,
    sigmas: np.ndarray,
    max_dets: int = COCO_MAX_DETS,
) -> ImageMatch:
    """Match one image's detections to its people at every OKS threshold (``COCOeval.evaluateImg``)."""
    scores = np.asarray(dt_scores, np.float64).reshape(-1)
    order = np.argsort(-scores, kind="mergesort")[:max_dets]
    gt_order = np.argsort(gt.ignore, kind="mergesort")  # people that count first
    ious = oks_matrix(
        gt.keypoints[gt_order],
        gt.areas[gt_order],
        gt.boxes[gt_order],
        np.asarray(dt_keypoints)[order],
        sigmas,
    )
    ignore = gt.ignore[gt_order]
    t_count, d_count, g_count = len(THRESHOLDS), len(order), len(gt_order)
    matched = np.zeros((t_count, d_count), bool)
    ignored = np.zeros((t_count, d_count), bool)
    for t, threshold in enumerate(THRESHOLDS):
        taken = np.zeros(g_count, bool)
        for d in range(d_count):
            best, m = min(threshold, 1 - 1e-10), -1
            for g in range(g_count):
                if taken[g]:
                    continue
                if m > -1 and not ignore[m] and ignore[g]:  # a counted match beats any ignored one
                    break
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m > -1:
                matched[t, d], ignored[t, d], taken[m] = True, ignore[m], True
    return ImageMatch(scores[order], matched, ignored, gt.counted)


@dataclass(frozen=True)
class Scores:
    """AP over OKS 0.50:0.95, AP50, AP75 and the share of people found (recall at OKS 0.5).

    All None when there is nobody to find (no counted ground-truth person).
    """

    ap: float | None
    ap50: float | None
    ap75: float | None
    found: float | None
    people: int  # ground-truth people that count
    detections: int

    def as_dict(self) -> dict:
        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 4)

        return {
            "ap": r(self.ap),
            "ap50": r(self.ap50),
            "ap75": r(self.ap75),
            "found": r(self.found),
            "people": self.people,
            "detections": self.detections,
        }


def average_precision(matches: Sequence[ImageMatch]) -> Scores:
    """AP, AP50, AP75 and recall at 0.5 over the images' matches (``COCOeval.accumulate``/``summarize``)."""
    people = sum(m.gt_count for m in matches)
    detections = sum(len(m.scores) for m in matches)
    if people == 0:
        return Scores(None, None, None, None, 0, detections)
    if detections == 0:
        return Scores(0.0, 0.0, 0.0, 0.0, people, 0)
    scores = np.concatenate([m.scores for m in matches])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([m.matched for m in matches], axis=1)[:, order]
    ignored = np.concatenate([m.ignored for m in matches], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    precision = np.zeros((len(THRESHOLDS), len(RECALL_POINTS)))
    recall = np.zeros(len(THRESHOLDS))
    for t in range(len(THRESHOLDS)):
        rc = tp[t] / people
        pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
        recall[t] = rc[-1] if len(rc) else 0.0
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # the precision envelope
        index = np.searchsorted(rc, RECALL_POINTS, side="left")
        valid = index < len(pr)
        precision[t, : valid.sum()] = pr[index[valid]]
    return Scores(
        ap=float(precision.mean()),
        ap50=float(precision[0].mean()),
        ap75=float(precision[5].mean()),
        found=float(recall[0]),
        people=people,
        detections=detections,
    )
