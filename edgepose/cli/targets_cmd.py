"""``edgepose targets``: every export target with its format, model file, runtimes, precisions and devices."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers) -> None:
    """Add the ``targets`` sub-command."""
    p = subparsers.add_parser(
        "targets",
        help="list the export targets: format, model file, runtimes, precisions and the devices using each",
        description="One row per export target (export/<name>.toml): its format and model file, the runtimes "
        "that run it (the first is the default), the precisions it allows (* the default) and the device "
        "profiles (devices/<name>.toml) that refer to it.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument(
        "--format", choices=("text", "md", "csv"), default="text", help="table style (default: text)"
    )
    p.set_defaults(func=run)


def target_rows() -> list[dict[str, Any]]:
    """One JSON-ready dict per shipped recipe, from the format table and the profiles."""
    from edgepose.bench.profiles import list_profiles, load_profile
    from edgepose.device.formats import get_format
    from edgepose.export.recipe import known_recipes, load_recipe

    profiles = [load_profile(name) for name in list_profiles()]
    rows = []
    for name in known_recipes():
        recipe = load_recipe(name)
        fmt = get_format(recipe.format)
        rows.append(
            {
                "target": recipe.name,
                "format": fmt.name,
                "model_file": fmt.model_file,
                "runtimes": [recipe.runtime.backend]
                + [b for b in fmt.backends if b != recipe.runtime.backend],
                "precisions": list(recipe.precisions),
                "default_precision": recipe.precision,
                "devices": [p.name for p in profiles if recipe.name in (r.name for r in p.runtimes.values())],
                "description": recipe.description,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from edgepose.tables import Column, format_table

    rows = target_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [
        {
            **row,
            "runtimes": ", ".join(row["runtimes"]),
            "precisions": ", ".join(
                p + ("*" if p == row["default_precision"] else "") for p in row["precisions"]
            ),
            "devices": ", ".join(row["devices"]) or "-",
        }
        for row in rows
    ]
    columns = [Column(k) for k in ("target", "format", "model_file", "runtimes", "precisions", "devices")]
    print(format_table(shown, columns + [Column("description")], style=args.format))
    if args.format == "text":
        print("\n* default precision. Export one: edgepose export MODEL --target TARGET [--precision P]")
    return 0
