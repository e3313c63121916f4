"""``edgepose eval``: keypoint AP of a model or an artifact on a labelled COCO-format set, by pycocotools.

Every image of the annotation file (that is found in the images folder) goes through the device
pipeline: bottom-up models see the whole image; top-down models see the ground-truth person boxes or
the boxes of a COCO detections file. The poses are written as COCO keypoint results and scored by
``pycocotools.cocoeval.COCOeval`` with the sigmas of the model's keypoint set. For CrowdPose (whose
annotations have no ``area``) the area is the box's, as xtcocotools does with ``use_area=False``, and
when the images carry CrowdPose's ``crowdIndex`` the AP is also given on its easy / medium / hard
subsets (crowd index below 0.1, 0.1 to 0.8, above 0.8).

pycocotools rather than xtcocotools: pycocotools has wheels for every Python edgepose supports (3.10 to
3.13, x86-64 and arm64); xtcocotools' last release has wheels only up to Python 3.11 on x86-64 and
would need a compiler elsewhere. What xtcocotools adds for CrowdPose (the crowd-index split) is a
subset of images, which pycocotools evaluates just as well.

Not the papers' full test protocol: no OKS-NMS and no rescoring of top-down poses (score = box score x
mean joint score), single scale; the protocol section of the result says what was done.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.accuracy.oks import SIGMA_SOURCES, sigmas_for
from edgepose.errors import EdgeposeError

SCHEMA = "edgepose.eval/1"
STAT_NAMES = ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L")
CROWD_LEVELS = {"easy": (0.0, 0.1), "medium": (0.1, 0.8), "hard": (0.8, 1.0 + 1e-9)}
EXTRA = "pip install 'edgepose[accuracy]'"


def require_pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise EdgeposeError(f"edgepose eval needs pycocotools: {EXTRA}") from None
    return COCO, COCOeval


def load_annotations(path: str | os.PathLike, num_joints: int) -> tuple[dict[str, Any], int, list[str]]:
    """The annotation file, checked and completed; the person category id; notes on what was filled in."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeposeError(f"annotation file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise EdgeposeError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise EdgeposeError(f"{path} is not a COCO keypoint file (needs images, annotations, categories)")
    people = [c for c in data["categories"] if c.get("keypoints")] or data["categories"]
    if not people:
        raise EdgeposeError(f"{path} has no categories")
    category = int(people[0]["id"])
    notes = []
    filled = 0
    for ann in data["annotations"]:
        if ann.get("category_id") != category:
            continue
        joints = len(ann.get("keypoints", [])) // 3
        if joints != num_joints:
            raise EdgeposeError(
                f"{path}: annotation {ann.get('id')} has {joints} joints, the model has {num_joints}"
            )
        ann.setdefault("iscrowd", 0)
        ann.setdefault("num_keypoints", int(np.count_nonzero(np.asarray(ann["keypoints"])[2::3])))
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
            filled += 1
    if filled:
        notes.append(
            f"area = box width x height for {filled} annotations without one (xtcocotools' use_area=False)"
        )
    return data, category, notes


def _xyxy(box: list[float], score: float = 1.0) -> list[float]:
    x, y, w, h = (float(v) for v in box[:4])
    return [x, y, x + w, y + h, float(score)]


def gt_boxes(coco: Any, image_id: int, category: int) -> list[list[float]]:
    """Ground-truth person boxes of an image (not crowd regions, positive size), as x1, y1, x2, y2, 1."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[category], iscrowd=False))
    return [_xyxy(a["bbox"]) for a in anns if a["bbox"][2] > 0 and a["bbox"][3] > 0]


def load_detections(path: str | os.PathLike, category: int, threshold: float) -> dict[int, list[list[float]]]:
    """A COCO detections file (``[{image_id, category_id, bbox (x, y, w, h), score}]``) as boxes per image."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EdgeposeError(f"detections file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise EdgeposeError(f"cannot read detections file {path}: {exc}") from None
    if not isinstance(data, list):
        raise EdgeposeError(f"{path}: expected a list of COCO detections")
    boxes: dict[int, list[list[float]]] = {}
    for det in data:
        try:
            if det.get("category_id", category) != category or float(det.get("score", 1.0)) < threshold:
                continue
            boxes.setdefault(int(det["image_id"]), []).append(_xyxy(det["bbox"], det.get("score", 1.0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise EdgeposeError(f"{path}: not a COCO detection: {det!r:.100}") from None
    return boxes


def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        return fn()


def score_results(
    data: dict[str, Any], results: list[dict[str, Any]], sigmas: np.ndarray, image_ids: list[int]
) -> dict[str, Any]:
    """pycocotools' keypoint metrics of ``results`` on ``image_ids`` (plus crowd-index subsets, if any)."""
    COCO, COCOeval = require_pycocotools()

    def run(ids: list[int]) -> dict[str, float | None]:
        if not results:  # loadRes refuses an empty list: nobody found is AP 0 wherever there are people
            return {name: 0.0 for name in STAT_NAMES}
        evaluator = COCOeval(gt, dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        evaluator.params.imgIds = ids
        _quiet(lambda: (evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()))
        return {name: (None if v < 0 else float(v)) for name, v in zip(STAT_NAMES, evaluator.stats)}

    gt = _quiet(lambda: _coco(COCO, data))
    dt = _quiet(lambda: gt.loadRes(results)) if results else None
    metrics = run(image_ids)
    crowd = None
    indexed = {i["id"]: i["crowdIndex"] for i in data["images"] if "crowdIndex" in i and i["id"] in image_ids}
    if indexed:
        crowd = {}
        for level, (low, high) in CROWD_LEVELS.items():
            ids = sorted(i for i, c in indexed.items() if low <= float(c) < high)
            crowd[level] = {"images": len(ids), "AP": run(ids)["AP"] if ids else None}
    return {"metrics": metrics, "crowd_index": crowd}


def _coco(COCO: Any, data: dict[str, Any]) -> Any:
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    return coco


def evaluate(
    pipeline: Any,
    manifest: dict[str, Any],
    annotations: str | os.PathLike,
    images: str | os.PathLike,
    *,
    detections: str | os.PathLike | None = None,
    box_threshold: float = 0.0,
    max_images: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``pipeline`` over the set and score it; the result record and the keypoint results (COCO JSON)."""
    import cv2

    COCO, _ = require_pycocotools()
    model = manifest["model"]
    sigma_set, sigmas = sigmas_for(model.get("dataset"), int(model["num_joints"]))
    data, category, notes = load_annotations(annotations, int(model["num_joints"]))
    gt = _quiet(lambda: _coco(COCO, data))
    top_down = model.get("kind") == "top-down"
    boxes_by_image = load_detections(detections, category, box_threshold) if top_down and detections else None
    if detections and not top_down:
        raise EdgeposeError(f"--detections is for top-down models; {model.get('name')} is bottom-up")
    image_ids = sorted(gt.getImgIds())[: max_images or None]
    if not image_ids:
        raise EdgeposeError(f"{annotations} lists no images")
    folder = Path(images)
    if not folder.is_dir():
        raise EdgeposeError(f"images folder not found: {folder}")
    results, done, missing = [], [], []
    for image_id in image_ids:
        info = gt.loadImgs([image_id])[0]
        path = folder / info["file_name"]
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if frame is None:
            missing.append(info["file_name"])
            continue
        boxes = None
        if top_down:
            boxes = (
                boxes_by_image.get(image_id, [])
                if boxes_by_image is not None
                else gt_boxes(gt, image_id, category)
            )
        for person in pipeline(frame, boxes)["people"]:
            results.append({
                "image_id": image_id,
                "category_id": category,
                "keypoints": [float(v) for point in person["keypoints"] for v in point],
                "score": float(person["score"]),
            })  # fmt: skip
        done.append(image_id)
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        print(
            f"warning: skipped {len(missing)} images missing or unreadable in {folder}: {shown}",
            file=sys.stderr,
        )
    if not done:
        raise EdgeposeError(
            f"none of the {len(image_ids)} images of {annotations} could be read from {folder}"
        )
    scored = score_results(data, results, sigmas, done)
    if not results:
        notes.append("the model found nobody: every metric is 0")
    record = {
        "schema": SCHEMA,
        "model": model.get("name"),
        "dataset": model.get("dataset"),
        "kind": model.get("kind"),
        "annotations": str(annotations),
        "images": {"evaluated": len(done), "skipped": len(missing), "folder": str(folder)},
        "people": len(results),
        **scored,
        "protocol": {
            "evaluator": f"pycocotools {_version()} COCOeval keypoints (maxDets 20)",
            "sigmas": SIGMA_SOURCES[sigma_set],
            "input_size": list(pipeline.input_hw),
            "flip": pipeline.flip,
            "boxes": None if not top_down else ("detections file" if detections else "ground truth"),
            "box_threshold": box_threshold if top_down and detections else None,
            **_decoder_settings(pipeline),
            "scale": "single scale, letterboxed" if not top_down else "one crop per box, padding 1.25",
            "score": "the pipeline's person score; no OKS-NMS, no rescoring",
        },
        "notes": notes,
    }
    return record, results


def _decoder_settings(pipeline: Any) -> dict[str, Any]:
    """The decoder's thresholds as the pipeline set them (the decoders own these names)."""
    decoder = pipeline.decoder
    if pipeline.kind != "bottom-up":
        return {"dark": getattr(decoder, "dark", None)}
    names = ("grouping", "det_threshold", "tag_threshold", "min_joints", "refine")
    return {**{name: getattr(decoder, name) for name in names}, "max_people": pipeline.max_people}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pycocotools")
    except PackageNotFoundError:
        return "unknown"
