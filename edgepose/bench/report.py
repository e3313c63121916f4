"""``edgepose report``: the papers' tables with edgepose's measurements next to them (Markdown, CSV, LaTeX, plot).

For each published row the table shows the paper's latency and the measured one on the same device,
MACs and params in both conventions (the paper's and true multiply-accumulates), and the latency
ratios against the table's baseline, published next to measured. Measurements on other machines
(this host, or a device profile run here rather than on the device) get their own columns, labelled
with the CPU that ran them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from edgepose.bench.papers import MACS_UNITS, Paper, Row, Table
from edgepose.bench.records import agreement_cell
from edgepose.tables import Column, format_table

NATIVE_TOOLS = ("trtexec", "benchmark_model")
DASH = "–"


@dataclass(frozen=True)
class MeasuredColumn:
    """Where a group of records was measured: a device (on it or not) and the CPU that ran it."""

    device: str
    on_device: bool
    cpu: str
    paper_key: str | None  # the paper column this reproduces (on-device, not emulated, records only)
    emulated: str | None = None  # e.g. "qemu-aarch64": the device's software, not its latency

    @property
    def label(self) -> str:
        cpu = short_cpu(self.cpu)
        if self.device == "host":
            return f"host ({cpu})"
        if self.emulated:
            return f"{self.device} emulated ({self.emulated} on {cpu})"
        if self.on_device:
            return self.device
        return f"{self.device} profile on {cpu}"


def short_cpu(name: str) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon': a CPU name short enough for a column header."""
    for noise in ("(R)", "(TM)", "(tm)", " CPU", " Processor"):
        name = name.replace(noise, "")
    return " ".join(name.split())


@dataclass
class ReportTable:
    """A rendered-format-neutral table: title, header, rows of cells and notes."""

    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _column_of(rec: dict[str, Any], paper: Paper) -> MeasuredColumn:
    device = rec.get("device") or "?"
    on_device = bool(rec.get("on_device"))
    host = rec.get("host") or {}
    emulated = host.get("emulated") or None
    real = on_device and not emulated  # an emulated device's latency is never the device's
    paper_key = next((c.key for c in paper.columns if real and c.device == device), None)
    return MeasuredColumn(device, on_device, host.get("cpu") or "?", paper_key, emulated)


def _matches(rec: dict[str, Any], row: Row) -> bool:
    if not row.model or rec.get("model") != row.model or rec.get("timed") != "model":
        return False
    if rec.get("batch", 1) != 1:
        return False
    return row.input_size is None or tuple(rec.get("input_size") or ()) == row.input_size


def pick(
    records: list[dict[str, Any]], row: Row, column: MeasuredColumn, paper: Paper
) -> dict[str, Any] | None:
    """The record for ``row`` in ``column``: a native tool's if there is one (they are the reference), newest first."""
    found = [r for r in records if _matches(r, row) and _column_of(r, paper) == column]
    if not found:
        return None
    return max(found, key=lambda r: (r.get("tool") in NATIVE_TOOLS, str(r.get("date", ""))))


def measured_columns(records: list[dict[str, Any]], paper: Paper) -> list[MeasuredColumn]:
    """The distinct places the records were measured, in first-seen order."""
    seen: dict[MeasuredColumn, None] = {}
    for rec in records:
        if rec.get("timed") == "model":
            seen.setdefault(_column_of(rec, paper))
    return list(seen)


def _latency(rec: dict[str, Any] | None) -> float | None:
    if not rec:
        return None
    stats = rec.get("stats") or {}
    return stats.get("median_ms") if stats.get("median_ms") is not None else stats.get("mean_ms")


def _ms(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(baseline: float | None, value: float | None) -> str:
    if baseline is None or value is None or value <= 0:
        return DASH
    return f"{baseline / value:.1f}×"


def _printed(value: float | None) -> str:
    """A published figure with the digits it was printed with (25.3, 5.0, 1.95)."""
    if value is None:
        return DASH
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def _num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


@cache
def _counted(model: str, size: tuple[int, int] | None) -> tuple[int | None, dict | None]:
    """Params and MACs for a model with no record yet, from the registry and edgepose.macs (if present)."""
    try:
        from edgepose.models.registry import build_model, get_spec

        spec = get_spec(model)
        net = build_model(model)
    except Exception:  # a row edgepose cannot build (not registered yet): leave the cells empty
        return None, None
    params = sum(p.numel() for p in net.parameters())
    try:
        from edgepose.macs import count_macs

        report = count_macs(net, input_size=size or spec.input_size)
        macs = {"true": report.true_macs, "paper": report.paper_macs}
    except Exception:  # the MAC counter is optional
        macs = None
    return params, macs


def _size_facts(row: Row, recs: list[dict[str, Any]], count: bool) -> tuple[int | None, dict | None]:
    for rec in recs:
        if rec and rec.get("params") is not None:
            return rec.get("params"), rec.get("macs")
    if count and row.model:
        return _counted(row.model, row.input_size)
    return None, None


def _column_note(col: MeasuredColumn, recs: list[dict[str, Any]]) -> str:
    recs = [r for r in recs if r]
    if not recs:
        return f"{col.label}: no records for these rows"
    r = max(recs, key=lambda x: str(x.get("date", "")))
    if col.device == "host":
        where = "on this machine"
    elif col.emulated:
        where = f"under emulation ({col.emulated}): the device's software stack, NOT its latency"
    elif col.on_device:
        where = "on the device"
    else:
        where = "NOT on the device: the profile's recipe and settings, run on the CPU named"
    tools = sorted({x.get("tool", "?") for x in recs})
    return (
        f"{col.label}: measured {where}; {r.get('runtime')} {r.get('runtime_version') or ''} {r.get('precision')}, "
        f"threads {r.get('threads')}, delegate {r.get('delegate') or 'none'}; median of up to {r.get('runs')} runs "
        f"after {r.get('warmup')} warm-up, model only, batch 1 ({', '.join(tools)}); {r.get('date')}"
        + (
            f"; 1-min load average {load}"
            if (load := (r.get("host") or {}).get("load_avg_1m")) is not None
            else ""
        )
    )


def _agreement_note(records: list[dict[str, Any]]) -> str:
    """What the agreement column measures, on which photos, and whether the weights were random."""
    shown = [r["agreement"] for r in records if r.get("agreement") and "ap" in r["agreement"]]
    photos = sorted({a.get("photos", "?") for a in shown})
    random = any(str(a.get("weights", "")).startswith("random") for a in shown)
    return (
        "agree AP: COCO keypoint AP of the artifact's poses against its own PyTorch model's (same weights, "
        f"same decoding) on {'; '.join(photos) or 'the bundled photos'}, run on this machine; the export's "
        "fidelity, not the model's accuracy (docs/accuracy.md)"
        + (
            "; random weights: the poses are noise and near-ties in their decoding go either way (below 1 "
            "even for an exact fp32 export), so the column says nothing about accuracy"
            if random
            else ""
        )
        + (
            "; n/a: a segmentation model (keypoint agreement is for pose models; its export's fidelity is "
            "the per-pixel agreement in its manifest's parity block)"
            if any("not_applicable" in (r.get("agreement") or {}) for r in records)
            else ""
        )
        + "."
    )


def build_table(
    paper: Paper, table: Table, records: list[dict[str, Any]], count_macs: bool = True
) -> ReportTable:
    """Published next to measured for each row and device column, plus MACs, params and ratios."""
    unit = table.macs_unit
    digits = 2 if unit.startswith("G") else 1  # computed figures: 1.95 GFLOPs, 205.2 M FLOPs
    extra = [c for c in measured_columns(records, paper) if c.paper_key is None]
    by_paper = {c.paper_key: c for c in measured_columns(records, paper) if c.paper_key}
    header = ["Model", table.metric]
    if any(r.params_m is not None for r in table.rows):
        header.append("Params M (paper)")
    header += ["Params M", f"MACs {unit} (paper)", f"MACs {unit} (paper conv.)", "MACs G (true)"]
    # Agreement AP (edgepose bench --agree) gets a column next to the latency of each place that has it.
    agreeing = {_column_of(r, paper) for r in records if r.get("timed") == "model" and r.get("agreement")}
    for c in paper.columns:  # "paper / measured" in one cell keeps the table readable
        header += [f"{c.label} ms (paper / measured)", f"{c.label} × (paper / measured)"]
        if by_paper.get(c.key) in agreeing:
            header.append(f"{c.label} agree AP")
    for col in extra:
        header += [f"{col.label} ms", f"{col.label} ×"] + (
            [f"{col.label} agree AP"] if col in agreeing else []
        )

    base = table.baseline_row()
    base_measured = {}
    if base:
        for col in [*by_paper.values(), *extra]:
            base_measured[col] = _latency(pick(records, base, col, paper))
    rows = []
    used: dict[MeasuredColumn, list[dict]] = {c: [] for c in [*by_paper.values(), *extra]}
    for row in table.rows:
        picked = {col: pick(records, row, col, paper) for col in used}
        for col, rec in picked.items():
            used[col].append(rec)
        params, macs = _size_facts(row, list(picked.values()), count_macs)
        label = row.label + (" †" if row.plot_read else "") + ("" if row.model else " ‡")
        cells = [label, _num(row.metric, 1)]
        if "Params M (paper)" in header:
            cells.append(_num(row.params_m, 1))
        cells += [
            _num(params / 1e6 if params else None),
            _printed(row.macs),
            _num(macs["paper"] / MACS_UNITS[unit], digits) if macs and macs.get("paper") else DASH,
            _num(macs["true"] / 1e9, 3) if macs and macs.get("true") else DASH,
        ]
        for c in paper.columns:
            col = by_paper.get(c.key)
            measured = _latency(picked.get(col)) if col else None
            paper_base = base.latency_ms.get(c.key) if base else None
            measured_ratio = _ratio(base_measured.get(col), measured) if col else DASH
            cells += [
                f"{_ms(row.latency_ms.get(c.key))} / {_ms(measured)}",
                f"{_ratio(paper_base, row.latency_ms.get(c.key))} / {measured_ratio}",
            ]
            if col in agreeing:
                cells.append(agreement_cell((picked.get(col) or {}).get("agreement")) or DASH)
        for col in extra:
            measured = _latency(picked[col])
            cells += [_ms(measured), _ratio(base_measured.get(col), measured)]
            if col in agreeing:
                cells.append(agreement_cell((picked[col] or {}).get("agreement")) or DASH)
        rows.append(cells)

    notes = [f"Source: {table.source}.", f"Published MACs convention: {table.mac_convention}.", *table.notes,
             "MACs G (true): multiply-accumulates of conv/deconv/linear layers, counted once (edgepose.macs).",
             f"Paper protocol: {paper.protocol}"]  # fmt: skip
    if base:
        notes.append(f"× = latency of the baseline {base.label} / latency of the row, on the same column.")
    if any(r.plot_read for r in table.rows):
        notes.append("† read off the paper's Figure 1 plot (±5 %), not printed in a table.")
    if any(not r.model for r in table.rows):
        notes.append("‡ not implemented in edgepose: published numbers only.")
    for c in paper.columns:
        notes.append(f"{c.label} (paper): {c.hardware}; runtime {c.runtime}.")
    notes += [_column_note(col, recs) for col, recs in used.items()]
    if agreeing:
        notes.append(_agreement_note(records))
    return ReportTable(f"{paper.title} ({paper.venue}): {table.title}", header, rows, notes)


def _render(t: ReportTable, style: str) -> str:
    """Markdown or CSV through the shared formatter; numbers right-aligned."""
    columns = [Column(str(i), header=h, align="right" if i else "left") for i, h in enumerate(t.header)]
    rows = [{str(i): cell for i, cell in enumerate(r)} for r in t.rows]
    return format_table(rows, columns, style=style) + "\n"


def to_markdown(t: ReportTable) -> str:
    """Title, table and the notes as a bullet list."""
    return f"### {t.title}\n\n" + _render(t, "md") + "\n" + "".join(f"- {n}\n" for n in t.notes)


def to_csv(t: ReportTable) -> str:
    return _render(t, "csv")


_LATEX = {"&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "×": r"$\times$", "–": "--", "†": r"$^\dagger$",
          "‡": r"$^\ddagger$", "±": r"$\pm$"}  # fmt: skip


def _tex(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(t: ReportTable) -> str:
    cols = "l" + "r" * (len(t.header) - 1)
    lines = [f"% {_tex(t.title)}", f"\\begin{{tabular}}{{{cols}}}", r"\toprule"]
    lines.append(" & ".join(_tex(h) for h in t.header) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(_tex(c) for c in r) + r" \\" for r in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


RENDERERS = {"md": to_markdown, "csv": to_csv, "latex": to_latex}


@dataclass(frozen=True)
class Series:
    """Points of one kind in a plot panel: published, measured on the device, or measured elsewhere."""

    label: str
    marker: str
    color: str
    points: tuple[tuple[float, float, str], ...]  # (latency ms, accuracy, row label)


def plot_panels(
    paper: Paper, tables: list[Table], records: list[dict[str, Any]]
) -> list[tuple[str, list[Series]]]:
    """What :func:`plot_latency` draws: per device column of the paper, its published points and every
    measured point of that device on the same axes (on the device; host-run and emulated in their own
    markers); then one panel per other place records were measured (e.g. this host)."""
    rows = [row for table in tables for row in table.rows if row.metric is not None]
    columns = measured_columns(records, paper)

    def measured(col: MeasuredColumn) -> tuple[tuple[float, float, str], ...]:
        found = ((pick(records, row, col, paper), row) for row in rows)
        return tuple((_latency(rec), row.metric, row.label) for rec, row in found if rec and _latency(rec))

    def kind(col: MeasuredColumn) -> tuple[str, str, str]:
        if col.paper_key:
            return f"measured on {col.device}", "^", "C3"
        if col.emulated:
            return col.label, "x", "C2"
        return f"host-run: {col.label}", "D", "C1"

    panels, placed = [], set()
    for c in paper.columns:
        published = tuple(
            (row.latency_ms[c.key], row.metric, row.label) for row in rows if c.key in row.latency_ms
        )
        series = [Series(f"published ({c.runtime or c.hardware or c.label})", "o", "C0", published)]
        for col in columns:
            if col.device == c.device:
                placed.add(col)
                series.append(Series(*kind(col), measured(col)))
        panels.append((c.label, [s for s in series if s.points]))
    for col in columns:
        if col not in placed:
            panels.append((col.label, [Series(*kind(col), measured(col))]))
    return [(title, series) for title, series in panels if series] or [("no latency", [])]


def plot_latency(paper: Paper, tables: list[Table], records: list[dict[str, Any]]) -> bytes:
    """PNG bytes of :func:`plot_panels`: accuracy vs latency, one panel per device column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = plot_panels(paper, tables, records)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, series) in zip(axes.flat, panels):
        for s in series:
            xs, ys, labels = zip(*s.points)
            filled = {"facecolors": "none", "edgecolors": s.color} if s.marker == "o" else {"color": s.color}
            ax.scatter(xs, ys, marker=s.marker, label=s.label, **filled)
            for x, y, text in s.points:
                ax.annotate(text, (x, y), fontsize=6, color=s.color)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("latency (ms, median)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel(tables[0].metric if tables else "accuracy")
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{paper.title}: published vs measured latency (accuracy as published)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
