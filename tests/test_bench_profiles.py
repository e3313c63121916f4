"""Device profiles: every shipped one resolves against its recipe; conflicts and typos give one clear line."""

import pytest

from edgepose.bench.profiles import list_profiles, load_profile
from edgepose.errors import EdgeposeError


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
    for text, message in [
        ('recipe = "onnx"\n[reach]\nmethod = "pigeon"\n', "reach.method"),
        ('recipe = "onnx"\n[runtime]\nbackend = "x"\n', "unknown keys ['runtime']"),
        ('recipe = "onnx"\nengine_builder = "trtexec"\n', "engine_builder"),
        ('recipe = "jetson"\nengine_builder = "magic"\n', "engine_builder"),
        ('recipe = "onnx"\n[native]\ntool = "stopwatch"\n', "native.tool"),
        ('recipe = "rpi4"\n[runtimes.onnxruntime]\nrecipe = "jetson"\n', "runs on tensorrt, not onnxruntime"),
        ('recipe = "rpi4"\n[runtimes.onnxruntime]\nthreads = 2\n', "needs a recipe"),
        ("[reach]\n", "needs a 'recipe'"),
        ("recipe = \n", "not valid TOML"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(EdgeposeError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_profile(str(bad))
    with pytest.raises(EdgeposeError, match="device profile not found"):
        load_profile(str(tmp_path / "nope.toml"))


def test_engine_builder_is_a_profile_setting_of_tensorrt_recipes(tmp_path):
    path = tmp_path / "orin.toml"
    path.write_text(
        'recipe = "jetson"\nprecision = "int8"\nengine_builder = "trtexec"\n[reach]\nmethod = "ssh"\n'
    )
    prof = load_profile(str(path))
    assert prof.recipe.options.builder == "trtexec" and prof.precision == "int8" and prof.int8
