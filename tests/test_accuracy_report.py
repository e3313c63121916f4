"""The agreement AP in benchmark records: the bench's compact table and the paper report's column."""

from edgepose.bench.papers import load_paper
from edgepose.bench.records import agreement_cell, to_compact, to_csv
from edgepose.bench.report import build_table, to_markdown
from edgepose.device.bench import SCHEMA

AGREE = {"ap": 0.8771, "ap50": 0.95, "ap75": 0.9, "found": 1.0, "people": 60, "images": 4,
         "photos": "scikit-image's bundled photos: astronaut, camera, chelsea, coffee",
         "runtime": "onnxruntime 1.32.0", "weights": "random (seed 0)", "det_threshold": 0.0,
         "kpt_threshold": 0.0}  # fmt: skip


def rec(model, median, agreement=None, size=(256, 256), device="host", on_device=True):
    record = {
        "schema": SCHEMA, "date": "2026-11-22T00:00:00Z", "device": device, "on_device": on_device,
        "host": {"cpu": "Intel(R) Xeon(R) Processor"}, "model": model, "input_size": list(size), "batch": 1,
        "timed": "model", "tool": "edgepose_device.bench", "runtime": "onnxruntime", "precision": "fp32",
        "stats": {"median_ms": median}, "params": 1675552, "macs": {"true": 882892800, "paper": 1202266112},
    }  # fmt: skip
    if agreement is not None:
        record["agreement"] = agreement
    return record


def test_agreement_cell():
    assert agreement_cell(None) == "" and agreement_cell(AGREE) == "0.877"
    assert agreement_cell({**AGREE, "ap": None}) == "nobody"
    assert agreement_cell({"error": "no runtime"}) == "error"


def test_compact_table_shows_the_column_only_when_measured():
    plain = to_compact([rec("litepose-xs", 10.0)])
    assert "agree AP" not in plain
    agreed = to_compact([rec("litepose-xs", 10.0, AGREE), rec("litepose-s", 40.0, size=(448, 448))])
    header, _, first, second = agreed.splitlines()[:4]
    assert "agree AP" in header and "0.877" in first and "0.877" not in second
    assert "agreement.ap" in to_csv([rec("litepose-xs", 10.0, AGREE)]).splitlines()[0]


def test_report_puts_agreement_next_to_the_measured_latency():
    paper = load_paper("litepose")
    records = [
        rec("litepose-xs", 10.0, AGREE),
        rec("litepose-s", 40.0, {**AGREE, "ap": 0.5}, size=(448, 448)),
        rec("higherhrnet-w24", 200.0, size=(512, 512)),  # timed without --agree
    ]
    table = build_table(paper, paper.table("crowdpose")[0], records, count_macs=False)
    col = table.header.index("host (Intel Xeon) agree AP")
    assert table.header[col - 2] == "host (Intel Xeon) ms"
    cells = {row[0].rstrip(" †‡"): row[col] for row in table.rows}
    assert cells["LitePose-Auto-XS"] == "0.877" and cells["LitePose-Auto-S"] == "0.500"
    assert cells["HigherHRNet-W24"] == "–" and cells["LitePose-Auto-M"] == "–"
    text = to_markdown(table)
    assert "agree AP: COCO keypoint AP of the artifact's poses against its own PyTorch model's" in text
    assert "random weights: the poses are noise" in text and "bundled photos" in text
    plain = build_table(paper, paper.table("crowdpose")[0], records[2:], count_macs=False)
    assert not any("agree AP" in h for h in plain.header)
