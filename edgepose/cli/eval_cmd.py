"""``edgepose eval ARTIFACT_DIR|MODEL --coco ANNOTATIONS.json --images DIR``: keypoint AP on a labelled set.

An artifact folder runs on a runtime installed here; a model name runs in PyTorch with ``--weights``
(a released name or a checkpoint; none: seeded random weights). Scoring is pycocotools'
(edgepose.accuracy.coco_eval; docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import json
import os

from edgepose.device.decode_bottomup import DET_THRESHOLD, MAX_PEOPLE, TAG_THRESHOLD

METRIC_LABELS = (("AP", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("AP_M", "AP (M)"), ("AP_L", "AP (L)"),
                 ("AR", "AR"), ("AR50", "AR50"))  # fmt: skip


def register(subparsers) -> None:
    """Add the ``eval`` sub-command."""
    p = subparsers.add_parser(
        "eval",
        help="keypoint AP of an artifact or a model on a labelled COCO-format set (pycocotools)",
        description="Run an artifact folder (or a registry model in PyTorch) over the images of a COCO-format "
        "keypoint file and score the poses with pycocotools: AP, AP50, AP75, AP (M/L), AR. Bottom-up models "
        "see each whole image; top-down models see the ground-truth boxes, or those of --detections.",
    )
    p.add_argument(
        "target", metavar="ARTIFACT_DIR|MODEL", help="an artifact folder, or a model name (PyTorch)"
    )
    p.add_argument("--coco", required=True, metavar="JSON", help="COCO-format keypoint annotations")
    p.add_argument(
        "--images", required=True, metavar="DIR", help="the folder the annotations' file_names are in"
    )
    p.add_argument(
        "--weights", help="MODEL: a released name or a checkpoint file (default: seeded random weights)"
    )
    p.add_argument("--dataset", help="MODEL: keypoint set / head (default: the weights' or the model's)")
    p.add_argument("--input", metavar="HxW", help="MODEL: input size (default: the weights' or the paper's)")
    p.add_argument("--detections", metavar="JSON", help="top-down: COCO detection results to take boxes from")
    p.add_argument("--box-threshold", type=float, default=0.0, help="top-down: drop detections scoring below")
    p.add_argument("--backend", help="ARTIFACT_DIR: runtime (default: the format's first one installed here)")
    p.add_argument("--threads", type=int, help="CPU threads for the runtime")
    p.add_argument("--flip", action="store_true", help="flip test")
    p.add_argument("--det-threshold", type=float, default=DET_THRESHOLD, help=f"bottom-up ({DET_THRESHOLD})")
    p.add_argument("--tag-threshold", type=float, default=TAG_THRESHOLD, help=f"bottom-up ({TAG_THRESHOLD})")
    p.add_argument("--max-people", type=int, default=MAX_PEOPLE, help=f"people per image ({MAX_PEOPLE})")
    p.add_argument("--max-images", type=int, help="only the first N images (by id)")
    p.add_argument("--json", metavar="FILE", help="also write the result (metrics and protocol) as JSON")
    p.add_argument("--results", metavar="FILE", help="also write the poses as COCO keypoint results JSON")
    p.add_argument(
        "--format", choices=("text", "md", "csv"), default="text", help="table style (default text)"
    )
    p.set_defaults(func=run)


def _require_pose(manifest: dict) -> None:
    """Keypoint AP scores people: refuse a segmentation model in one line."""
    from edgepose.accuracy.agreement import applies
    from edgepose.errors import EdgeposeError

    model = manifest["model"]
    if not applies(manifest):
        raise EdgeposeError(
            f"edgepose eval scores keypoints (COCO keypoint AP); {model.get('name')} is a "
            f"{model.get('kind')} model"
        )


def _pipeline(args: argparse.Namespace):
    """The pipeline to evaluate and its manifest: an artifact on a runtime, or a model in PyTorch."""
    from edgepose.device.manifest import load_manifest
    from edgepose.device.pipeline import PosePipeline
    from edgepose.errors import EdgeposeError

    options = {
        "flip": args.flip,
        "det_threshold": args.det_threshold,
        "tag_threshold": args.tag_threshold,
        "max_people": args.max_people,
    }
    if os.path.isdir(args.target):
        if args.weights or args.dataset or args.input:
            raise EdgeposeError(
                "--weights, --dataset and --input are for a MODEL; an artifact carries its own"
            )
        from edgepose.accuracy.agreement import host_backend, weights_label

        manifest = load_manifest(args.target)
        _require_pose(manifest)
        backend = host_backend(args.target, manifest, args.backend)
        pipeline = PosePipeline(
            args.target, backend=backend, threads=args.threads, manifest=manifest, **options
        )
        return (
            pipeline,
            manifest,
            f"{args.target} ({manifest.get('format')} {manifest.get('precision')}), weights {weights_label(manifest)}",
        )
    if args.backend:
        raise EdgeposeError("--backend is for an artifact folder; a MODEL runs in PyTorch")
    from edgepose.accuracy.agreement import weights_label
    from edgepose.accuracy.reference import model_manifest
    from edgepose.models import parse_size
    from edgepose.torch_runtime import TorchRuntime

    size = parse_size(args.input) if args.input else None
    manifest, weights = model_manifest(args.target, args.weights, args.dataset, size)
    _require_pose(manifest)
    runtime = TorchRuntime(manifest, weights=weights, threads=args.threads)
    pipeline = PosePipeline(None, runtime=runtime, manifest=manifest, **options)
    return pipeline, manifest, f"{args.target} in PyTorch fp32, weights {weights_label(manifest)}"


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render(record: dict, style: str = "text") -> str:
    """The metrics as a one-row table (plus the crowd-index subsets), with the protocol below."""
    from edgepose.tables import Column, format_table

    row = {"what": record["what"], **record["metrics"]}
    columns = [Column("what", "model"), *(Column(k, h, align="right", fmt=_cell) for k, h in METRIC_LABELS)]
    text = format_table([row], columns, style=style) + "\n"
    crowd = record.get("crowd_index")
    if crowd:
        rows = [{"level": k, "images": v["images"], "AP": v["AP"]} for k, v in crowd.items()]
        cols = [
            Column("level", "crowd index"),
            Column("images", align="right"),
            Column("AP", align="right", fmt=_cell),
        ]
        text += format_table(rows, cols, style=style) + "\n"
    if style == "csv":
        return text
    images = record["images"]
    proto = record["protocol"]
    text += (
        f"{images['evaluated']} images ({images['skipped']} skipped), {record['people']} people found; "
        + ", ".join(f"{k} {v}" for k, v in proto.items() if v is not None)
        + "\n"
    )
    return text + "".join(f"note: {n}\n" for n in record["notes"])


def run(args: argparse.Namespace) -> int:
    from edgepose.accuracy.coco_eval import evaluate, require_pycocotools
    from edgepose.atomic import write_text

    require_pycocotools()  # the missing extra fails before any model is loaded
    pipeline, manifest, what = _pipeline(args)
    record, results = evaluate(
        pipeline,
        manifest,
        args.coco,
        args.images,
        detections=args.detections,
        box_threshold=args.box_threshold,
        max_images=args.max_images,
    )
    record = {"what": what, **record}
    print(render(record, args.format), end="")
    if args.json:
        write_text(args.json, json.dumps(record, indent=2) + "\n")
        print(f"written: {args.json}")
    if args.results:
        write_text(args.results, json.dumps(results) + "\n")
        print(f"written: {args.results}")
    return 0
