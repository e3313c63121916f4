"""Agreement: does an exported artifact still find the poses its own PyTorch model finds?

Both run through the same :class:`~edgepose.device.pipeline.PosePipeline` (same pre-processing,
decoding and thresholds): the artifact on a runtime installed here, the reference on
:class:`~edgepose.torch_runtime.TorchRuntime` with the weights the manifest names. The reference's
poses become the ground truth (:func:`edgepose.accuracy.ap.pose_annotation`) and the artifact's poses
are scored against them with COCO's keypoint AP (:mod:`edgepose.accuracy.ap`): AP, AP50, AP75 and the
share of reference people found (recall at OKS 0.5), per image and over all images.

This measures the export's fidelity, not the model's accuracy (docs/accuracy.md): a perfect export
scores 1.0 whatever the weights. Top-down models see the same boxes in both (the whole image, or the
boxes given). Random-weight networks find nobody at the decoder's default detection threshold, so for
them the threshold defaults to 0 and the record says so: their poses are noise, and agreement then
only says how faithfully the export carries the network's outputs through decoding. At threshold 0
every local maximum is a peak, and a random network's tags are all alike, so every peak competes for
every person; the random-weight protocol therefore keeps the 30 strongest peaks per joint (as the
official parser does), not the crowd grouping's 500: 500 took 25 s of assignment per photo on
LitePose-S, 30 takes milliseconds.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.accuracy.ap import GroundTruth, Scores, average_precision, match_image, pose_annotation
from edgepose.accuracy.oks import SIGMA_SOURCES, sigmas_for
from edgepose.device.decode_bottomup import DET_THRESHOLD, GROUPING, MAX_PEOPLE, TAG_THRESHOLD
from edgepose.device.formats import get_backend, get_format
from edgepose.device.kinds import POSE_KINDS
from edgepose.device.manifest import load_manifest
from edgepose.errors import EdgeposeError

SCHEMA = "edgepose.agreement/1"
# Keypoint AP needs people: a segmentation export's fidelity is its parity block's per-pixel agreement.
NOT_APPLICABLE = "keypoint agreement is for pose models; a segmentation export's is its pixel agreement"
RANDOM_DET_THRESHOLD = 0.0  # random weights: keep the decoder's top candidates (nothing passes 0.1)
RANDOM_PEAKS_PER_JOINT = MAX_PEOPLE  # ... and only the strongest 30 of each joint (module docstring)


@dataclass(frozen=True)
class Protocol:
    """How both models are decoded and compared; recorded with every result.

    ``det_threshold`` None: the decoder's default (0.1), or ``RANDOM_DET_THRESHOLD`` for random weights.
    ``kpt_threshold``: a reference joint counts when its score is above this (0: every joint it places).
    ``max_people``: people per image on both sides, best first (COCO's AP scores 20).
    ``peaks_per_joint`` None: the decoder's default, or ``RANDOM_PEAKS_PER_JOINT`` for random weights.
    """

    det_threshold: float | None = None
    tag_threshold: float = TAG_THRESHOLD
    kpt_threshold: float = 0.0
    flip: bool = False
    max_people: int = MAX_PEOPLE
    grouping: str = GROUPING
    peaks_per_joint: int | None = None

    def resolved(self, manifest: dict[str, Any]) -> Protocol:
        """The protocol with the detection threshold chosen for this artifact's weights."""
        random = weights_kind(manifest) == "random"
        return replace(
            self,
            det_threshold=self.det_threshold
            if self.det_threshold is not None
            else (RANDOM_DET_THRESHOLD if random else DET_THRESHOLD),
            peaks_per_joint=self.peaks_per_joint
            if self.peaks_per_joint is not None
            else (RANDOM_PEAKS_PER_JOINT if random else None),
        )

    def pipeline_options(self) -> dict[str, Any]:
        return {
            "flip": self.flip,
            "det_threshold": self.det_threshold,
            "tag_threshold": self.tag_threshold,
            "max_people": self.max_people,
            "grouping": self.grouping,
            "peaks_per_joint": self.peaks_per_joint,
        }


def applies(manifest: dict[str, Any]) -> bool:
    """Whether agreement AP means anything for this artifact's model (pose models only)."""
    return manifest["model"].get("kind") in POSE_KINDS


def not_applicable() -> dict[str, Any]:
    """What a manifest or a benchmark record carries instead of agreement for a segmentation model."""
    return {"not_applicable": NOT_APPLICABLE}


def weights_kind(manifest: dict[str, Any]) -> str:
    """'random', 'catalog', 'file' (or 'unknown') from the manifest's ``model.weights``."""
    recorded = manifest["model"].get("weights") or {}
    return str(recorded.get("kind") or "unknown")


def weights_label(manifest: dict[str, Any]) -> str:
    """The weights in a few words: 'random (seed 0)', a released name, or a file and its sha256 prefix."""
    recorded = manifest["model"].get("weights") or {}
    kind = recorded.get("kind")
    if kind == "random":
        return f"random (seed {recorded.get('seed', 0)})"
    if kind == "catalog":
        return str(recorded.get("name"))
    if kind == "file":
        return f"{recorded.get('file')} (sha256 {str(recorded.get('sha256'))[:12]})"
    return "unknown"


def host_backend(folder: str | os.PathLike, manifest: dict[str, Any], wanted: str | None = None) -> str:
    """The backend that runs the artifact here: ``wanted``, else the format's first one installed here
    whose model file is in the folder (a TensorRT folder without a built engine runs in onnxruntime)."""
    if wanted:
        return get_backend(wanted).name
    for name in get_format(manifest.get("format")).backends:
        backend = get_backend(name)
        present = (Path(folder) / backend.model_file).is_file()
        if present and any(importlib.util.find_spec(p) is not None for p in backend.packages):
            return name
    raise EdgeposeError(
        f"no runtime installed here runs this {manifest.get('format')} artifact: install edgepose's "
        "'device' extra (onnxruntime) or 'tflite' extra (ai-edge-litert)"
    )


def score_image(
    reference: list[dict], candidate: list[dict], sigmas: np.ndarray, protocol: Protocol
) -> tuple[Any, Scores]:
    """Match one image's candidate people against the reference's; the match and its own scores."""
    joints = len(sigmas)
    gt = GroundTruth.from_annotations(
        [pose_annotation(p["keypoints"], protocol.kpt_threshold) for p in reference], joints
    )
    keypoints = np.array([p["keypoints"] for p in candidate], np.float64).reshape(-1, joints, 3)
    scores = np.array([p["score"] for p in candidate], np.float64)
    match = match_image(gt, keypoints, scores, sigmas, max_dets=protocol.max_people)
    return match, average_precision([match])


def measure(
    folder: str | os.PathLike,
    photos: Iterable[tuple[str, np.ndarray]],
    *,
    photos_label: str,
    manifest: dict[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    backend: str | None = None,
    threads: int | None = None,
    boxes: Any = None,
    protocol: Protocol = Protocol(),
) -> dict[str, Any]:
    """Run the artifact in ``folder`` and its PyTorch model on ``photos``; the agreement record.

    ``boxes``: a :class:`~edgepose.device.sources.BoxFile` (top-down models only). ``weights``: the
    checkpoint file the manifest names, where it is not at hand under the recorded name.
    """
    import torch

    previous = torch.get_num_threads()
    try:
        return _measure(folder, photos, photos_label, manifest, weights, backend, threads, boxes, protocol)
    finally:
        torch.set_num_threads(previous)  # the reference sets PyTorch's (process-wide) thread count


def _measure(folder, photos, photos_label, manifest, weights, backend, threads, boxes, protocol):
    from edgepose.device.pipeline import PosePipeline
    from edgepose.torch_runtime import TorchRuntime

    folder = str(folder)
    manifest = manifest if manifest is not None else load_manifest(folder)
    model = manifest["model"]
    if not applies(manifest):
        raise EdgeposeError(f"{model.get('name')} is a {model.get('kind')} model: {NOT_APPLICABLE}")
    if boxes is not None and model.get("kind") != "top-down":
        raise EdgeposeError(f"--boxes is for top-down models; {model.get('name')} is bottom-up")
    protocol = protocol.resolved(manifest)
    sigma_set, sigmas = sigmas_for(model.get("dataset"), int(model["num_joints"]))
    backend = host_backend(folder, manifest, backend)
    options = protocol.pipeline_options()
    artifact = PosePipeline(folder, backend=backend, threads=threads, manifest=manifest, **options)
    # One PyTorch thread unless asked: its OpenMP threads slow down 10x and more when other processes
    # share the cores (HigherHRNet-W24, 4 photos, a loaded 2-core host: 130 s on 2 threads, 8 s on 1).
    reference_runtime = TorchRuntime(manifest, weights=weights, threads=threads or 1)
    reference = PosePipeline(folder, runtime=reference_runtime, manifest=manifest, **options)

    matches, per_image = [], []
    for index, (name, frame) in enumerate(photos):
        frame_boxes = boxes.for_frame(index, name) if boxes is not None else None
        with warnings.catch_warnings():
            # The peak cap is part of the protocol (recorded), not news: random weights reach it always.
            warnings.filterwarnings(
                "ignore", message="more than .* peaks of one joint", category=RuntimeWarning
            )
            ref_people = reference(frame, frame_boxes)["people"]
            art_people = artifact(frame, frame_boxes)["people"]
        match, scores = score_image(ref_people, art_people, sigmas, protocol)
        matches.append(match)
        per_image.append({"image": name, **scores.as_dict()})
    if not per_image:
        raise EdgeposeError("no readable images to compare on")
    overall = average_precision(matches)
    notes = []
    if overall.people == 0:
        notes.append(
            "the reference finds nobody in these images at this protocol: agreement is undefined "
            "(lower --det-threshold, or use photos with people)"
        )
    if weights_kind(manifest) == "random":
        notes.append("random weights: the poses are noise; this measures the export's fidelity only")
    return {
        "schema": SCHEMA,
        "artifact": folder,
        "model": model.get("name"),
        "kind": model.get("kind"),
        "dataset": model.get("dataset"),
        "format": manifest.get("format"),
        "precision": manifest.get("precision"),
        "runtime": artifact.runtime.describe(),
        "reference": f"{reference_runtime.describe()}, fp32",
        "weights": weights_label(manifest),
        "photos": photos_label,
        "protocol": {
            **asdict(protocol),
            "sigmas": SIGMA_SOURCES[sigma_set],
            "boxes": "the boxes file given"
            if boxes is not None
            else ("the whole image" if model.get("kind") == "top-down" else None),
            "metric": "COCO keypoint AP (OKS 0.50:0.95, max_people detections), reference poses as ground truth",
        },
        "overall": {**overall.as_dict(), "images": len(per_image)},
        "per_image": per_image,
        "notes": notes,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The few fields a benchmark record or a manifest's parity block carries."""
    overall = result["overall"]
    return {
        "ap": overall["ap"],
        "ap50": overall["ap50"],
        "ap75": overall["ap75"],
        "found": overall["found"],
        "people": overall["people"],
        "images": overall["images"],
        "photos": result["photos"],
        "runtime": result["runtime"],
        "weights": result["weights"],
        "det_threshold": result["protocol"]["det_threshold"],
        "kpt_threshold": result["protocol"]["kpt_threshold"],
    }


def on_bundled_photos(folder: str | os.PathLike) -> dict[str, Any]:
    """``edgepose bench --agree``: the agreement summary of an artifact on the bundled photos, or
    ``{"error"}`` when it cannot be measured here (the timing goes on either way)."""
    from edgepose.accuracy.images import BUNDLED_LABEL, bundled_photos

    if not applies(load_manifest(str(folder))):
        return not_applicable()
    try:
        return summary(measure(folder, bundled_photos(), photos_label=BUNDLED_LABEL))
    except EdgeposeError as exc:
        return {"error": str(exc)}


def describe(agreement: dict[str, Any]) -> str:
    """A summary (or ``{"skipped"}`` / ``{"error"}`` / ``{"not_applicable"}``) in one line, for the
    export and bench output."""
    if "not_applicable" in agreement:
        return f"not applicable: {agreement['not_applicable']}"
    if "ap" not in agreement:
        return f"not measured: {agreement.get('skipped') or agreement.get('error')}"
    if agreement["ap"] is None:
        return f"undefined: the reference finds nobody ({agreement['photos']})"
    text = (
        f"AP {agreement['ap']:.3f} (AP50 {agreement['ap50']:.3f}, {agreement['found']:.0%} of "
        f"{agreement['people']} reference people found; {agreement['photos']})"
    )
    if str(agreement.get("weights", "")).startswith("random"):
        text += "; random weights: the export's fidelity only"
    return text
