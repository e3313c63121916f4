"""``edgepose agree ARTIFACT_DIR``: does the exported model still find the poses its PyTorch model finds?

Runs the artifact and the PyTorch model it was exported from (the same weights, from the manifest)
through the same pipeline on a folder of images, and scores the artifact's poses against the
reference's with COCO's keypoint AP (edgepose.accuracy.agreement; docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import json

from edgepose.device.decode_bottomup import MAX_PEOPLE, TAG_THRESHOLD


def register(subparsers) -> None:
    """Add the ``agree`` sub-command."""
    p = subparsers.add_parser(
        "agree",
        help="score an artifact's poses against its own PyTorch model's (agreement AP, no labels needed)",
        description="Run an exported artifact and the PyTorch model it came from (same weights, from the "
        "manifest) on every image of a folder, decode both with the same pipeline, and score the artifact's "
        "poses against the reference's with COCO keypoint OKS: AP, AP50, AP75 and the share of reference "
        "people found, per image and overall. This measures the export's fidelity, not the model's accuracy.",
    )
    p.add_argument("artifact_dir", metavar="ARTIFACT_DIR", help="folder written by `edgepose export`")
    p.add_argument(
        "--images",
        metavar="DIR",
        help="a folder of images, or one image (default: scikit-image's astronaut, camera, chelsea, coffee)",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="the checkpoint the manifest names, where it is not at hand (checked against its sha256)",
    )
    p.add_argument(
        "--boxes", metavar="JSON", help="top-down: person boxes for both (default: the whole image)"
    )
    p.add_argument(
        "--backend", help="runtime for the artifact (default: the format's first one installed here)"
    )
    p.add_argument("--threads", type=int, help="CPU threads for both runtimes")
    p.add_argument(
        "--det-threshold",
        type=float,
        help="bottom-up peak threshold for both (default: the decoder's 0.1; 0 for random weights)",
    )
    p.add_argument("--tag-threshold", type=float, default=TAG_THRESHOLD, help=f"bottom-up ({TAG_THRESHOLD})")
    p.add_argument(
        "--kpt-threshold",
        type=float,
        default=0.0,
        help="a reference joint counts when its score is above this (default 0: every joint it places)",
    )
    p.add_argument("--max-people", type=int, default=MAX_PEOPLE, help=f"people per image ({MAX_PEOPLE})")
    p.add_argument("--flip", action="store_true", help="flip test, in both")
    p.add_argument("--json", metavar="FILE", help="also write the full result (per image, protocol) as JSON")
    p.add_argument(
        "--format", choices=("text", "md", "csv"), default="text", help="table style (default text)"
    )
    p.set_defaults(func=run)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render(result: dict, style: str = "text") -> str:
    """The per-image table, the overall row, and what was compared under which protocol."""
    from edgepose.tables import Column, format_table

    rows = [{**r, "name": r["image"]} for r in result["per_image"]]
    rows.append({**result["overall"], "name": f"all ({result['overall']['images']} images)"})
    columns = [
        Column("name", "image"),
        Column("people", "reference people", align="right"),
        Column("detections", "artifact people", align="right"),
        *(
            Column(k, h, align="right", fmt=_cell)
            for k, h in (("ap", "AP"), ("ap50", "AP50"), ("ap75", "AP75"))
        ),
        Column("found", "found", align="right", fmt=_cell),
    ]
    table = format_table(rows, columns, style=style)
    if style == "csv":
        return table + "\n"
    proto = result["protocol"]
    lines = [
        f"{result['model']} {result['format']} {result['precision']} on {result['runtime']} vs "
        f"{result['reference']}, weights {result['weights']}",
        table,
        f"agreement AP {_cell(result['overall']['ap'])}: COCO keypoint AP of the artifact's poses with the "
        f"reference's as ground truth ({proto['sigmas']}); found = share of reference people matched at OKS 0.5",
        "protocol: "
        + ", ".join(f"{k} {v}" for k, v in proto.items() if k not in ("sigmas", "metric") and v is not None),
        *(f"note: {n}" for n in result["notes"]),
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from edgepose.accuracy.agreement import Protocol, measure
    from edgepose.accuracy.images import BUNDLED_LABEL, bundled_photos, image_paths, read_images
    from edgepose.atomic import write_text
    from edgepose.device.sources import BoxFile

    if args.images:
        paths = image_paths(args.images)  # checked before any model is loaded
        photos, label = read_images(paths), f"{args.images} ({len(paths)} files)"
    else:
        photos, label = bundled_photos(), BUNDLED_LABEL
    protocol = Protocol(
        det_threshold=args.det_threshold,
        tag_threshold=args.tag_threshold,
        kpt_threshold=args.kpt_threshold,
        flip=args.flip,
        max_people=args.max_people,
    )
    result = measure(
        args.artifact_dir,
        photos,
        photos_label=label,
        weights=args.weights,
        backend=args.backend,
        threads=args.threads,
        boxes=BoxFile(args.boxes) if args.boxes else None,
        protocol=protocol,
    )
    print(render(result, args.format), end="")
    if args.json:
        write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"written: {args.json}")
    return 0
