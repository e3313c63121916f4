"""`edgepose models` and `edgepose macs` through the real CLI, plus the shared table formatter."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgepose.cli import main, models_cmd
from edgepose.errors import EdgeposeError
from edgepose.macs import CONVENTIONS
from edgepose.models import list_models
from edgepose.tables import Column, format_table

EDGEPOSE = Path(sys.executable).parent / "edgepose"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_macs_json_and_error() -> None:
    done = subprocess.run([str(EDGEPOSE), "macs", "litepose-xs", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert (d["params"], d["paper_value"], round(d["true_macs"] / 1e9, 3)) == (1_675_552, 1.202, 0.883)
    assert "layers" not in d
    bad = subprocess.run([str(EDGEPOSE), "macs", "litepose-xz"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "did you mean 'litepose-xs'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def litepose_rows() -> list[dict]:
    """`edgepose models --family litepose --json`, counted once for the module."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models", "--family", "litepose", "--json"]) == 0
    return json.loads(out.getvalue())


def test_models_litepose_json(litepose_rows) -> None:
    assert len(litepose_rows) == 8  # 4 variants x (crowdpose, coco)
    s = next(r for r in litepose_rows if (r["name"], r["dataset"]) == ("litepose-s", "crowdpose"))
    assert (s["params"], s["paper_value"], s["paper_unit"], s["input_size"]) == (
        2_731_240,
        4.981,
        "G",
        [448, 448],
    )
    assert round(s["true_macs"] / 1e9, 3) == 3.614 and s["num_joints"] == 14
    assert [o["shape"] for o in s["outputs"]] == [[1, 28, 112, 112], [1, 14, 224, 224]]


def test_models_text_md_csv(capsys, monkeypatch, litepose_rows) -> None:
    # The formatting only: reuse the rows counted once above.
    monkeypatch.setattr(models_cmd, "model_rows", lambda family=None: copy.deepcopy(litepose_rows))
    _, text, _ = run_cli(capsys, "models")
    assert "litepose-l   litepose  bottom-up  coco (17)" in text and "13.730 G MACs" in text
    assert "ptflops-0.6 = ptflops<=0.7.4 rules, LitePose paper" in text
    _, md, _ = run_cli(capsys, "models", "--format", "md")
    assert md.splitlines()[1].startswith("|---|") and "| litepose-l | litepose |" in md
    _, out, _ = run_cli(capsys, "models", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    xs = rows[0]
    assert (xs["model"], xs["dataset"], xs["joints"], xs["input HxW"]) == (
        "litepose-xs",
        "crowdpose",
        "14",
        "256x256",
    )
    assert (int(xs["params"]), int(xs["true MACs"]), int(xs["paper MACs (raw)"])) == (
        1_675_552,
        882_892_800,
        1_202_266_112,
    )


@pytest.mark.slow
def test_models_lists_every_registered_variant(capsys) -> None:
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = json.loads(out)
    expected = {(s.name, d) for s in list_models() for d in s.datasets}
    assert code == 0 and {(r["name"], r["dataset"]) for r in rows} == expected
    for r in rows:
        assert r["params"] > 0 and 0 < r["true_macs"] < r["paper_macs"] * 1.05, r["name"]
        digits = CONVENTIONS[r["paper_convention"]].decimals
        assert r["paper_display"].startswith(f"{r['paper_value']:.{digits}f}")
        if r["published_value"] is not None:  # where edgepose records the printed figure, it is reproduced
            assert r["paper_value"] == r["published_value"], r["name"]
        assert ("num_classes" in r) == (r["kind"] == "segmentation") != ("num_joints" in r)
    if "litehrnet-18" in {s.name for s in list_models()}:
        l18 = {(r["dataset"], tuple(r["input_size"])): r for r in rows if r["name"] == "litehrnet-18"}
        assert set(l18) == {("coco", (256, 192)), ("coco", (384, 288)), ("mpii", (256, 256))}
        assert [l18[k]["paper_value"] for k in sorted(l18)] == [205.23, 461.56, 273.43]


def test_macs_segmentation_shows_printed_unfitted_and_fit(capsys) -> None:
    code, out, _ = run_cli(capsys, "macs", "litehrnet-18-seg")
    assert code == 0 and "litehrnet-18-seg (cityscapes) at 512x1024, batch 1" in out
    assert "params     1,130,851" in out and "true MACs  2.120 G (2,120,285,312 " in out
    assert (
        "paper      1.95 G FLOPs (torchstat rules, /2^30, x0.9097 fitted, Lite-HRNet paper, Cityscapes)"
        in out
    )
    assert "published  1.95 G FLOPs (Lite-HRNet paper, Cityscapes table)" in out
    assert (
        "unfitted   2.14 G FLOPs (torchstat rules, /2^30, no fitted factor) (raw count 2,296,315,264)" in out
    )
    assert "fitted     x0.9097: fitted to the paper's two printed Cityscapes figures" in out
    _, out, _ = run_cli(capsys, "macs", "litehrnet-18-seg", "--input", "256x512", "--json")
    d = json.loads(out)
    assert d["published_value"] is None and d["output_shapes"] == [
        [1, 19, 64, 128]
    ]  # printed at 512x1024 only
    _, out, _ = run_cli(capsys, "macs", "litehrnet-18-seg", "--convention", "torchstat")
    assert "2.14 G FLOPs (torchstat rules, /2^30, Lite-HRNet paper)" in out and "published" not in out


def test_models_segmentation_rows(capsys, monkeypatch) -> None:
    rows = [
        {
            "name": "litehrnet-18-seg",
            "family": "litehrnet",
            "kind": "segmentation",
            "paper": "Lite-HRNet (CVPR 2021)",
            "dataset": "cityscapes",
            "num_classes": 19,
            "input_size": [512, 1024],
            "params": 1_130_851,
            "true_macs": 2_120_285_312,
            "paper_macs": 2_088_957_965,
            "paper_rules_macs": 2_296_315_264,
            "paper_value": 1.95,
            "paper_unit": "G (binary)",
            "paper_convention": "torchstat-seg-fit",
            "paper_display": "1.95 G FLOPs (torchstat rules, /2^30, x0.9097 fitted, Lite-HRNet paper, Cityscapes)",
            "published_value": 1.95,
            "published_source": "Lite-HRNet paper, Cityscapes table",
            "outputs": [{"name": "logits", "role": "logits", "stride": 4, "shape": [1, 19, 128, 256]}],
        }
    ]
    monkeypatch.setattr(models_cmd, "model_rows", lambda family=None: copy.deepcopy(rows))
    _, text, _ = run_cli(capsys, "models")
    assert re.search(r"litehrnet-18-seg +litehrnet +segmentation +cityscapes \(19 classes\) +512x1024", text)
    assert re.search(r"1\.95 G FLOPs \(paper: 1\.95\) +torchstat-seg-fit +logits 1x19x128x256", text)
    assert "fitted: torchstat-seg-fit carries x0.9097, fitted to the paper's two printed" in text
    _, out, _ = run_cli(capsys, "models", "--format", "csv")
    row = next(csv.DictReader(io.StringIO(out)))
    assert (row["joints"], row["classes"], row["paper printed"], row["paper MACs (raw)"]) == (
        "",
        "19",
        "1.95",
        "2088957965",
    )


def test_macs_text_and_per_layer(capsys) -> None:
    code, out, _ = run_cli(capsys, "macs", "litepose-xs", "--per-layer", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    total = rows.pop()
    assert code == 0 and total["layer"] == "total"
    assert sum(int(r["true MACs"]) for r in rows) == int(total["true MACs"]) == 882_892_800
    assert sum(int(r["paper (ptflops-0.6)"]) for r in rows) == int(total["paper (ptflops-0.6)"])
    _, out, _ = run_cli(
        capsys, "macs", "litepose-xs", "--input", "320", "--dataset", "coco", "--convention", "true"
    )
    assert "litepose-xs (coco) at 320x320" in out and "true MACs" in out and "paper " not in out
    assert "hardtanh (relu6) x70" in out
    _, out, _ = run_cli(capsys, "macs", "litepose-xs", "--convention", "torchstat", "--json", "--per-layer")
    d = json.loads(out)
    assert d["paper_convention"] == "torchstat" and d["paper_unit"].endswith("(binary)") and d["layers"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["macs", "nosuch"], "unknown model 'nosuch'"),
        (["macs", "litepose-xs", "--input", "250x256"], "nearest valid: 240 or 256"),
        (["macs", "litepose-xs", "--input", "big"], "bad input size 'big'"),
        (["macs", "litepose-xs", "--dataset", "mpii"], "no 'mpii' head"),
        (["models", "--family", "resnet"], "no model family 'resnet'"),
    ],
)
def test_errors_are_one_line(capsys, argv: list[str], message: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("edgepose: error: ") and message in err and err.count("\n") == 1


def test_format_table_styles() -> None:
    rows = [{"name": "a|b", "n": 1234}, {"name": "c", "n": None}]
    cols = [Column("name"), Column("n", "count", "right", "{:,}".format)]
    assert format_table(rows, cols).splitlines() == ["name  count", "----  -----", "a|b   1,234", "c"]
    assert format_table(rows, cols, "markdown").splitlines() == [
        "| name | count |",
        "|---|---:|",
        "| a\\|b | 1,234 |",
        "| c |  |",
    ]
    assert format_table(rows, cols, "csv").splitlines() == ["name,count", "a|b,1234", "c,"]
    with pytest.raises(EdgeposeError, match="unknown table style"):
        format_table(rows, cols, "html")
