"""``edgepose report``: the papers' tables with the measured records next to them (md, csv, LaTeX, plot)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``report`` sub-command."""
    p = subparsers.add_parser(
        "report",
        help="print a paper's table with measured latency, MACs and ratios next to the published ones",
        description="Reproduce a paper's latency table from benchmark records: published next to measured on each "
        "device, params and MACs in both conventions, and latency ratios against the table's baseline.",
    )
    p.add_argument(
        "--paper", default="litepose", help="benchmarks/papers/<name>.toml or a path (default: litepose)"
    )
    p.add_argument("--table", help="one table of the paper (e.g. crowdpose, coco; default: all)")
    p.add_argument(
        "--records", nargs="+", metavar="JSONL", help="records files (default: benchmarks/results/*.jsonl)"
    )
    p.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    p.add_argument("--raw", action="store_true", help="print the records themselves (md or csv) instead")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="also draw accuracy vs latency per device for --table (default: the first table; needs matplotlib)",
    )
    p.add_argument("--out", metavar="FILE", help="also write the printed text to FILE")
    p.add_argument("--no-count", action="store_true", help="do not count MACs for rows without records")
    p.set_defaults(func=run)


def _record_files(paths: list[str] | None) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    return sorted(Path("benchmarks/results").glob("*.jsonl"))


def run(args: argparse.Namespace) -> int:
    """Print the report; with --plot write the PNG (atomically)."""
    from edgepose.atomic import write_bytes, write_text
    from edgepose.bench import records as rec_mod
    from edgepose.bench.papers import load_paper
    from edgepose.bench.report import RENDERERS, build_table, plot_latency
    from edgepose.errors import EdgeposeError

    files = _record_files(args.records)
    records = rec_mod.latest(rec_mod.read_records(files)) if files else []
    if args.raw:
        if args.format == "latex":
            raise EdgeposeError("--raw prints md or csv")
        text = rec_mod.to_markdown(records) if args.format == "md" else rec_mod.to_csv(records)
    else:
        paper = load_paper(args.paper)
        tables = paper.table(args.table)
        render = RENDERERS[args.format]
        text = "\n".join(render(build_table(paper, t, records, count_macs=not args.no_count)) for t in tables)
        if args.plot:
            try:
                png = plot_latency(paper, tables[:1], records)  # one table: rows of two tables would mix
            except ImportError:
                raise EdgeposeError("--plot needs matplotlib: pip install 'edgepose[bench]'") from None
            write_bytes(args.plot, png)
    if not records:
        text += "\n(no benchmark records found: run `edgepose bench` first)\n"
    print(text, end="")
    if args.out:
        write_text(args.out, text)
    if args.plot and not args.raw:
        print(f"plot written to {args.plot}")
    return 0
