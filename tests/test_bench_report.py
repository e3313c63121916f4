"""Paper tables as data, and the report that puts measured records next to them."""

import csv
import io

import numpy as np
import pytest

from edgepose.bench.papers import list_papers, load_paper
from edgepose.bench.report import build_table, plot_latency, plot_panels, to_csv, to_latex, to_markdown
from edgepose.device.bench import SCHEMA
from edgepose.errors import EdgeposeError


def rec(
    model, median, device="host", on_device=True, cpu="Intel(R) Xeon(R) Processor", size=(256, 256), tool=None
):
    return {
        "schema": SCHEMA, "date": "2026-11-22T00:00:00Z", "device": device, "on_device": on_device,
        "host": {"cpu": cpu}, "model": model, "input_size": list(size), "batch": 1, "timed": "model",
        "tool": tool or "edgepose_device.bench", "runtime": "onnxruntime", "runtime_version": "1.31.1",
        "precision": "fp32", "threads": 2, "runs": 50, "warmup": 5, "stats": {"median_ms": median},
        "params": 1675552, "macs": {"true": 882892800, "paper": 1202266112},
    }  # fmt: skip


def test_litepose_paper_data_is_the_readme_table():
    paper = load_paper("litepose")
    crowd = paper.table("crowdpose")[0]
    rows = {r.label: r for r in crowd.rows}
    assert rows["LitePose-Auto-XS"].latency_ms == {"nano": 22, "mobile": 27, "pi": 109}
    assert rows["HigherHRNet-W24"].macs == 25.3 and crowd.baseline_row().label == "HigherHRNet-W24"
    assert rows["LitePose-Auto-L"].plot_read and not rows["LitePose-Auto-S"].plot_read
    assert {c.device for c in paper.columns} == {"jetson-nano", "snapdragon855", "rpi4"}
    assert "TVM" in paper.protocol
    coco = {r.label: r for r in paper.table("coco")[0].rows}
    assert coco["LitePose-Auto-M"].metric == 59.8 and coco["Lightweight OpenPose"].model == ""
    assert {"litepose", "litehrnet"} <= set(list_papers())
    hr = load_paper("litehrnet")
    assert hr.macs_unit == "Mi" and hr.columns == ()


def test_unknown_paper_and_table_are_clear_errors():
    with pytest.raises(EdgeposeError, match="did you mean 'litepose'"):
        load_paper("litepos")
    with pytest.raises(EdgeposeError, match="known tables: crowdpose, coco"):
        load_paper("litepose").table("mpii")


@pytest.fixture(scope="module")
def table():
    paper = load_paper("litepose")
    records = [
        rec("litepose-xs", 10.0),
        rec("litepose-s", 40.0, size=(448, 448)),
        rec("higherhrnet-w24", 200.0, size=(512, 512)),
        rec("litepose-xs", 99.0, size=(128, 128)),  # another input size: not the paper's row
        rec("litepose-xs", 110.0, device="rpi4", cpu="Raspberry Pi 4 Model B Rev 1.4"),
        rec("litepose-xs", 12.0, device="rpi4", on_device=False),  # rpi4 recipe run here: its own column
    ]
    return build_table(paper, paper.table("crowdpose")[0], records, count_macs=False)


def cell(t, row_label, header_start):
    col = next(i for i, h in enumerate(t.header) if h.startswith(header_start))
    row = next(r for r in t.rows if r[0].startswith(row_label))
    return row[col]


def test_measured_sits_next_to_published_with_ratios(table):
    assert cell(table, "LitePose-Auto-XS", "host (Intel Xeon) ms") == "10.0"
    assert cell(table, "LitePose-Auto-XS", "host (Intel Xeon) ×") == "20.0×"  # 200 / 10
    assert cell(table, "LitePose-Auto-S", "host (Intel Xeon) ×") == "5.0×"
    assert cell(table, "HigherHRNet-W24", "host (Intel Xeon) ×") == "1.0×"
    # On-device rpi4 record fills the paper's Pi column; the paper's own ratio is 1414 / 109.
    assert cell(table, "LitePose-Auto-XS", "Pi ms") == "109 / 110"
    assert cell(table, "LitePose-Auto-XS", "Pi ×") == "13.0× / –"
    assert cell(table, "LitePose-Auto-XS", "rpi4 profile on Intel Xeon ms") == "12.0"
    assert cell(table, "LitePose-Auto-XS", "MACs G (paper conv.)") == "1.20"
    assert cell(table, "LitePose-Auto-XS", "MACs G (true)") == "0.883"
    assert cell(table, "LitePose-Auto-L", "host (Intel Xeon) ms") == "–"
    assert any("NOT on the device" in n for n in table.notes)
    assert any(r[0] == "LitePose-Auto-L †" for r in table.rows)


def test_markdown_csv_and_latex_renderings(table):
    md = to_markdown(table)
    assert md.startswith("### Lite Pose") and "| LitePose-Auto-XS | 49.4 |" in md and "- Source:" in md
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    assert rows[0] == table.header and len(rows) == len(table.rows) + 1
    tex = to_latex(table)
    assert r"\begin{tabular}" in tex and r"$\times$" in tex and "HigherHRNet-W24" in tex


def test_plot_puts_published_and_measured_points_of_a_device_on_the_same_axes(table, monkeypatch):
    paper = load_paper("litepose")
    records = [
        rec("litepose-xs", 10.0),  # this host
        rec("litepose-xs", 150.0, device="rpi4", cpu="Raspberry Pi 4 Model B Rev 1.4"),  # on the Pi
        rec("litepose-xs", 20.0, device="rpi4", on_device=False),  # the rpi4 profile, host-run
        {
            **rec("litepose-xs", 3300.0, device="rpi4"),
            "host": {"cpu": "AMD EPYC", "emulated": "qemu-aarch64"},
        },
    ]
    panels = dict(plot_panels(paper, paper.table("crowdpose"), records))
    pi = {s.label: s for s in panels["Pi"]}
    published = next(s for label, s in pi.items() if label.startswith("published"))
    xs = [p for p in published.points if p[2] == "LitePose-Auto-XS"]
    assert xs and xs[0][1] == 49.4 and published.marker == "o"
    assert pi["measured on rpi4"].points == ((150.0, 49.4, "LitePose-Auto-XS"),)
    host_run = next(s for label, s in pi.items() if label.startswith("host-run: rpi4 profile on"))
    assert host_run.points == ((20.0, 49.4, "LitePose-Auto-XS"),) and host_run.marker != "^"
    emulated = next(s for label, s in pi.items() if "emulated (qemu-aarch64" in label)
    assert emulated.points == ((3300.0, 49.4, "LitePose-Auto-XS"),) and emulated.marker not in ("^", "o")
    assert "host (Intel Xeon)" in panels  # the host is no paper column: a panel of its own
    assert "Nano" in panels and all(s.label.startswith("published") for s in panels["Nano"])
    # The figure itself, caught as it is saved: one visible axes per panel, titled, holding those points.
    import matplotlib.figure
    import matplotlib.image

    saved = []
    real_savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(
        matplotlib.figure.Figure,
        "savefig",
        lambda fig, *a, **k: saved.append(fig) or real_savefig(fig, *a, **k),
    )
    png = plot_latency(paper, paper.table("crowdpose"), records)
    (fig,) = saved
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == list(panels)
    pi_axes = shown[list(panels).index("Pi")]
    assert pi_axes.get_xscale() == "log" and pi_axes.get_xlabel() == "latency (ms, median)"
    drawn = {c.get_label(): [tuple(p) for p in c.get_offsets()] for c in pi_axes.collections}
    assert drawn["measured on rpi4"] == [(150.0, 49.4)]
    assert drawn[emulated.label] == [(3300.0, 49.4)]
    assert sorted(drawn) == sorted(pi) and (10.0, 49.4) not in sum(drawn.values(), [])  # the host is not a Pi
    # The PNG is that figure: 5 x 4 inches per panel at 120 dpi, three panels a row.
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    rows, cols = -(-len(panels) // 3), min(3, len(panels))
    assert image.shape[:2] == (4 * 120 * rows, 5 * 120 * cols)
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 20  # drawn, not blank


def test_emulated_records_never_fill_the_device_column():
    paper = load_paper("litepose")
    emulated = {
        **rec("litepose-xs", 3300.0, device="rpi4"),
        "host": {"cpu": "AMD EPYC", "emulated": "qemu-aarch64"},
    }
    t = build_table(paper, paper.table("crowdpose")[0], [emulated], count_macs=False)
    row = next(r for r in t.rows if r[0] == "LitePose-Auto-XS")
    pi = t.header.index("Pi ms (paper / measured)")
    assert row[pi].endswith("/ –")  # the Pi column stays empty
    extra = t.header.index("rpi4 emulated (qemu-aarch64 on AMD EPYC) ms")
    assert row[extra] == "3300"
    assert any("NOT its latency" in n for n in t.notes)


def test_report_command(tmp_path, capsys):
    from edgepose.bench.records import RecordWriter
    from edgepose.cli import main

    path = tmp_path / "host.jsonl"
    RecordWriter(str(path)).write(rec("litepose-m", 80.0, size=(448, 448)))
    png = tmp_path / "plots" / "lat.png"
    argv = [
        "report",
        "--records",
        str(path),
        "--table",
        "coco",
        "--no-count",
        "--format",
        "csv",
        "--plot",
        str(png),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Model,mAP val,") and "LitePose-Auto-M,59.8" in out and ",80.0," in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "--records", str(path), "--raw"]) == 0
    assert "| host | True |" in capsys.readouterr().out
    assert main(["report", "--paper", "nope", "--records", str(path)]) == 2
    assert "unknown paper 'nope'" in capsys.readouterr().err


def test_cityscapes_table_has_measured_latency_sources_and_the_fit():
    paper = load_paper("litehrnet")
    records = [
        {**rec("litehrnet-18-seg", 900.0, size=(512, 1024)), "agreement": {"not_applicable": "pose only"}},
        rec("litehrnet-30-seg", 1350.0, size=(512, 1024)),
        rec("litehrnet-18-seg", 50.0, size=(128, 256)),  # another input size: not the paper's row
    ]
    t = build_table(paper, paper.table("cityscapes")[0], records, count_macs=False)
    assert t.header[:2] == ["Model", "mIoU"]
    assert cell(t, "Lite-HRNet-18", "mIoU") == "72.8" and cell(t, "Lite-HRNet-30", "mIoU") == "75.3"
    assert cell(t, "Lite-HRNet-18", "host (Intel Xeon) ms") == "900"
    assert cell(t, "Lite-HRNet-30", "host (Intel Xeon) ×") == "0.7×"  # 900 / 1350, -18 the baseline
    assert cell(t, "Lite-HRNet-18", "MACs Gi (paper)") == "1.95"
    notes = "\n".join(t.notes)
    assert "Source: Lite-HRNet paper" in notes and "FITTED" in notes and "0.9097" in notes
    # Keypoint agreement is pose-only: a segmentation record's n/a is said in the notes, not a failure.
    assert cell(t, "Lite-HRNet-18", "host (Intel Xeon) agree AP") == "n/a"
    assert "n/a: a segmentation model" in notes
