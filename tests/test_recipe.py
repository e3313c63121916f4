"""Export recipes: the shipped targets load, user recipes work, bad recipes and overrides are refused clearly."""

import json

import pytest

from edgepose.errors import EdgeposeError
from edgepose.export.recipe import known_recipes, load_recipe, parse_recipe, resolve


def write(tmp_path, text, name="mine.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_recipes():
    assert {"onnx", "jetson"} <= set(known_recipes())
    onnx = load_recipe("onnx")
    assert (onnx.format, onnx.precision, onnx.opset, onnx.dynamic_batch) == ("onnx", "fp32", 17, False)
    assert onnx.parity == {"max_abs_diff": 1e-4}
    assert onnx.runtime["backend"] == "onnxruntime"
    jetson = load_recipe("jetson")
    assert (jetson.format, jetson.precision, jetson.opset) == ("tensorrt", "fp16", 13)
    assert set(jetson.precisions) == {"fp16", "fp32", "int8"}
    assert jetson.options["parser"] == "8.2" and jetson.options["workspace_mib"] <= 512
    json.dumps(jetson.to_dict())  # goes into the manifest


@pytest.mark.parametrize("name", ["jeston", "onx"])
def test_unknown_target_lists_known_and_suggests(name):
    with pytest.raises(EdgeposeError) as err:
        load_recipe(name)
    msg = str(err.value)
    assert "did you mean" in msg and "known targets:" in msg and "jetson" in msg and "\n" not in msg


def test_user_recipe_by_path(tmp_path):
    path = write(tmp_path, 'format = "onnx"\nopset = 12\n[parity]\nmin_sqnr_db = 40\n')
    recipe = load_recipe(path)
    assert recipe.name == "mine" and recipe.opset == 12 and recipe.precision == "fp32"
    assert recipe.parity == {"min_sqnr_db": 40.0} and recipe.source == str(path)
    with pytest.raises(EdgeposeError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "text, message",
    [
        ('format = "onnx"\nopset = 13\nopsett = 12\n', "unknown keys"),
        ('format = "caffe"\n', "format must be one of"),
        ('format = "onnx"\nopset = 18\n', "opset must be an integer from 11 to 17"),
        ('format = "onnx"\n', "opset must be"),
        ('format = "onnx"\nopset = 13\nprecision = "fp16"\nprecisions = ["fp32"]\n', "not allowed"),
        ('format = "onnx"\nopset = 13\nprecisions = ["fp8"]\n', "precisions must be"),
        ('format = "onnx"\nopset = 13\n[parity]\nmax_diff = 1\n', "unknown [parity] keys"),
        ('format = "onnx"\nopset = 13\n[parity]\nmax_abs_diff = "small"\n', "must be numbers"),
        ('format = "onnx"\nopset = 13\n[tensorrt]\nworkspace_mib = 1\n', "does not apply"),
        ('format = "onnx"\nopset = 13\ndynamic_batch = "yes"\n', "dynamic_batch"),
        ("format = \n", "not valid TOML"),
    ],
)
def test_bad_recipes(tmp_path, text, message):
    with pytest.raises(EdgeposeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_recipe(write(tmp_path, text))


def test_tflite_recipe_needs_no_opset():
    recipe = parse_recipe(
        {"format": "tflite", "precisions": ["fp32", "int8"], "tflite": {"delegate": "xnnpack"}}
    )
    assert recipe.opset is None and recipe.options == {"delegate": "xnnpack"}


def test_flags_override_and_are_validated():
    jetson = load_recipe("jetson")
    assert resolve(jetson, precision="fp32", opset=11, dynamic_batch=True).precision == "fp32"
    assert resolve(jetson).opset == 13
    with pytest.raises(EdgeposeError, match="precision 'int8' is not allowed for target 'onnx'"):
        resolve(load_recipe("onnx"), precision="int8")
    with pytest.raises(EdgeposeError, match="opset"):
        resolve(jetson, opset=9)
