"""The device-side engine builder: clear errors here; real TensorRT builds where tensorrt imports.

Its Python 3.6 syntax and imports are checked with the rest of edgepose/device in test_device_portability.py.
"""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepose.device import build_engine, trtexec_build
from edgepose.export.pipeline import export_model


def test_gpu_name_from_nvidia_smi_then_the_board_model_then_unknown(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$1 $2" = "--query-gpu=name --format=csv,noheader" ] || exit 9\n'
                   'printf " NVIDIA H100 80GB HBM3 \\nNVIDIA H100 80GB HBM3\\n"\n')  # fmt: skip
    smi.chmod(0o755)
    assert build_engine.gpu_name() == "NVIDIA H100 80GB HBM3"  # the first GPU, stripped
    # No nvidia-smi (a Jetson): the device tree's board model, NULs stripped.
    smi.unlink()
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Nano Developer Kit\x00")
    real_open = open
    monkeypatch.setattr(
        build_engine,
        "open",
        lambda path, *a, **k: real_open(model if path == "/proc/device-tree/model" else path, *a, **k),
        raising=False,
    )
    assert build_engine.gpu_name() == "NVIDIA Jetson Nano Developer Kit"
    # nvidia-smi that fails or prints nothing falls through too; neither source: "unknown".
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    assert build_engine.gpu_name() == "NVIDIA Jetson Nano Developer Kit"
    model.unlink()
    assert build_engine.gpu_name() == "unknown"


SETTINGS = {"builder": "python", "precision": "fp16", "workspace_mib": 256, "tensorrt_version": "8.2",
            "shapes": None, "calibration": None, "trtexec": "trtexec", "source": "model.onnx",
            "engine": "model.engine"}  # fmt: skip


def artifact(folder: Path, data: bytes = b"onnx bytes", **engine) -> Path:
    """A minimal TensorRT artifact folder: model.onnx and a manifest with its sha256 and engine settings."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(data)
    manifest = {"precision": "fp16", "engine": {**SETTINGS, **engine},
                "artifacts": {"model.onnx": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_changed_onnx_is_refused(tmp_path, capsys):
    artifact(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"changed")
    assert build_engine.main([], model_dir=str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "does not match its manifest" in err and err.count("\n") == 1


def test_a_folder_without_engine_settings_is_refused(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {}}))
    assert build_engine.main([], model_dir=str(tmp_path)) == 2
    assert "has no engine settings" in capsys.readouterr().err


def test_without_tensorrt_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # missing here even where it is installed
    artifact(tmp_path)
    assert build_engine.main(["--precision", "fp32"], model_dir=str(tmp_path)) == 2
    assert "tensorrt Python package is not importable" in capsys.readouterr().err


def test_trtexec_arguments_follow_the_settings_and_the_version():
    def args(**kw):
        return trtexec_build.trtexec_build_args({**SETTINGS, **kw}, "model.onnx", "model.engine")

    assert args() == ["--onnx=model.onnx", "--saveEngine=model.engine", "--workspace=256", "--fp16"]
    assert args(tensorrt_version="10.3")[2] == "--memPoolSize=workspace:256"
    assert args(tensorrt_version="8.4", workspace_mib=128)[2] == "--memPoolSize=workspace:128"
    assert "--fp16" not in args(precision="fp32")
    assert args(precision="int8", calibration="calib.cache")[-2:] == ["--int8", "--calib=calib.cache"]
    shapes = args(shapes={"min": [1, 3, 64, 48], "opt": [1, 3, 64, 48], "max": [4, 3, 64, 48]})[-3:]
    assert shapes == [
        "--minShapes=input:1x3x64x48",
        "--optShapes=input:1x3x64x48",
        "--maxShapes=input:4x3x64x48",
    ]
    with pytest.raises(build_engine.EdgeposeError, match="trtexec cannot calibrate INT8 from images"):
        args(precision="int8", calibration="calib.npy")
    with pytest.raises(build_engine.EdgeposeError, match="bad TensorRT version"):
        args(tensorrt_version="eight")
    assert trtexec_build.trtexec_time_args("model.engine", 20)[:2] == [
        "--loadEngine=model.engine",
        "--iterations=20",
    ]


def test_trtexec_builder_runs_the_binary_with_the_manifest_settings(tmp_path, capsys):
    folder = artifact(tmp_path / "xs", workspace_mib=128)
    fake = tmp_path / "trtexec"  # stands in for TensorRT's binary: records its arguments, writes a plan
    fake.write_text('#!/bin/sh\necho "$@" > trtexec.args\nprintf PLAN > model.engine\n')
    fake.chmod(0o755)
    assert build_engine.main(["--builder", "trtexec", "--trtexec", str(fake)], model_dir=str(folder)) == 0
    assert (folder / "trtexec.args").read_text().split() == [
        "--onnx=model.onnx", "--saveEngine=model.engine", "--workspace=128", "--fp16"
    ]  # fmt: skip
    info = json.loads((folder / "engine.json").read_text())
    assert info["builder"] == "trtexec" and info["onnx_sha256"] == hashlib.sha256(b"onnx bytes").hexdigest()
    assert info["engine_sha256"] == hashlib.sha256(b"PLAN").hexdigest()
    assert f"{fake} --onnx=model.onnx" in capsys.readouterr().out
    failing = tmp_path / "broken-trtexec"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    (folder / "model.engine").unlink()
    assert build_engine.main(["--builder", "trtexec", "--trtexec", str(failing)], model_dir=str(folder)) == 2
    assert "trtexec failed to build the engine (exit 3" in capsys.readouterr().err


def test_missing_onnx(tmp_path):
    with pytest.raises(build_engine.EdgeposeError, match="ONNX file not found"):
        build_engine.build_engine(str(tmp_path / "none.onnx"), str(tmp_path / "e.engine"))


# ---- real builds: run where the tensorrt package imports (a Jetson or a GPU machine) ----


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pytest.importorskip("tensorrt", reason="needs TensorRT (a Jetson or a GPU machine)")
    out = tmp_path_factory.mktemp("trt") / "xs"
    return export_model("litepose-xs", "jetson", input_size="64x64", out=out, build=True)


def _deserialize(path):
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    return runtime.deserialize_cuda_engine(path.read_bytes())


@pytest.mark.tensorrt
def test_fp16_engine_built_at_export(folder):
    info = json.loads((folder / "engine.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert info["precision"] == "fp16" and info["source"] == "model.onnx"
    assert info["onnx_sha256"] == manifest["artifacts"]["model.onnx"]["sha256"]
    assert info["engine_sha256"] == hashlib.sha256((folder / "model.engine").read_bytes()).hexdigest()
    assert info["tensorrt_version"] and info["gpu"] and info["build_seconds"] >= 0
    assert manifest["export"]["engine_build"]["built_here"]["precision"] == "fp16"
    assert manifest["engine"]["precision"] == "fp16" and manifest["engine"]["workspace_mib"] == 256
    assert _deserialize(folder / "model.engine") is not None  # a plain plan, as trtexec --loadEngine reads


@pytest.mark.tensorrt
def test_fp32_rebuild_through_the_device_script(folder, capsys):
    assert build_engine.main(["--precision", "fp32"], model_dir=str(folder)) == 0
    assert "trtexec --loadEngine=" in capsys.readouterr().out
    assert json.loads((folder / "engine.json").read_text())["precision"] == "fp32"
    assert _deserialize(folder / "model.engine") is not None


@pytest.mark.tensorrt
def test_int8_needs_fast_int8_and_calibration(folder, tmp_path):
    import tensorrt as trt

    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    onnx_path, engine = str(folder / "model.onnx"), str(tmp_path / "int8.engine")
    if getattr(builder, "platform_has_fast_int8", True) is False:  # e.g. the Jetson Nano
        with pytest.raises(build_engine.EdgeposeError, match="no fast INT8"):
            build_engine.build_engine(onnx_path, engine, precision="int8")
        return
    with pytest.raises(build_engine.EdgeposeError, match="INT8 needs a calibration cache"):
        build_engine.build_engine(onnx_path, engine, precision="int8")
    pytest.importorskip("pycuda", reason="INT8 calibration from data needs pycuda")
    data = tmp_path / "calib.npy"
    np.save(data, np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32))
    cache = str(tmp_path / "calib.cache")
    info = build_engine.build_engine(onnx_path, engine, "int8", 256, calib_cache=cache, calib_data=str(data))
    assert info["precision"] == "int8" and Path(cache).stat().st_size > 0
    # The cache alone is enough the second time.
    again = build_engine.build_engine(onnx_path, engine, "int8", 256, calib_cache=cache)
    assert again["precision"] == "int8" and _deserialize(Path(engine)) is not None


# ---- the API switch between TensorRT 8.x and >= 8.4 / 10.x, against a stand-in module ----


def _stand_in():
    """The stand-in ``tensorrt`` module's factory (tests/data/fake_tensorrt), loaded by path."""
    path = Path(__file__).parent / "data" / "fake_tensorrt" / "tensorrt" / "__init__.py"
    spec = importlib.util.spec_from_file_location("fake_tensorrt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FakeTensorRT


FakeTensorRT = _stand_in()


@pytest.mark.parametrize("version, pools, flags", [("8.2.1.8", False, 1), ("10.3.0", True, 0)])
def test_api_switch_fp16(monkeypatch, tmp_path, version, pools, flags):
    fake = FakeTensorRT(version, pools=pools)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    info = build_engine.build_engine(str(onnx_path), str(tmp_path / "model.engine"), "fp16", 128)
    assert (tmp_path / "model.engine").read_bytes() == b"PLAN"
    assert json.loads((tmp_path / "engine.json").read_text()) == info
    assert (
        info["tensorrt_version"] == version and info["precision"] == "fp16" and info["workspace_mib"] == 128
    )
    assert info["onnx_sha256"] == hashlib.sha256(b"onnx").hexdigest()
    assert ("network_flags", flags) in fake.log and ("flag", "fp16") in fake.log
    workspace = ("pool", "workspace", 128 << 20) if pools else ("max_workspace_size", 128 << 20)
    assert workspace in fake.log


def test_int8_on_a_nano_is_an_error_not_fp32(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("8.2.1.8", fast_int8=False))
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(build_engine.EdgeposeError, match="no fast INT8"):
        build_engine.build_engine(str(tmp_path / "model.onnx"), str(tmp_path / "model.engine"), "int8")
    assert not (tmp_path / "model.engine").exists()


def test_python_builder_reads_the_manifest_settings(monkeypatch, tmp_path, capsys):
    fake = FakeTensorRT("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    folder = artifact(tmp_path / "xs", workspace_mib=96, precision="fp32")
    assert build_engine.main([], model_dir=str(folder)) == 0
    assert ("pool", "workspace", 96 << 20) in fake.log and ("flag", "fp16") not in fake.log
    assert json.loads((folder / "engine.json").read_text())["precision"] == "fp32"
    assert build_engine.main(["--precision", "fp16", "--workspace", "64"], model_dir=str(folder)) == 0
    assert ("pool", "workspace", 64 << 20) in fake.log and ("flag", "fp16") in fake.log
    assert "wrote " in capsys.readouterr().out
