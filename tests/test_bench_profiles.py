"""Device profiles: every shipped one loads; typos and broken files give one clear line."""

import pytest

from edgepose.bench.profiles import list_profiles, load_profile
from edgepose.errors import EdgeposeError


def test_shipped_profiles_load_with_recipe_runtime_and_reach():
    assert {"host", "rpi4", "snapdragon855", "jetson-nano"} <= set(list_profiles())
    pi = load_profile("rpi4")
    assert (pi.recipe, pi.backend, pi.threads, pi.reach) == ("rpi4", "tflite", 4, "ssh")
    assert pi.paper_column == "pi" and pi.hardware["match"] == "Raspberry Pi 4"
    nano = load_profile("jetson-nano")
    assert (nano.recipe, nano.precision, nano.native["tool"]) == ("jetson", "fp16", "trtexec")
    phone = load_profile("snapdragon855")
    assert phone.reach == "adb" and phone.runtime["cpu_mask"] == "f0"
    host = load_profile("host")
    assert host.models is None and host.recipe == "onnx" and host.threads is None


def test_unknown_device_suggests_the_close_name():
    with pytest.raises(EdgeposeError, match="did you mean 'rpi4'"):
        load_profile("rpi5")


def test_user_profile_by_path_and_its_errors(tmp_path):
    good = tmp_path / "mybox.toml"
    good.write_text(
        'recipe = "onnx"\n[runtime]\nbackend = "onnxruntime"\nthreads = 8\n[reach]\nmethod = "ssh"\n'
    )
    prof = load_profile(str(good))
    assert prof.name == "mybox" and prof.threads == 8 and prof.reach == "ssh"
    bad = tmp_path / "bad.toml"
    bad.write_text('recipe = "onnx"\n[runtime]\n[reach]\nmethod = "pigeon"\n')
    with pytest.raises(EdgeposeError, match="reach.method"):
        load_profile(str(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("recipe = \n")
    with pytest.raises(EdgeposeError, match="not valid TOML"):
        load_profile(str(broken))
    with pytest.raises(EdgeposeError, match="does not exist"):
        load_profile(str(tmp_path / "nope.toml"))
