"""Object keypoint similarity (OKS), the COCO keypoint metric's distance between two poses.

OKS = mean over the labelled joints of exp(-d^2 / (2 s^2 k^2)), with d the distance between the two
positions of a joint, s^2 the person's area and k = 2 sigma the joint's falloff. The per-joint sigmas
are the datasets' own: COCO's (cocodataset/cocoapi), CrowdPose's (its cocoapi fork, also used by
xtcocotools), and for MPII, which has no OKS of its own, mmpose's adaptation of COCO's. The formula,
including the rule for a person with no labelled joint (distance to a box twice the person's size),
is pycocotools' ``COCOeval.computeOks``; tests/test_accuracy.py holds the two to the same numbers.
"""

from __future__ import annotations

import numpy as np

from edgepose.errors import EdgeposeError

# Per-joint sigmas in each dataset's joint order (edgepose.device.skeletons).
SIGMAS: dict[str, np.ndarray] = {
    "coco": np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0,
    "crowdpose": np.array(
        [0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]
    )
    / 10.0,
    "mpii": np.array(
        [0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072, 0.179, 0.179]
        + [0.072, 0.062]
    ),
}
SIGMA_SOURCES = {
    "coco": "COCO's sigmas",
    "crowdpose": "CrowdPose's sigmas",
    "mpii": "MPII sigmas adapted from COCO's by mmpose (MPII has no OKS)",
}
_EPS = np.spacing(1)  # pycocotools' guard against a zero area


def sigmas_for(dataset: str | None, num_joints: int) -> tuple[str, np.ndarray]:
    """The sigma set of a head: by its dataset, else by its joint count (17 COCO, 14 CrowdPose, 16 MPII)."""
    if dataset in SIGMAS and len(SIGMAS[dataset]) == num_joints:
        return dataset, SIGMAS[dataset]
    for name, sigmas in SIGMAS.items():
        if len(sigmas) == num_joints:
            return name, sigmas
    raise EdgeposeError(
        f"no OKS sigmas for a {num_joints}-joint head (dataset {dataset!r}); known: "
        + ", ".join(f"{k} ({len(v)} joints)" for k, v in SIGMAS.items())
    )


def oks_matrix(
    gt_keypoints: np.ndarray,
    gt_areas: np.ndarray,
    gt_boxes: np.ndarray,
    dt_keypoints: np.ndarray,
    sigmas: np.ndarray,
) -> np.ndarray:
    """OKS of every detection with every ground-truth person: (D, G).

    ``gt_keypoints`` (G, J, 3): x, y, v (v > 0: labelled); ``gt_areas`` (G,); ``gt_boxes`` (G, 4) as
    x, y, w, h (used only for a person with no labelled joint); ``dt_keypoints`` (D, J, >=2).
    """
    gt = np.asarray(gt_keypoints, np.float64).reshape(len(gt_areas), len(sigmas), 3)
    dt = np.asarray(dt_keypoints, np.float64).reshape(-1, len(sigmas), np.shape(dt_keypoints)[-1])
    ious = np.zeros((len(dt), len(gt)))
    if not len(dt) or not len(gt):
        return ious
    variances = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    xd, yd = dt[:, :, 0], dt[:, :, 1]  # (D, J)
    for j in range(len(gt)):
        xg, yg, vg = gt[j, :, 0], gt[j, :, 1], gt[j, :, 2]
        labelled = vg > 0
        if labelled.any():
            dx, dy = xd - xg, yd - yg
        else:  # no joint to compare: how far each joint lies outside the box grown by its size each way
            x, y, w, h = (float(v) for v in gt_boxes[j])
            dx = np.maximum(0.0, (x - w) - xd) + np.maximum(0.0, xd - (x + 2 * w))
            dy = np.maximum(0.0, (y - h) - yd) + np.maximum(0.0, yd - (y + 2 * h))
        e = (dx**2 + dy**2) / variances / (float(gt_areas[j]) + _EPS) / 2.0
        if labelled.any():
            e = e[:, labelled]
        ious[:, j] = np.exp(-e).sum(axis=1) / e.shape[1]
    return ious
