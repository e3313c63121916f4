"""Benchmark records: reading back (torn lines skipped), newest per measurement, CSV and Markdown views."""

import csv
import io
import json

import pytest

from edgepose.bench.records import COLUMNS, RecordWriter, latest, read_records, to_csv, to_markdown
from edgepose.device.bench import SCHEMA
from edgepose.errors import EdgeposeError


def rec(model="litepose-xs", date="2026-01-01T00:00:00Z", median=10.0, timed="model", device="host"):
    return {
        "schema": SCHEMA, "date": date, "device": device, "on_device": True, "host": {"cpu": "Test CPU"},
        "model": model, "dataset": "crowdpose", "input_size": [256, 256], "format": "onnx", "precision": "fp32",
        "timed": timed, "tool": "edgepose_device.bench", "runs_done": 10, "warmup": 2, "threads": 2,
        "stats": {"median_ms": median, "mean_ms": median + 1, "p90_ms": None, "min_ms": 1.0, "max_ms": 99.0,
                  "std_ms": 0.5},
        "macs": {"true": 882892800, "paper": 1202266112}, "params": 1675552,
    }  # fmt: skip


def test_interrupted_file_keeps_every_complete_record(tmp_path):
    path = tmp_path / "r.jsonl"
    writer = RecordWriter(str(path))
    writer.write(rec(median=1.0))
    writer.write(rec(median=2.0, timed="pipeline.total"))
    with open(path, "a") as fh:
        fh.write('{"schema": "edgepose.bench/1", "mod')  # killed mid-write
    got = read_records([path])
    assert [r["stats"]["median_ms"] for r in got] == [1.0, 2.0]


def test_corrupt_line_in_the_middle_is_skipped_with_its_line_number(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec(median=1.0)) + "\nnot json\n[1, 2]\n" + json.dumps(rec(median=2.0)) + "\n")
    skipped = []
    got = read_records([path], on_skip=skipped.append)
    assert [r["stats"]["median_ms"] for r in got] == [1.0, 2.0]
    assert [s.split(": ")[0] for s in skipped] == [f"{path}:2", f"{path}:3"]
    with pytest.raises(EdgeposeError, match="no benchmark records"):
        read_records([tmp_path / "missing.jsonl"])


def test_latest_keeps_the_newest_of_each_measurement():
    old, new = rec(median=5.0), rec(median=7.0, date="2026-02-01T00:00:00Z")
    other = rec(model="litepose-s", median=50.0)
    got = latest([old, other, new])
    assert len(got) == 2
    assert {r["model"]: r["stats"]["median_ms"] for r in got} == {"litepose-xs": 7.0, "litepose-s": 50.0}
    # Files are appended in any order (merged from devices): the date decides, not the position.
    older = rec(median=3.0, date="2025-12-31T23:59:59Z")
    got = latest([new, other, older, old])
    assert [(r["model"], r["stats"]["median_ms"]) for r in got] == [
        ("litepose-xs", 7.0),
        ("litepose-s", 50.0),
    ]
    assert latest([new, old]) == [new] and latest([]) == []


def test_csv_and_markdown_views():
    text = to_csv([rec(), rec(model="litepose-s")])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(COLUMNS)
    assert rows[1]["model"] == "litepose-s" and rows[0]["stats.median_ms"] == "10.000"
    assert rows[0]["input_size"] == "256x256" and rows[0]["macs.true"] == "882892800"
    md = to_markdown([rec()]).splitlines()
    assert md[0].startswith("| device |") and md[1].startswith("|---|") and "litepose-xs" in md[2]
