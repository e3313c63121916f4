"""Tiny table formatter shared by the CLI commands: rows of dicts + column specs -> text, Markdown or CSV.

cols = [Column("name", "model"), Column("params", "params", align="right", fmt="{:,}".format)]
print(format_table(rows, cols))                    # aligned plain text
print(format_table(rows, cols, style="md"))        # GitHub pipe table
print(format_table(rows, cols, style="csv"))       # raw values, for spreadsheets
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgepose.errors import EdgeposeError

STYLES = ("text", "md", "csv")  # "markdown" is accepted for "md"


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its header, alignment, and how a value becomes text."""

    key: str
    header: str | None = None  # defaults to the key
    align: str = "left"  # "left" or "right"
    fmt: Callable[[Any], str] | None = None  # text/markdown only; CSV writes raw values

    @property
    def title(self) -> str:
        return self.key if self.header is None else self.header

    def text(self, row: Mapping[str, Any]) -> str:
        """The cell as shown in text/Markdown; a missing or None value is an empty cell."""
        value = row.get(self.key)
        if value is None:
            return ""
        return self.fmt(value) if self.fmt is not None else str(value)


def _text(cells: list[list[str]], columns: Sequence[Column]) -> str:
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if col.align == "right" else c.ljust(w) for c, w, col in zip(row, widths, columns)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _markdown(cells: list[list[str]], columns: Sequence[Column]) -> str:
    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    rule = "|" + "|".join("---:" if col.align == "right" else "---" for col in columns) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.title for c in columns])
    for row in rows:
        writer.writerow(["" if row.get(c.key) is None else row.get(c.key) for c in columns])
    return out.getvalue().rstrip("\n")


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], style: str = "text") -> str:
    """Render ``rows`` under ``columns`` as ``style`` ("text", "md" or "csv"); no trailing newline."""
    style = "md" if style == "markdown" else style
    if style not in STYLES:
        raise EdgeposeError(f"unknown table style {style!r}; choose one of: {', '.join(STYLES)}")
    for col in columns:
        if col.align not in ("left", "right"):
            raise ValueError(f"column {col.key!r}: align must be 'left' or 'right', got {col.align!r}")
    if style == "csv":
        return _csv(rows, columns)
    cells = [[c.title for c in columns]] + [[c.text(row) for c in columns] for row in rows]
    return _text(cells, columns) if style == "text" else _markdown(cells, columns)
