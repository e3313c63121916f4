"""``edgepose models``: every registered variant with exact params, true MACs and the paper's own MAC figure."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers) -> None:
    """Add the ``models`` sub-command."""
    p = subparsers.add_parser(
        "models",
        help="list the networks: params, true MACs and the paper's MAC figure at each published input size",
        description="One row per model x dataset x published input size, counted on the meta device "
        "(no weights, no compute). 'true MACs' are executed conv/deconv/linear multiply-adds; 'paper' is the "
        "figure in the paper's own convention (LitePose: ptflops<=0.7.4 rules; Lite-HRNet: torchstat, /2^20; "
        "Lite-HRNet segmentation: torchstat times a fitted factor), with the printed figure beside it where "
        "edgepose records one.",
    )
    p.add_argument("--family", help="only this family (litepose, litehrnet, higherhrnet, efficienthrnet)")
    p.add_argument(
        "--format", choices=("text", "md", "csv"), default="text", help="table style (default: text)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def model_rows(family: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per registered model x dataset x published input size."""
    from edgepose.errors import EdgeposeError
    from edgepose.macs import count_registered, published_sizes
    from edgepose.models import head_size, list_models

    specs = list_models(family)
    if not specs:
        families = sorted({s.family for s in list_models()})
        raise EdgeposeError(f"no model family {family!r}; known families: {', '.join(families)}")
    rows = []
    for spec in specs:
        for dataset in spec.datasets:
            for size in published_sizes(spec, dataset):
                r = count_registered(spec.name, dataset, size)
                outputs = [
                    {"name": o.name, "role": o.role, "stride": o.stride, "shape": list(shape)}
                    for o, shape in zip(spec.outputs, r.output_shapes)
                ]
                rows.append(
                    {
                        "name": spec.name,
                        "family": spec.family,
                        "kind": spec.kind,
                        "paper": spec.paper,
                        "dataset": dataset,
                        spec.head_option: head_size(spec, dataset),  # num_joints or num_classes
                        "input_size": list(size),
                        "params": r.params,
                        "true_macs": r.true_macs,
                        "paper_macs": r.paper_macs,
                        "paper_rules_macs": r.paper_rules_macs,  # without a fitted factor, if any
                        "paper_value": r.paper_value,
                        "paper_unit": r.paper_unit,
                        "paper_convention": r.paper_convention,
                        "paper_display": r.paper_display,
                        "published_value": r.published_value,
                        "published_source": r.published_source,
                        "outputs": outputs,
                    }
                )
    return rows


def _paper_figure(row: dict[str, Any]) -> str:
    """'1.202 G MACs' / '205.23 M FLOPs': the figure without the convention note, and the printed one
    beside it where edgepose records it ('1.95 G FLOPs (paper: 1.95)')."""
    figure = row["paper_display"].split(" (")[0]
    if row["published_value"] is None:
        return figure
    return f"{figure} (paper: {row['published_value']:g})"


def _dataset_cell(row: dict[str, Any]) -> str:
    """'coco (17)' for a pose head, 'cityscapes (19 classes)' for a segmentation head."""
    if "num_classes" in row:
        return f"{row['dataset']} ({row['num_classes']} classes)"
    return f"{row['dataset']} ({row['num_joints']})"


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON) of all registered models."""
    from edgepose.macs import CONVENTIONS
    from edgepose.tables import Column, format_table

    rows = model_rows(args.family)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        row["dataset_joints"] = _dataset_cell(row)
        row["input"] = "x".join(str(v) for v in row["input_size"])
        row["true_gmacs"] = row["true_macs"] / 1e9
        row["paper_figure"] = _paper_figure(row)
        row["output_shapes"] = ", ".join(
            f"{o['name']} {'x'.join(str(v) for v in o['shape'])}" for o in row["outputs"]
        )
    csv = args.format == "csv"
    columns = [
        Column("name", "model"),
        Column("family"),
        Column("kind"),
        Column("dataset" if csv else "dataset_joints", "dataset" if csv else "dataset (joints/classes)"),
        *([Column("num_joints", "joints"), Column("num_classes", "classes")] if csv else []),
        Column("input", "input HxW"),
        Column("params", "params", "right", "{:,}".format),
        Column(
            "true_macs" if csv else "true_gmacs",
            "true MACs" if csv else "true MACs (G)",
            "right",
            "{:.3f}".format,
        ),
        Column(
            "paper_macs" if csv else "paper_figure", "paper MACs (raw)" if csv else "paper figure", "right"
        ),
        *([Column("published_value", "paper printed")] if csv else []),
        Column("paper_convention", "convention"),
        Column("output_shapes", "outputs (batch 1)"),
    ]
    print(format_table(rows, columns, args.format))
    if not csv:
        used = dict.fromkeys(row["paper_convention"] for row in rows)
        notes = [f"{name} = {CONVENTIONS[name].note}" for name in used]
        print(
            "\ntrue MACs: executed conv/deconv/linear multiply-adds (1 MAC each). paper figure: "
            + "; ".join(notes)
        )
        for name in (n for n in used if CONVENTIONS[n].fitted):
            print(f"fitted: {name} carries x{CONVENTIONS[name].factor}, {CONVENTIONS[name].fit_note}")
    return 0
