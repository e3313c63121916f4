"""Device profiles: every shipped one resolves against its recipe; conflicts and typos give one clear line."""

import pytest

from edgepose.bench.profiles import list_profiles, load_profile
from edgepose.errors import EdgeposeError
from edgepose.export.recipe import load_recipe, resolve


def test_shipped_profiles_resolve_against_their_recipes():
    assert set(list_profiles()) == {"host", "rpi4", "snapdragon855", "jetson-nano"}
    pi = load_profile("rpi4")
    assert (pi.recipe.name, pi.recipe.runtime.backend, pi.threads, pi.reach.method) == (
        "rpi4",
        "tflite",
        4,
        "ssh",
    )
    assert pi.paper_column == "pi" and pi.hardware["match"] == "Raspberry Pi 4" and pi.delegate == "xnnpack"
    nano = load_profile("jetson-nano")
    assert (nano.recipe.name, nano.precision, nano.native.tool) == ("jetson", "fp16", "trtexec")
    assert nano.int8 is False and nano.recipe.options.builder == "python"
    phone = load_profile("snapdragon855")
    assert phone.reach.method == "adb" and phone.native.cpu_mask == "f0" and phone.precision == "fp16"
    host = load_profile("host")
    assert host.models is None and host.recipe.name == "onnx" and host.threads == 2  # the recipe's


@pytest.mark.parametrize("name", ["host", "rpi4", "snapdragon855", "jetson-nano"])
def test_every_runtime_and_precision_a_shipped_profile_allows_resolves(name):
    profile = load_profile(name)
    assert list(profile.runtimes)[0] == profile.recipe.runtime.backend  # the default runtime first
    for runtime, recipe in profile.runtimes.items():
        allowed = [p for p in recipe.precisions if profile.int8 or p != "int8"]
        for precision in allowed:
            resolved = profile.with_settings(precision=precision, runtime=runtime).recipe
            assert (resolved.runtime.backend, resolved.precision) == (runtime, precision)
            assert resolved.parity  # a gate for each


def test_the_pi_can_be_timed_with_onnxruntime_instead_of_tflite():
    pi = load_profile("rpi4")
    assert list(pi.runtimes) == ["tflite", "onnxruntime"]
    ort = pi.with_settings(runtime="onnxruntime")
    assert (ort.recipe.name, ort.recipe.format, ort.threads) == ("onnx", "onnx", 4)  # the Pi's 4 cores
    with pytest.raises(
        EdgeposeError,
        match=r"rpi4 \(devices/rpi4.toml\) has no runtime 'tensorrt'; choose one of: tflite, onnxruntime",
    ):
        pi.with_settings(runtime="tensorrt")
    with pytest.raises(EdgeposeError, match="disagrees with its recipe export/onnx.toml: .*precision 'int8'"):
        pi.with_settings(precision="int8", runtime="onnxruntime")


def test_int8_on_the_nano_is_refused_naming_the_profile():
    with pytest.raises(EdgeposeError, match=r"jetson-nano \(devices/jetson-nano.toml\) cannot run int8"):
        load_profile("jetson-nano").with_settings(precision="int8")


def test_a_profile_that_disagrees_with_its_recipe_names_both_files(tmp_path):
    bad = tmp_path / "phone.toml"
    bad.write_text('recipe = "snapdragon855"\nprecision = "fp32"\n[reach]\nmethod = "adb"\n')
    with pytest.raises(EdgeposeError) as err:
        load_profile(str(bad))
    msg = str(err.value)
    assert f"{bad} disagrees with its recipe export/snapdragon855.toml" in msg
    assert "precision 'fp32' is not allowed" in msg and "\n" not in msg
    other = tmp_path / "pi.toml"
    other.write_text('recipe = "rpi4"\ndelegate = "gpu"\n')
    with pytest.raises(
        EdgeposeError, match="pi.toml disagrees with its recipe export/rpi4.toml: delegate 'gpu'"
    ):
        load_profile(str(other))


def test_unknown_device_suggests_the_close_name():
    with pytest.raises(EdgeposeError, match="did you mean 'rpi4'"):
        load_profile("rpi5")


def test_user_profile_by_path_and_its_errors(tmp_path):
    good = tmp_path / "mybox.toml"
    good.write_text('recipe = "onnx"\nthreads = 8\n[reach]\nmethod = "ssh"\n')
    prof = load_profile(str(good))
    assert prof.name == "mybox" and prof.threads == 8 and prof.reach.method == "ssh"
    # The whole message, naming the file; TOML's own words after "not valid TOML: " vary by version.
    for text, message in [
        (
            'recipe = "onnx"\n[reach]\nmethod = "pigeon"\n',
            "{path}: reach.method must be one of local, ssh, adb, got 'pigeon'",
        ),
        (
            'recipe = "onnx"\n[runtime]\nbackend = "x"\n',
            "{path}: unknown keys ['runtime']; allowed: name, description, recipe, precision, threads, delegate, "
            "engine_builder, models, paper_column, hardware, reach, native, runtimes",
        ),
        (
            'recipe = "onnx"\nengine_builder = "trtexec"\n',
            "{path}: engine_builder ('trtexec') is for recipes that build an engine on the device: one of python, trtexec",
        ),
        (
            'recipe = "jetson"\nengine_builder = "magic"\n',
            "{path}: engine_builder ('magic') is for recipes that build an engine on the device: one of python, trtexec",
        ),
        (
            'recipe = "onnx"\n[native]\ntool = "stopwatch"\n',
            "{path}: native.tool must be one of trtexec, benchmark_model, got 'stopwatch'",
        ),
        (
            'recipe = "rpi4"\n[runtimes.onnxruntime]\nrecipe = "jetson"\n',
            "{path} [runtimes.onnxruntime]: recipe 'jetson' runs on tensorrt, not onnxruntime",
        ),
        (
            'recipe = "rpi4"\n[runtimes.onnxruntime]\nthreads = 2\n',
            "{path} [runtimes.onnxruntime]: needs a recipe and may set only recipe, precision, threads, delegate",
        ),
        ("[reach]\n", "{path}: a device profile needs a 'recipe' entry (an export target)"),
        ("recipe = \n", "{path}: not valid TOML: "),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(EdgeposeError) as err:
            load_profile(str(bad))
        expected = message.format(path=bad)
        assert str(err.value).startswith(expected) if expected.endswith(": ") else str(err.value) == expected
    with pytest.raises(EdgeposeError, match="device profile not found"):
        load_profile(str(tmp_path / "nope.toml"))


def test_engine_builder_is_a_profile_setting_of_tensorrt_recipes(tmp_path):
    path = tmp_path / "orin.toml"
    path.write_text(
        'recipe = "jetson"\nprecision = "int8"\nengine_builder = "trtexec"\n[reach]\nmethod = "ssh"\n'
    )
    prof = load_profile(str(path))
    assert prof.recipe.options.builder == "trtexec" and prof.precision == "int8" and prof.int8


def profile_error(tmp_path, text: str) -> str:
    bad = tmp_path / "box.toml"
    bad.write_text(text)
    with pytest.raises(EdgeposeError) as err:
        load_profile(str(bad))
    return str(err.value).replace(str(bad), "{path}")


def test_profile_tables_and_models_are_checked_with_whole_messages(tmp_path):
    assert profile_error(tmp_path, 'recipe = "onnx"\nreach = "ssh"\n') == "{path}: [reach] must be a table"
    assert profile_error(tmp_path, 'recipe = "onnx"\n[reach]\nmethod = "ssh"\nworkdir = 22\n') == (
        "{path}: [reach] values must be strings"
    )
    assert profile_error(tmp_path, 'recipe = "onnx"\n[native]\ntool = "trtexec"\nflags = "-v"\n') == (
        "{path}: unknown [native] keys ['flags']; allowed: tool, path, cpu_mask"
    )
    for models in ('"some"', "[1, 2]", '"xs"'):
        assert profile_error(tmp_path, f'recipe = "onnx"\nmodels = {models}\n') == (
            '{path}: models must be "all" or a list of model names'
        )
    assert profile_error(tmp_path, 'recipe = "onnx"\nruntimes = 3\n') == (
        "{path}: [runtimes] must hold one table per runtime, e.g. [runtimes.onnxruntime]"
    )
    good = tmp_path / "good.toml"
    good.write_text('recipe = "onnx"\nmodels = ["litepose-xs", "litepose-s"]\n')
    assert load_profile(str(good)).models == ("litepose-xs", "litepose-s")
    good.write_text('recipe = "onnx"\n')
    assert load_profile(str(good)).models is None  # "all"


def test_command_line_threads_reach_the_recipe_and_int8_refusal_lists_the_rest():
    pi = load_profile("rpi4")
    assert pi.with_settings(threads=2).threads == 2 and pi.threads == 4
    assert pi.with_settings(threads=2, runtime="onnxruntime").recipe.runtime.threads == 2
    nano = load_profile("jetson-nano")
    with pytest.raises(EdgeposeError) as err:
        nano.with_settings(precision="int8")
    assert str(err.value) == (
        "jetson-nano (devices/jetson-nano.toml) cannot run int8 (hardware.int8 = false): choose one of fp16, fp32"
    )


def test_the_manifest_records_the_resolved_recipe_in_full():
    import hashlib

    from edgepose import shipped

    recipe = resolve(load_recipe("rpi4"), precision="fp16", threads=2)
    # export/rpi4.toml, by hand: fp16's own parity table, XNNPACK with the threads given.
    assert recipe.to_dict() == {
        "name": "rpi4",
        "sha256": hashlib.sha256(shipped.locate("recipes", "rpi4")[0].read_bytes()).hexdigest(),
        "format": "tflite",
        "precision": "fp16",
        "precisions": ["fp32", "int8", "fp16"],
        "opset": None,
        "dynamic_batch": False,
        "calib_max_images": 200,
        "parity": {"min_sqnr_db": 40.0, "min_peak_agreement": 0.9},
        "runtime": {"backend": "tflite", "threads": 2, "delegate": "xnnpack"},
    }


def test_a_profile_reads_its_name_description_and_each_runtime_choice(tmp_path):
    pi = load_profile("rpi4")
    assert (
        pi.name == "rpi4"
        and pi.description == "Raspberry Pi 4 Model B, 4x Cortex-A72 @ 1.5 GHz, 64-bit Raspberry Pi OS"
    )
    box = tmp_path / "box.toml"
    box.write_text(
        'name = "lab-box"\ndescription = "the lab box"\nrecipe = "onnx"\n'
        '[runtimes.tflite]\nrecipe = "snapdragon855"\nprecision = "int8"\nthreads = 3\ndelegate = "gpu"\n'
    )
    prof = load_profile(str(box))
    assert (prof.name, prof.description) == ("lab-box", "the lab box")
    tfl = prof.runtimes["tflite"]
    # not the recipe's fp16 or its xnnpack
    assert (tfl.precision, tfl.runtime.threads, tfl.runtime.delegate) == ("int8", 3, "gpu")
    box.write_text('recipe = "onnx"\n')
    assert (load_profile(str(box)).name, load_profile(str(box)).description) == ("box", "")
    for runtimes, message in [
        ('[runtimes.tflite]\nrecipe = "rpi4"\ncolour = "red"\n', "{path} [runtimes.tflite]: needs a recipe"),
        ("[runtimes]\ntflite = 3\n", "{path} [runtimes.tflite]: needs a recipe"),
    ]:
        assert profile_error(tmp_path, 'recipe = "onnx"\n' + runtimes).startswith(message)
