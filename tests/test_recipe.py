"""Export recipes: the shipped targets load, user recipes work, bad recipes and overrides are refused clearly."""

import json

import pytest

from edgepose.device.formats import TensorRTOptions, TFLiteOptions
from edgepose.errors import EdgeposeError
from edgepose.export.recipe import known_recipes, load_recipe, parse_recipe, resolve


def write(tmp_path, text, name="mine.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_recipes():
    assert set(known_recipes()) == {"onnx", "jetson", "rpi4", "snapdragon855"}
    onnx = load_recipe("onnx")
    assert (onnx.format, onnx.precision, onnx.opset, onnx.dynamic_batch) == ("onnx", "fp32", 17, False)
    assert onnx.parity == {"max_abs_diff": 1e-4}
    assert (onnx.runtime.backend, onnx.runtime.threads) == ("onnxruntime", 2)
    jetson = load_recipe("jetson")
    assert (jetson.format, jetson.precision, jetson.opset) == ("tensorrt", "fp16", 13)
    assert set(jetson.precisions) == {"fp16", "fp32", "int8"}
    assert jetson.options == TensorRTOptions(parser="8.2", workspace_mib=256, max_batch=4, builder="python")
    assert jetson.source == "export/jetson.toml" and len(jetson.sha256) == 64
    json.dumps(jetson.to_dict())  # goes into the manifest


def test_tflite_recipes_hold_a_limit_table_per_precision():
    rpi4, sd855 = load_recipe("rpi4"), load_recipe("snapdragon855")
    assert (rpi4.runtime.threads, rpi4.runtime.delegate) == (4, "xnnpack")
    assert rpi4.parity == {"max_abs_diff": 1e-4, "noise_factor": 4.0, "noisy_min_sqnr_db": 60.0}
    for recipe in (rpi4, sd855):
        fp16, int8 = (resolve(recipe, precision=p).parity for p in ("fp16", "int8"))
        assert fp16 == {"min_sqnr_db": 40.0, "min_peak_agreement": 0.9}
        assert int8 == {"min_sqnr_db": 15.0, "min_peak_agreement": 0.2}
    assert sd855.options.benchmark_flags["fp16"] == "--use_gpu=true"
    assert set(sd855.runtime.delegates) == {"xnnpack", "gpu", "hexagon", "nnapi"}


def test_manifest_records_the_recipe_by_name_and_hash_not_path(tmp_path):
    data = load_recipe("rpi4").to_dict()
    assert data["name"] == "rpi4" and len(data["sha256"]) == 64
    assert "/" not in json.dumps(data)
    mine = load_recipe(write(tmp_path, 'format = "onnx"\nopset = 13\n'))
    assert str(tmp_path) not in json.dumps(mine.to_dict())


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
        ('format = "onnx"\nopset = 13\nprecisions = ["int8"]\n', "precisions must be drawn from fp32"),
        ('format = "onnx"\nopset = 13\n[parity]\nmax_diff = 1\n', "unknown [parity] keys"),
        ('format = "onnx"\nopset = 13\n[parity]\nmax_abs_diff = "small"\n', "must be numbers"),
        ('format = "tflite"\n[parity.fp8]\nmin_sqnr_db = 1\n', "[parity.fp8] is not a precision"),
        ('format = "tflite"\n[parity.int8]\nmin_sqnr = 1\n', "unknown [parity] keys"),
        ('format = "onnx"\nopset = 13\n[tensorrt]\nworkspace_mib = 1\n', "does not apply"),
        (
            'format = "tensorrt"\nopset = 13\n[tensorrt]\nworkspace_mib = "big"\n',
            "workspace_mib must be a int",
        ),
        ('format = "tensorrt"\nopset = 13\n[tensorrt]\nworkspace = 1\n', "unknown keys ['workspace']"),
        ('format = "tflite"\n[runtime]\nbackend = "onnxruntime"\n', "cannot run tflite"),
        ('format = "tflite"\n[runtime]\nthreads = -1\n', "threads must be an integer >= 0"),
        ('format = "tflite"\n[runtime]\ndelegate = "gpu"\ndelegates = ["xnnpack"]\n', "not in delegates"),
        ('format = "tflite"\ncalib_max_images = 0\n', "calib_max_images must be a positive integer"),
        ('format = "onnx"\nopset = 13\ndynamic_batch = "yes"\n', "dynamic_batch"),
        ("format = \n", "not valid TOML"),
    ],
)
def test_bad_recipes(tmp_path, text, message):
    with pytest.raises(EdgeposeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_recipe(write(tmp_path, text))


def test_tflite_recipe_needs_no_opset_and_has_typed_options():
    recipe = parse_recipe(
        {"format": "tflite", "precisions": ["fp32", "int8"], "tflite": {"benchmark_model": "bm"}}
    )
    assert recipe.opset is None and recipe.options == TFLiteOptions(benchmark_model="bm")


def test_flags_override_and_are_validated():
    jetson = load_recipe("jetson")
    changed = resolve(jetson, precision="fp32", opset=11, dynamic_batch=True)
    assert (changed.precision, changed.opset, changed.dynamic_batch) == ("fp32", 11, True)
    assert (jetson.precision, jetson.opset, jetson.dynamic_batch) == ("fp16", 13, False)  # not mutated
    assert resolve(jetson).opset == 13
    with pytest.raises(EdgeposeError, match="precision 'int8' is not allowed for target 'onnx'"):
        resolve(load_recipe("onnx"), precision="int8")
    with pytest.raises(EdgeposeError, match="opset"):
        resolve(jetson, opset=9)
    sd855 = load_recipe("snapdragon855")
    assert resolve(sd855, delegate="gpu", threads=2).runtime.to_dict() == {
        "backend": "tflite", "threads": 2, "delegate": "gpu"
    }  # fmt: skip
    with pytest.raises(EdgeposeError, match="delegate 'hexagon' is not allowed for target 'rpi4'"):
        resolve(load_recipe("rpi4"), delegate="hexagon")


def test_folder_name_is_one_function_of_the_resolved_recipe():
    recipe = resolve(load_recipe("rpi4"), precision="int8")
    assert (
        recipe.folder_name("litepose-xs", "crowdpose", (256, 256))
        == "litepose-xs-crowdpose-256x256-rpi4-int8"
    )


def test_next_steps_are_checked_for_their_placeholders(tmp_path):
    assert "{path}" in load_recipe("rpi4").next_steps[0]
    with pytest.raises(EdgeposeError, match=r"next_steps may use \{folder\}, \{path\}.*not \['where'\]"):
        load_recipe(write(tmp_path, 'format = "onnx"\nopset = 13\nnext_steps = ["go {where}"]\n'))
    with pytest.raises(EdgeposeError, match="next_steps must be a list of strings"):
        load_recipe(write(tmp_path, 'format = "onnx"\nopset = 13\nnext_steps = "run it"\n'))
