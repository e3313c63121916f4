"""``edgepose weights``: the released checkpoints edgepose knows by name, and which are cached.

``edgepose weights`` lists the catalog; ``edgepose weights fetch NAME ...`` downloads (or checks) some
into the cache ahead of time, e.g. before going offline. Listing needs no network.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    """Add the ``weights`` sub-command."""
    p = subparsers.add_parser(
        "weights",
        help="list the released checkpoints (--weights NAME) and which are cached; fetch them ahead of time",
        description="The released LitePose, Lite-HRNet and HigherHRNet checkpoints that `--weights NAME` "
        "accepts. The first use of a name downloads it into $EDGEPOSE_HOME/weights (default "
        "~/.cache/edgepose/weights), verifies it and records its sha256; later uses are offline.",
    )
    p.add_argument("--model", help="only the checkpoints for this model (e.g. litehrnet-18)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    sub = p.add_subparsers(dest="weights_command", metavar="{fetch}")
    fetch = sub.add_parser("fetch", help="download (or verify) checkpoints into the cache now")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="catalog names (see `edgepose weights`)")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _size(row: dict) -> str:
    return f"{row['size'] / 1e6:.1f} MB" if row["size"] is not None else "-"


def run(args: argparse.Namespace) -> int:
    if args.weights_command == "fetch":
        return _fetch(args)
    return _list(args)


def _fetch(args: argparse.Namespace) -> int:
    from edgepose.hub import resolve_weights
    from edgepose.models.catalog import load_catalog

    catalog = load_catalog()
    for name in args.names:
        catalog.get(name)  # every name checked before anything is downloaded
    for name in args.names:
        resolved = resolve_weights(name, catalog=catalog, progress=not args.quiet)
        print(f"{name}: {resolved.path} (sha256 {resolved.sha256})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from edgepose.errors import EdgeposeError
    from edgepose.hub import cache_listing, uncatalogued_files, weights_dir
    from edgepose.models.catalog import load_catalog
    from edgepose.tables import Column, format_table

    catalog = load_catalog()
    rows = cache_listing(catalog)
    if args.model:
        rows = [r for r in rows if r["model"] == args.model]
        if not rows:
            models = sorted({e.model for e in catalog.entries})
            raise EdgeposeError(
                f"no released weights for {args.model!r}; models with some: {', '.join(models)}"
            )
    extra = uncatalogued_files(catalog)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        row["input"] = "x".join(str(v) for v in row["input_size"])
        row["cached_text"] = "yes" if row["cached"] else "no"
        row["size_text"] = _size(row)
    columns = [
        Column("name"),
        Column("model"),
        Column("input", "input HxW"),
        Column("host", "from"),
        Column("cached_text", "cached"),
        Column("size_text", "size", "right"),
        Column("metric", "published accuracy of this file"),
    ]
    print(format_table(rows, columns))
    cached = [r for r in rows if r["cached"]]
    total = sum(r["size"] for r in cached)
    print(
        f"\ncache: {weights_dir()} ({len(cached)} of {len(rows)} cached, {total / 1e6:.1f} MB; "
        "$EDGEPOSE_HOME moves it). Use: edgepose export MODEL --weights NAME"
    )
    if any(r["gdrive"] and not r["urls"] for r in rows):
        print("Google Drive files need `pip install 'edgepose[weights]'` (gdown), or a download by hand.")
    if extra:
        print("also in the cache, not in the catalog: " + ", ".join(p.name for p in extra))
    return 0
