"""Export recipes: the shipped targets load, user recipes work, bad recipes and overrides are refused clearly."""

import json

import pytest

from edgepose.device.formats import TensorRTOptions, TFLiteOptions
from edgepose.errors import EdgeposeError
from edgepose.export.recipe import RuntimeSettings, known_recipes, load_recipe, parse_recipe, resolve


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


def test_segmentation_models_have_their_own_parity_tables():
    # Logits are gated on per-pixel classes and SQNR, heatmaps on an absolute bar and peaks: the model
    # kind, resolved at export, picks the table; pose models keep theirs.
    fp32 = {"min_sqnr_db": 60.0, "min_pixel_agreement": 0.999}
    for name in ("onnx", "jetson"):
        recipe = load_recipe(name)
        assert resolve(recipe, kind="segmentation").parity == fp32
        assert resolve(recipe, kind="top-down").parity == recipe.parity == {"max_abs_diff": 1e-4}
    rpi4, sd855 = load_recipe("rpi4"), load_recipe("snapdragon855")
    assert resolve(rpi4, kind="segmentation").parity == fp32
    for recipe in (rpi4, sd855):
        fp16, int8 = (resolve(recipe, precision=p, kind="segmentation").parity for p in ("fp16", "int8"))
        assert fp16 == {"min_sqnr_db": 40.0, "min_pixel_agreement": 0.98}
        assert int8 == {"min_sqnr_db": 15.0, "min_pixel_agreement": 0.75}
        assert resolve(recipe, precision="int8", kind="bottom-up").parity["min_peak_agreement"] == 0.2
    with pytest.raises(EdgeposeError) as err:
        resolve(rpi4, kind="depth")
    assert str(err.value) == "unknown model kind 'depth'; known: bottom-up, top-down, segmentation"
    # A kind's table first, then the precision tables after it: every one is read.
    after = parse_recipe(
        {
            "format": "tflite",
            "precisions": ["fp32", "fp16"],
            "parity": {"top-down": {"min_sqnr_db": 7.0}, "fp16": {"min_sqnr_db": 8.0}},
        }
    )
    assert resolve(after, kind="top-down").parity == {"min_sqnr_db": 7.0}
    assert resolve(after, precision="fp16").parity == {"min_sqnr_db": 8.0}


def test_parity_table_lookup_order(tmp_path):
    recipe = load_recipe(write(tmp_path, """format = "tflite"
precisions = ["fp32", "fp16"]
[parity]
max_abs_diff = 1.0
[parity.fp16]
max_abs_diff = 2.0
[parity.segmentation]
max_abs_diff = 3.0
[parity.fp16.segmentation]
max_abs_diff = 4.0
"""))  # fmt: skip
    found = {
        (p, k): resolve(recipe, precision=p, kind=k).parity["max_abs_diff"]
        for p in ("fp32", "fp16") for k in (None, "top-down", "segmentation")
    }  # fmt: skip
    # <precision>.<kind>, then <kind>, then <precision>, then the default table.
    assert found == {
        ("fp32", None): 1.0, ("fp32", "top-down"): 1.0, ("fp32", "segmentation"): 3.0,
        ("fp16", None): 2.0, ("fp16", "top-down"): 2.0, ("fp16", "segmentation"): 4.0,
    }  # fmt: skip


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
        (
            'format = "onnx"\nopset = 13\nopsett = 12\n',
            "recipe {path}: unknown keys ['opsett']; allowed: name, description, format, precision, precisions, opset, dynamic_batch, calib_max_images, next_steps, parity, runtime, onnx, tensorrt, tflite",
        ),
        ('format = "caffe"\n', "recipe {path}: format must be one of onnx, tensorrt, tflite, got 'caffe'"),
        ('format = "onnx"\nopset = 18\n', "recipe {path}: opset must be an integer from 11 to 17, got 18"),
        ('format = "onnx"\n', "recipe {path}: opset must be an integer from 11 to 17, got None"),
        (
            'format = "onnx"\nopset = 13\nprecision = "fp16"\nprecisions = ["fp32"]\n',
            "recipe {path}: precision 'fp16' is not allowed for target 'mine'; choose one of: fp32",
        ),
        (
            'format = "onnx"\nopset = 13\nprecisions = ["fp8"]\n',
            "recipe {path}: precisions must be drawn from fp32 (format onnx), got ['fp8']",
        ),
        (
            'format = "onnx"\nopset = 13\nprecisions = ["int8"]\n',
            "recipe {path}: precisions must be drawn from fp32 (format onnx), got ['int8']",
        ),
        (
            'format = "onnx"\nopset = 13\n[parity]\nmax_diff = 1\n',
            "recipe {path}: unknown [parity] keys ['max_diff']; allowed: max_abs_diff, mean_abs_diff, min_sqnr_db, min_peak_agreement, min_pixel_agreement, noise_factor, noisy_min_sqnr_db",
        ),
        (
            'format = "onnx"\nopset = 13\n[parity]\nmax_abs_diff = "small"\n',
            "recipe {path}: [parity] thresholds must be numbers",
        ),
        (
            'format = "tflite"\n[parity.fp8]\nmin_sqnr_db = 1\n',
            "recipe {path}: [parity.fp8] is not a precision or a model kind; use one of fp32, fp16, int8, bottom-up, top-down, segmentation",
        ),
        (
            'format = "tflite"\n[parity.int8]\nmin_sqnr = 1\n',
            "recipe {path} [parity.int8]: unknown [parity] keys ['min_sqnr']; allowed: max_abs_diff, mean_abs_diff, min_sqnr_db, min_peak_agreement, min_pixel_agreement, noise_factor, noisy_min_sqnr_db",
        ),
        (
            'format = "onnx"\nopset = 13\n[tensorrt]\nworkspace_mib = 1\n',
            "recipe {path}: table [tensorrt] does not apply to format 'onnx'",
        ),
        (
            'format = "tflite"\n[parity.fp16.depth]\nmin_sqnr_db = 1\n',
            "recipe {path}: [parity.fp16.depth] is not a model kind; use one of bottom-up, top-down, segmentation",
        ),
        (
            'format = "tflite"\n[parity.segmentation.fp16]\nmin_sqnr_db = 1\n',
            "recipe {path}: [parity.segmentation] cannot hold tables (fp16)",
        ),
        (
            'format = "tflite"\n[parity.segmentation.int8]\nmin_sqnr_db = 1\n[parity.segmentation.fp16]\nmin_sqnr_db = 2\n',
            "recipe {path}: [parity.segmentation] cannot hold tables (fp16, int8)",
        ),
        (
            'format = "tflite"\n[parity.fp16.top-down]\nmin_peaks = 1\n',
            "recipe {path} [parity.fp16.top-down]: unknown [parity] keys ['min_peaks']; allowed: max_abs_diff, mean_abs_diff, min_sqnr_db, min_peak_agreement, min_pixel_agreement, noise_factor, noisy_min_sqnr_db",
        ),
        (
            'format = "tensorrt"\nopset = 13\n[runtime]\nbackend = "tflite"\n',
            "recipe {path}: runtime backend 'tflite' cannot run tensorrt; choose tensorrt, onnxruntime",
        ),
        (
            'format = "onnx"\nopset = 13\n[parity.segmentation]\nmin_pixels = 1\n',
            "recipe {path} [parity.segmentation]: unknown [parity] keys ['min_pixels']; allowed: max_abs_diff, mean_abs_diff, min_sqnr_db, min_peak_agreement, min_pixel_agreement, noise_factor, noisy_min_sqnr_db",
        ),
        (
            'format = "tensorrt"\nopset = 13\n[tensorrt]\nworkspace_mib = "big"\n',
            "recipe {path} [tensorrt]: workspace_mib must be a int, got 'big'",
        ),
        (
            'format = "tensorrt"\nopset = 13\n[tensorrt]\nworkspace = 1\n',
            "recipe {path} [tensorrt]: unknown keys ['workspace']; allowed: parser, workspace_mib, max_batch, builder, trtexec",
        ),
        (
            'format = "tflite"\n[runtime]\nbackend = "onnxruntime"\n',
            "recipe {path}: runtime backend 'onnxruntime' cannot run tflite; choose tflite",
        ),
        (
            'format = "tflite"\n[runtime]\nthreads = -1\n',
            "recipe {path}: runtime threads must be an integer >= 0, got -1",
        ),
        (
            'format = "tflite"\n[runtime]\ndelegate = "gpu"\ndelegates = ["xnnpack"]\n',
            "recipe {path}: runtime delegate 'gpu' is not in delegates ['xnnpack']",
        ),
        (
            'format = "tflite"\ncalib_max_images = 0\n',
            "recipe {path}: calib_max_images must be a positive integer, got 0",
        ),
        (
            'format = "onnx"\nopset = 13\ndynamic_batch = "yes"\n',
            "recipe {path}: dynamic_batch must be true or false",
        ),
        ("format = \n", "{path}: not valid TOML: "),
    ],
)
def test_bad_recipes(tmp_path, text, message):
    """The whole message, naming the file (a changed word or a dropped detail fails); TOML's own words vary."""
    path = write(tmp_path, text)
    with pytest.raises(EdgeposeError) as err:
        load_recipe(path)
    expected = message.format(path=path)
    assert str(err.value).startswith(expected) if expected.endswith(": ") else str(err.value) == expected


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


def test_thread_overrides_are_whole_numbers_and_zero_means_the_runtimes_default():
    rpi4 = load_recipe("rpi4")
    assert resolve(rpi4, threads=0).runtime.threads is None  # 0: the runtime decides
    assert resolve(rpi4, threads=1).runtime.threads == 1
    for bad in (-1, True, 2.0, "2"):
        with pytest.raises(EdgeposeError) as err:
            resolve(rpi4, threads=bad)
        assert str(err.value) == f"target 'rpi4': threads must be an integer >= 0, got {bad!r}"
    with pytest.raises(EdgeposeError) as err:
        resolve(load_recipe("onnx"), delegate="gpu")
    assert str(err.value) == "delegate 'gpu' is not allowed for target 'onnx'; choose: none"


def recipe_error(data: dict) -> str:
    with pytest.raises(EdgeposeError) as err:
        parse_recipe(data)
    return str(err.value)


def test_a_minimal_recipe_gets_the_documented_defaults():
    r = parse_recipe({"format": "tflite", "precision": "fp16"})
    assert (r.name, r.source, r.description, r.sha256) == ("custom", "<dict>", "", "")
    assert (r.precision, r.precisions, r.dynamic_batch, r.calib_max_images) == ("fp16", ("fp16",), False, 200)
    assert r.parity_tables == {} and r.runtime == RuntimeSettings(backend="tflite")
    named = parse_recipe(
        {"format": "onnx", "opset": 13, "name": "lab", "description": "ours", "calib_max_images": 1}
    )
    assert (named.name, named.description, named.calib_max_images) == ("lab", "ours", 1)
    assert load_recipe("rpi4").description == "TFLite for Raspberry Pi 4 (CPU, XNNPACK, 4 threads)"


def test_parity_tables_default_and_per_precision():
    tables = parse_recipe(
        {
            "format": "tflite",
            "parity": {"min_sqnr_db": 30, "int8": {"min_sqnr_db": 15}, "fp16": {"min_sqnr_db": 40}},
        }
    ).parity_tables
    assert tables == {
        "default": {"min_sqnr_db": 30.0},
        "int8": {"min_sqnr_db": 15.0},
        "fp16": {"min_sqnr_db": 40.0},
    }
    only = parse_recipe({"format": "tflite", "parity": {"int8": {"min_sqnr_db": 15}}}).parity_tables
    assert only == {"int8": {"min_sqnr_db": 15.0}}  # no empty default table


def test_runtime_delegates_and_threads_in_a_recipe():
    one = parse_recipe({"format": "tflite", "runtime": {"delegate": "xnnpack", "threads": 0}}).runtime
    assert (one.delegate, one.delegates, one.threads) == ("xnnpack", ("xnnpack",), None)  # 0: the default
    assert parse_recipe({"format": "tflite"}).runtime.delegates == ()
    assert recipe_error({"format": "tflite", "runtime": {"colour": "red"}}) == (
        "recipe <dict> [runtime]: unknown keys ['colour']; allowed: backend, threads, delegate, delegates"
    )
    for bad in (1.5, True, -1):
        assert recipe_error({"format": "tflite", "runtime": {"threads": bad}}) == (
            f"recipe <dict>: runtime threads must be an integer >= 0, got {bad!r}"
        )
    assert recipe_error({"format": "tflite", "runtime": {"backend": "onnxruntime"}}) == (
        "recipe <dict>: runtime backend 'onnxruntime' cannot run tflite; choose tflite"
    )


def test_format_options_types_next_steps_and_override_messages():
    assert recipe_error({"format": "onnx", "opset": 13, "onnx": {"foo": 1}}) == (
        "recipe <dict> [onnx]: unknown keys ['foo']; allowed: none"
    )
    assert recipe_error({"format": "tensorrt", "opset": 13, "tensorrt": {"workspace_mib": True}}) == (
        "recipe <dict> [tensorrt]: workspace_mib must be a int, got True"
    )
    every = "{folder} {path} {model} {source} {json}"  # all of them at once is allowed
    assert parse_recipe({"format": "onnx", "opset": 13, "next_steps": [every]}).next_steps == (every,)
    assert recipe_error({"format": "onnx", "opset": 13, "next_steps": ["{nope}"]}) == (
        "recipe <dict>: next_steps may use {folder}, {path}, {model}, {source}, {json}, not ['nope']"
    )
    assert recipe_error({"format": "onnx", "opset": 13, "next_steps": ["{folder"]}).startswith(
        "recipe <dict>: next_steps '{folder': "
    )
    assert recipe_error({"format": "onnx", "opset": 13, "precision": "int8"}) == (
        "recipe <dict>: precisions must be drawn from fp32 (format onnx), got ['int8']"
    )
    with pytest.raises(EdgeposeError) as err:
        resolve(load_recipe("jetson"), opset=9)
    assert str(err.value) == "target 'jetson': opset must be an integer from 11 to 17, got 9"
    with pytest.raises(EdgeposeError) as err:
        resolve(load_recipe("onnx"), precision="fp16")
    assert (
        str(err.value)
        == "target 'onnx': precision 'fp16' is not allowed for target 'onnx'; choose one of: fp32"
    )


def test_lists_in_messages_are_comma_separated():
    with pytest.raises(EdgeposeError) as err:
        resolve(load_recipe("rpi4"), precision="fp8")
    assert (
        str(err.value)
        == "target 'rpi4': precision 'fp8' is not allowed for target 'rpi4'; choose one of: fp32, int8, fp16"
    )
    assert recipe_error({"format": "tflite", "precisions": ["fp8"]}) == (
        "recipe <dict>: precisions must be drawn from fp32, fp16, int8 (format tflite), got ['fp8']"
    )
    with pytest.raises(EdgeposeError) as err:
        resolve(load_recipe("rpi4"), delegate="gpu")
    assert str(err.value) == "delegate 'gpu' is not allowed for target 'rpi4'; choose: xnnpack"
    two = parse_recipe({"format": "tflite", "runtime": {"delegate": "gpu", "delegates": ["gpu", "nnapi"]}})
    with pytest.raises(EdgeposeError) as err:
        resolve(two, delegate="hexagon")
    assert str(err.value) == "delegate 'hexagon' is not allowed for target 'custom'; choose: gpu, nnapi"
    assert recipe_error({"format": "onnx", "opset": 13, "calib_max_images": 2.5}) == (
        "recipe <dict>: calib_max_images must be a positive integer, got 2.5"
    )
