"""The Jetson target: TensorRT 8.2 lint of ONNX graphs, trtexec line, folder contents; all without TensorRT."""

import json
import sys
import types

import onnx
import pytest
from onnx import TensorProto, helper

from edgepose.cli import main
from edgepose.errors import EdgeposeError
from edgepose.export import trt_ops
from edgepose.export.pipeline import export_model
from edgepose.export.recipe import load_recipe, resolve
from edgepose.export.tensorrt import engine_settings


def graph(op, opset=13, domain="", inputs=2, attrs=None, shape=(1, 3, 8, 8)):
    """A one-node ONNX model applying ``op`` to float inputs."""
    names = [f"x{i}" for i in range(inputs)]
    node = helper.make_node(op, names, ["y"], domain=domain, **(attrs or {}))
    g = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(g, opset_imports=imports)


def test_clean_graph_passes():
    assert trt_ops.lint(graph("Add")) == []
    trt_ops.check(graph("Relu", inputs=1))


def test_mod_is_refused_by_name():
    with pytest.raises(EdgeposeError) as err:
        trt_ops.check(graph("Mod", opset=13), what="toy.onnx")
    msg = str(err.value)
    assert "toy.onnx will not parse in TensorRT 8.2" in msg and "op Mod x1" in msg and "opset" not in msg


def test_gridsample_is_refused_with_its_opset():
    problems = trt_ops.lint(graph("GridSample", opset=16, shape=(1, 1, 4, 4)))
    assert "opset 16 (TensorRT 8.2 parses ONNX up to opset 13)" in problems
    assert "op GridSample x1 (not supported by TensorRT 8.2)" in problems


def test_opset_alone_is_refused():
    assert trt_ops.lint(graph("Add", opset=17)) == ["opset 17 (TensorRT 8.2 parses ONNX up to opset 13)"]


def test_custom_domain_needs_a_plugin():
    problems = trt_ops.lint(graph("MyOp", domain="com.example"))
    assert problems == [
        "op com.example::MyOp (custom domain: needs a TensorRT plugin) x1 (not supported by TensorRT 8.2)"
    ]


def test_dynamic_shapes_only_when_static_wanted():
    dynamic = graph("Relu", inputs=1, shape=("batch", 3, 8, 8))
    assert any("dynamic shape ['batch', 3, 8, 8]" in p for p in trt_ops.lint(dynamic))
    assert trt_ops.lint(dynamic, static_shapes=False) == []


def test_resize_modes_and_conv_weights():
    cubic = graph("Resize", inputs=1, attrs={"mode": "cubic"})
    assert any("Resize" in p and "mode=cubic" in p for p in trt_ops.lint(cubic))
    assert trt_ops.lint(graph("Resize", inputs=1, attrs={"mode": "nearest"})) == []
    conv = graph("Conv", inputs=2)  # weights arrive as a graph input, not an initializer
    assert any("takes its weights from a tensor" in p for p in trt_ops.lint(conv))


def test_unknown_parser_version():
    with pytest.raises(EdgeposeError, match="no op list for TensorRT '7.1'"):
        trt_ops.lint(graph("Add"), parser="7.1")


def job(precision="fp16", dynamic=False):
    recipe = resolve(load_recipe("jetson"), precision=precision, dynamic_batch=dynamic)
    return types.SimpleNamespace(input_size=(256, 192), precision=precision, recipe=recipe)


def test_engine_settings_are_resolved_once_from_the_recipe():
    settings = engine_settings(job(), None)
    assert settings == {
        "builder": "python", "precision": "fp16", "workspace_mib": 256, "tensorrt_version": "8.2", "shapes": None,
        "calibration": None, "trtexec": "/usr/src/tensorrt/bin/trtexec", "source": "model.onnx",
        "engine": "model.engine",
    }  # fmt: skip
    dynamic = engine_settings(job(dynamic=True), None)["shapes"]
    assert dynamic == {"min": [1, 3, 256, 192], "opt": [1, 3, 256, 192], "max": [4, 3, 256, 192]}
    assert engine_settings(job("int8"), "calib.cache")["calibration"] == "calib.cache"


@pytest.fixture(scope="module")
def jetson(tmp_path_factory):
    out = tmp_path_factory.mktemp("jetson") / "xs"
    assert main(["export", "litepose-xs", "--target", "jetson", "--input", "64x64", "--out", str(out)]) == 0
    return out


def test_jetson_folder(jetson):
    m = json.loads((jetson / "manifest.json").read_text())
    assert (m["format"], m["precision"], m["target"]) == ("tensorrt", "fp16", "jetson")
    assert m["runtime"] == {"backend": "tensorrt"} and m["engine"]["engine"] == "model.engine"
    assert m["engine"]["precision"] == "fp16" and m["engine"]["workspace_mib"] == 256  # recorded once
    assert "workspace_mib" not in json.dumps(m["export"])
    trt = m["export"]["engine_build"]
    assert trt["parser"] == "8.2" and trt["lint"] == "passed" and trt["built_here"] is None
    assert m["export"]["opset"] == 13 and m["parity"]["passed"] and not m["export"]["dynamic_batch"]
    assert {
        "model.onnx",
        "build_engine.py",
        "trtexec.sh",
        "run.py",
        "edgepose_device/build_engine.py",
    } <= set(m["artifacts"])
    model = onnx.load(str(jetson / "model.onnx"))
    assert model.opset_import[0].version == 13 and trt_ops.lint(model) == []
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    assert "edgepose_device.build_engine import main" in (jetson / "build_engine.py").read_text()
    assert (jetson / "trtexec.sh").stat().st_mode & 0o111
    assert "build_engine.py --builder trtexec" in (jetson / "trtexec.sh").read_text()  # one build path


def test_jetson_int8_without_calibration_is_refused(tmp_path, capsys):
    out = tmp_path / "int8"
    assert (
        main(["export", "litepose-xs", "--target", "jetson", "--precision", "int8", "--out", str(out)]) == 2
    )
    assert "int8 needs calibration" in capsys.readouterr().err and not out.exists()


def test_build_without_tensorrt_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # missing here even where it is installed
    out = tmp_path / "build"
    argv = ["export", "litepose-xs", "--target", "jetson", "--input", "64x64", "--build", "--out", str(out)]
    assert main(argv) == 2
    assert "tensorrt Python package is not importable" in capsys.readouterr().err and not out.exists()


def test_lint_rejects_a_model_exported_past_opset_13(tmp_path):
    """A user recipe asking the jetson format for opset 17 fails at the lint, naming the opset."""
    recipe = tmp_path / "nano17.toml"
    from edgepose import shipped

    text = shipped.locate("recipes", "jetson")[0].read_text()
    recipe.write_text(text.replace("opset = 13", "opset = 17"))
    with pytest.raises(EdgeposeError, match=r"opset 17 \(TensorRT 8.2 parses ONNX up to opset 13\)"):
        export_model("litepose-xs", recipe, input_size="64x64", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_onnx_module_loads_models_with_clear_errors(tmp_path):
    from edgepose.export.onnx import load

    with pytest.raises(EdgeposeError, match="ONNX file not found"):
        load(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(EdgeposeError, match="cannot read ONNX file"):
        load(tmp_path / "bad.onnx")
    onnx.save(graph("Add"), str(tmp_path / "ok.onnx"))
    assert load(tmp_path / "ok.onnx").graph.node[0].op_type == "Add"


def test_int8_calibration_is_staged(tmp_path):
    import cv2
    import numpy as np

    from edgepose.export.tensorrt import stage_calibration

    images = tmp_path / "frames"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.jpg"), np.full((40, 30, 3), 60 * i, np.uint8))
    cache = tmp_path / "old.cache"
    cache.write_bytes(b"TRT-8201-EntropyCalibration2\n")
    stage = tmp_path / "stage"
    stage.mkdir()

    def fake_job(calib, precision="int8"):
        spec = types.SimpleNamespace(kind="bottom-up")
        return types.SimpleNamespace(
            precision=precision,
            calib=calib,
            stage=stage,
            input_size=(32, 32),
            spec=spec,
            recipe=types.SimpleNamespace(calib_max_images=200),
        )

    assert stage_calibration(fake_job(images, precision="fp16")) is None
    assert stage_calibration(fake_job(images)) == "calib.npy"
    assert np.load(stage / "calib.npy").shape == (3, 3, 32, 32)
    assert stage_calibration(fake_job(cache)) == "calib.cache"
    assert (stage / "calib.cache").read_bytes() == cache.read_bytes()
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(EdgeposeError, match=r"expected \(N, 3, 32, 32\)"):
        stage_calibration(fake_job(tmp_path / "bad.npy"))
