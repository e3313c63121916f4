"""The papers' published tables (``benchmarks/papers/<paper>.toml``) read into small typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepose import shipped
from edgepose.errors import EdgeposeError

MACS_UNITS = {"G": 1e9, "Gi": float(2**30), "M": 1e6, "Mi": float(2**20)}


@dataclass(frozen=True)
class Column:
    """A device column of a paper table and the edgepose device profile that reproduces it."""

    key: str
    label: str
    device: str
    hardware: str = ""
    runtime: str = ""


@dataclass(frozen=True)
class Row:
    """One published row: accuracy, MACs (in the paper's unit and convention) and latency per column."""

    label: str
    model: str  # registry name; "" when edgepose does not have the model
    input_size: tuple[int, int] | None
    metric: float | None
    macs: float | None
    params_m: float | None
    latency_ms: dict[str, float]
    source: str
    plot_read: bool = False
    note: str = ""


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    dataset: str
    metric: str
    baseline: str | None
    rows: tuple[Row, ...]
    # Where the table's own figures differ from the paper's defaults (e.g. Lite-HRNet's Cityscapes table:
    # GFLOPs in units of 2^30 from the paper, not the README's M FLOPs): its source, MAC unit and convention.
    source: str = ""
    macs_unit: str = "G"
    mac_convention: str = ""
    notes: tuple[str, ...] = ()  # what is published, computed or fitted in this table, for the report

    def baseline_row(self) -> Row | None:
        return next((r for r in self.rows if r.label == self.baseline), None)


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    venue: str
    source: str
    mac_convention: str
    macs_unit: str
    protocol: str
    columns: tuple[Column, ...]
    tables: tuple[Table, ...] = field(default=())

    def table(self, table_id: str | None) -> list[Table]:
        """The table ``table_id`` (all tables when None); an unknown id is an error naming the known ones."""
        if table_id is None:
            return list(self.tables)
        found = [t for t in self.tables if t.id == table_id]
        if not found:
            known = ", ".join(t.id for t in self.tables)
            raise EdgeposeError(f"{self.id} has no table {table_id!r}; known tables: {known}")
        return found


def list_papers() -> list[str]:
    """Names of the shipped paper tables (``benchmarks/papers/*.toml``)."""
    return shipped.names("papers")


def _row(raw: dict, where: str) -> Row:
    if "label" not in raw:
        raise EdgeposeError(f"{where}: every row needs a label")
    size = raw.get("input")
    return Row(
        label=raw["label"],
        model=raw.get("model", ""),
        input_size=(int(size[0]), int(size[1])) if size else None,
        metric=raw.get("metric", raw.get("map")),  # "map": the pose tables' AP, kept as the key
        macs=raw.get("macs"),
        params_m=raw.get("params_m"),
        latency_ms={k: float(v) for k, v in raw.get("latency_ms", {}).items()},
        source=raw.get("source", ""),
        plot_read=bool(raw.get("plot_read", False)),
        note=raw.get("note", ""),
    )


def load_paper(name_or_path: str) -> Paper:
    """Read ``benchmarks/papers/<name>.toml`` (or a path) and check its structure."""
    file = shipped.read("papers", name_or_path)
    data, path = file.data, file.label
    meta = data.get("paper", {})
    unit = meta.get("macs_unit", "G")
    if unit not in MACS_UNITS:
        raise EdgeposeError(f"{path}: macs_unit must be one of {', '.join(MACS_UNITS)}")
    columns = tuple(
        Column(
            key=k,
            label=v.get("label", k),
            device=v.get("device", ""),
            hardware=v.get("hardware", ""),
            runtime=v.get("runtime", ""),
        )  # fmt: skip
        for k, v in data.get("columns", {}).items()
    )
    tables = []
    for t in data.get("tables", []):
        rows = tuple(_row(r, f"{path} table {t.get('id')}") for r in t.get("rows", []))
        for row in rows:
            unknown = set(row.latency_ms) - {c.key for c in columns}
            if unknown:
                raise EdgeposeError(
                    f"{path}: row {row.label!r} has latency for unknown columns {sorted(unknown)}"
                )
        table_unit = t.get("macs_unit", unit)
        if table_unit not in MACS_UNITS:
            raise EdgeposeError(
                f"{path} table {t.get('id')}: macs_unit must be one of {', '.join(MACS_UNITS)}"
            )
        table = Table(id=t["id"], title=t.get("title", t["id"]), dataset=t.get("dataset", ""),
                      metric=t.get("metric", "mAP"), baseline=t.get("baseline"), rows=rows,
                      source=t.get("source", meta.get("source", "")), macs_unit=table_unit,
                      mac_convention=t.get("mac_convention", meta.get("mac_convention", "")),
                      notes=tuple(t.get("notes", ())))  # fmt: skip
        if table.baseline and table.baseline_row() is None:
            raise EdgeposeError(
                f"{path}: table {table.id} names baseline {table.baseline!r}, which is not a row"
            )
        tables.append(table)
    return Paper(
        id=meta.get("id", file.name), title=meta.get("title", ""), venue=meta.get("venue", ""),
        source=meta.get("source", ""), mac_convention=meta.get("mac_convention", ""), macs_unit=unit,
        protocol=" ".join(meta.get("protocol", "").split()), columns=columns, tables=tuple(tables),
    )  # fmt: skip
