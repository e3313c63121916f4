"""``edgepose macs MODEL``: params, true MACs and the paper-convention figure of one model, optionally per layer."""

from __future__ import annotations

import argparse
import json
from typing import Any

# Named conventions are edgepose.macs.CONVENTIONS, spelled out so that parsing the CLI imports no torch.
SHOW = ("true", "paper", "both", "ptflops-0.6", "torchstat", "torchstat-seg-fit")


def register(subparsers) -> None:
    """Add the ``macs`` sub-command."""
    p = subparsers.add_parser(
        "macs",
        help="count one model's params and MACs (true and in the paper's convention)",
        description="Count a registered model at a batch-1 input, on the meta device. 'true' = executed "
        "conv/deconv/linear multiply-adds; 'paper' = the paper's own convention (LitePose: ptflops<=0.7.4 "
        "rules; Lite-HRNet: torchstat rules, /2^20; Lite-HRNet segmentation: torchstat rules times a fitted "
        "factor, docs/segmentation.md). Name a convention (ptflops-0.6, torchstat) to count any model the "
        "other paper's way.",
    )
    p.add_argument("model", help="registered model name (see `edgepose models`)")
    p.add_argument(
        "--input", metavar="HxW", help="input size, e.g. 448 or 256x192 (default: the paper's size)"
    )
    p.add_argument(
        "--dataset",
        help="head / label set: crowdpose, coco, mpii or cityscapes (default: the model's first)",
    )
    p.add_argument(
        "--convention",
        choices=SHOW,
        default="both",
        help="which figures to show (default: both true and paper)",
    )
    p.add_argument("--per-layer", action="store_true", help="also list every layer's share")
    p.add_argument("--format", choices=("text", "md", "csv"), default="text", help="per-layer table style")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _summary(r, show_true: bool, show_paper: bool) -> list[str]:
    lines = [
        f"{r.model} ({r.dataset}) at {r.input_size[0]}x{r.input_size[1]}, batch 1",
        f"params     {r.params:,}",
    ]
    if show_true:
        lines.append(
            f"true MACs  {r.true_macs / 1e9:.3f} G ({r.true_macs:,} executed conv/deconv/linear multiply-adds)"
        )
    if show_paper:
        lines.append(f"paper      {r.paper_display} (raw count {r.paper_macs:,})")
        lines.extend(_paper_context(r))
    if show_true and r.uncounted:
        ops = ", ".join(f"{op} x{calls}" for op, calls in r.uncounted.items())
        lines.append(f"not in true MACs (op calls): {ops}")
    return lines


def _paper_context(r) -> list[str]:
    """The printed figure beside the count, and for a fitted convention the rules' own count and the fit."""
    from edgepose.macs import get_convention

    conv = get_convention(r.paper_convention)
    lines = []
    if r.published_value is not None:
        figure = f"{r.published_value:.{conv.decimals}f} {conv.units(r.paper_macs)}"
        lines.append(f"published  {figure} ({r.published_source})")
    if conv.fitted:
        lines.append(
            f"unfitted   {conv.display(r.paper_rules_macs, with_factor=False)} (raw count {r.paper_rules_macs:,})"
        )
        lines.append(f"fitted     x{conv.factor}: {conv.fit_note}")
    return lines


def _layer_table(r, show_true: bool, show_paper: bool, style: str) -> str:
    from edgepose.tables import Column, format_table

    rows: list[dict[str, Any]] = [
        {"name": x.name, "type": x.type, "calls": x.calls, "true": x.true_macs, "paper": x.paper_macs}
        for x in r.layers
    ]
    rows.append({"name": "total", "true": r.true_macs, "paper": r.paper_macs})
    number = "{:,}".format
    columns = [Column("name", "layer"), Column("type"), Column("calls", align="right")]
    if show_true:
        columns.append(Column("true", "true MACs", "right", number))
    if show_paper:
        columns.append(Column("paper", f"paper ({r.paper_convention})", "right", number))
    return format_table(rows, columns, style)


def run(args: argparse.Namespace) -> int:
    """Count and print one model."""
    from edgepose.macs import count_registered
    from edgepose.models import parse_size

    size = parse_size(args.input) if args.input else None
    named = args.convention not in ("true", "paper", "both")
    r = count_registered(args.model, args.dataset, size, args.convention if named else None)
    if args.json:
        d = r.as_dict()
        if not args.per_layer:
            d.pop("layers")
        print(json.dumps(d, indent=2))
        return 0
    show_true = args.convention != "paper"
    show_paper = args.convention != "true"
    if args.per_layer:
        print(_layer_table(r, show_true, show_paper, args.format))
        if args.format == "csv":
            return 0
        print()
    print("\n".join(_summary(r, show_true, show_paper)))
    return 0
