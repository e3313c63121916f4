"""The one table of formats and backends: everything reads it, and nothing else spells its names."""

import ast
import json
from pathlib import Path

import pytest

import edgepose
from edgepose.cli import main
from edgepose.device.formats import BACKENDS, FORMATS, get_backend, get_format, model_files
from edgepose.errors import EdgeposeError
from edgepose.export.recipe import known_recipes, load_recipe

PACKAGE = Path(edgepose.__file__).parent
TABLE = PACKAGE / "device" / "formats.py"


OPT_OUT = "# pip names, not formats"  # a line that spells e.g. the pip extra "tflite"


def _literals(path: Path):
    """(line, value) of every string constant in ``path`` that is not a docstring or on an opted-out line."""
    text = path.read_text()
    skipped = {i + 1 for i, line in enumerate(text.splitlines()) if line.rstrip().endswith(OPT_OUT)}
    tree = ast.parse(text)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.lineno not in skipped:
                yield node.lineno, node.value


def test_no_format_or_model_file_literal_outside_the_table():
    names = set(FORMATS) | set(BACKENDS)
    files = set(model_files())
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == TABLE:
            continue
        for line, value in _literals(path):
            if value in names or any(f in value for f in files):
                offenders.append(f"{path.relative_to(PACKAGE)}:{line}: {value!r}")
    assert offenders == []


def test_the_scan_sees_a_planted_literal(tmp_path):
    planted = tmp_path / "x.py"
    planted.write_text(
        f'"""model.onnx in a docstring is fine."""\nFILE = "model.onnx"\nfmt = "tflite"\nextra = "tflite"  {OPT_OUT}\n'
    )
    assert [v for _, v in _literals(planted)] == ["model.onnx", "tflite"]


def test_every_recipe_format_backend_and_file_comes_from_the_table():
    for name in known_recipes():
        recipe = load_recipe(name)
        fmt = get_format(recipe.format)
        assert recipe.runtime.backend in fmt.backends and set(recipe.precisions) <= set(fmt.precisions)
        assert isinstance(recipe.options, fmt.options)
    assert {get_backend(b).model_file for f in FORMATS.values() for b in f.backends} <= set(model_files())
    with pytest.raises(EdgeposeError, match="unknown format 'caffe'; known formats: onnx, tensorrt, tflite"):
        get_format("caffe")
    with pytest.raises(EdgeposeError, match="unknown backend 'tvm'"):
        get_backend("tvm")


def test_targets_lists_every_recipe_with_its_devices(capsys):
    assert main(["targets", "--json"]) == 0
    rows = {r["target"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(known_recipes())
    assert rows["jetson"]["runtimes"] == ["tensorrt", "onnxruntime"] and rows["jetson"]["devices"] == [
        "jetson-nano"
    ]
    assert rows["rpi4"]["model_file"] == "model.tflite" and rows["rpi4"]["default_precision"] == "fp32"
    assert rows["snapdragon855"]["precisions"] == ["fp16", "int8"] and rows["onnx"]["devices"] == [
        "host",
        "rpi4",
    ]
    assert main(["targets"]) == 0
    text = capsys.readouterr().out
    assert "fp16*, int8" in text and "jetson-nano" in text


def test_export_help_points_to_targets(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "edgepose targets" in capsys.readouterr().out
