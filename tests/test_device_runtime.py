"""Device runtimes: the common interface, manifest checks, clear errors, and cross-runtime agreement.

``make_artifact`` builds a tiny stand-in artifact folder (ONNX + manifest.json + device package +
run.py, the layout `edgepose export` writes) in a second, so the runtime and the run script can be
tested without the real exporters; the cross-runtime test at the bottom uses the real ones.
"""

import atexit
import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgepose
from edgepose.device.errors import EdgeposeError
from edgepose.device.manifest import load_manifest
from edgepose.device.runtime import open_runtime
from edgepose.device.runtime.base import Runtime, dequantize, quantize
from edgepose.device.skeletons import get_skeleton

DEVICE_PACKAGE = Path(edgepose.__file__).parent / "device"
RUN_PY = (
    "import os, sys; HERE = os.path.dirname(os.path.abspath(__file__)); sys.path.insert(0, HERE); "
    "from edgepose_device.cli import main; sys.exit(main(model_dir=HERE))\n"
)


class TinyBottomUp(nn.Module):
    """Stand-in with LitePose's interface: (1/4 res, 2J channels), (1/2 res, J channels)."""

    def __init__(self, joints=14):
        super().__init__()
        self.joints = joints
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head2 = nn.Conv2d(8, joints, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.head4 = nn.Conv2d(8, 2 * joints, 3, padding=1)

    def forward(self, x):
        f = torch.relu(self.conv1(x))
        out4 = self.head4(torch.relu(self.conv2(f)))
        out4 = torch.cat([torch.sigmoid(out4[:, : self.joints]), out4[:, self.joints :]], dim=1)
        return out4, torch.sigmoid(self.head2(f))


class TinyTopDown(nn.Module):
    """Stand-in with Lite-HRNet's interface: J heatmaps at 1/4 resolution."""

    def __init__(self, joints=17):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, joints, 3, stride=2, padding=1)
        )

    def forward(self, x):
        return torch.sigmoid(self.body(x))


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_artifact(folder, kind="bottom-up", size=(64, 64), dynamic_batch=False, seed=0):
    """Write a stand-in artifact folder for ``kind`` and return (folder, torch model)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    dataset = "crowdpose" if kind == "bottom-up" else "coco"
    skeleton = get_skeleton(dataset)
    joints = len(skeleton["joints"])
    model = (TinyBottomUp(joints) if kind == "bottom-up" else TinyTopDown(joints)).eval()
    h, w = size
    x = torch.zeros(1, 3, h, w)
    if kind == "bottom-up":
        names, roles, strides = ["heatmaps_tags", "heatmaps"], ["heatmaps_tags", "heatmaps"], [4, 2]
    else:
        names, roles, strides = ["heatmaps"], ["heatmaps"], [4]
    axes = {n: {0: "batch"} for n in ["input"] + names} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is what we want here
        torch.onnx.export(
            model,
            (x,),
            str(folder / "model.onnx"),
            input_names=["input"],
            output_names=names,
            opset_version=17,
            dynamic_axes=axes,
            dynamo=False,
        )
    with torch.no_grad():
        ref = model(x)
    ref = ref if isinstance(ref, tuple) else (ref,)
    shutil.copytree(DEVICE_PACKAGE, folder / "edgepose_device", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "run.py").write_text(RUN_PY)
    manifest = {
        "schema": "edgepose.manifest/1",
        "edgepose_version": edgepose.__version__,
        "model": {
            "name": "tiny-" + kind,
            "family": "tiny",
            "kind": kind,
            "dataset": dataset,
            "num_joints": joints,
            "joints": skeleton["joints"],
            "flip_index": skeleton["flip_index"],
            "limbs": skeleton["limbs"],
            "weights": None,
        },
        "input": {
            "name": "input",
            "shape": [1, 3, h, w],
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
            "scale": 1 / 255.0,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "quantization": None,
        },
        "outputs": [
            {
                "name": n,
                "role": r,
                "stride": s,
                "shape": list(t.shape),
                "layout": "NCHW",
                "dtype": "float32",
                "quantization": None,
            }
            for n, r, s, t in zip(names, roles, strides, ref)
        ],
        "format": "onnx",
        "precision": "fp32",
        "target": "onnx",
        "runtime": {"backend": "onnxruntime", "threads": 1},
        "artifacts": {"model.onnx": {"sha256": _sha(folder / "model.onnx"), "bytes": 0}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder, model


@pytest.fixture(scope="module")
def bottomup(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("bu") / "tiny-bu")


@pytest.fixture(scope="module")
def topdown(tmp_path_factory):
    return make_artifact(
        tmp_path_factory.mktemp("td") / "tiny-td", "top-down", size=(64, 48), dynamic_batch=True
    )


def test_onnxruntime_matches_torch_and_splits_fixed_batches(bottomup):
    folder, model = bottomup
    rt = open_runtime(str(folder), load_manifest(str(folder)))
    assert rt.max_batch == 1 and "onnxruntime" in rt.describe()
    x = np.random.RandomState(0).randn(3, 3, 64, 64).astype(np.float32)
    out = rt.run(x)
    assert set(out) == {"heatmaps_tags", "heatmaps"}
    assert out["heatmaps_tags"].shape == (3, 28, 16, 16) and out["heatmaps"].shape == (3, 14, 32, 32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    np.testing.assert_allclose(out["heatmaps_tags"], ref[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["heatmaps"], ref[1].numpy(), atol=1e-5)


def test_dynamic_batch_runs_in_one_call(topdown):
    folder, model = topdown
    rt = open_runtime(str(folder), load_manifest(str(folder)), threads=1)
    assert rt.max_batch is None
    x = np.random.RandomState(1).randn(4, 3, 64, 48).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt.run(x)["heatmaps"], ref, atol=1e-5)


class _FakeNHWC(Runtime):
    """A backend whose artifact is NHWC and int8 (like a quantised TFLite model)."""

    backend = "fake"
    max_batch = 1

    def _infer(self, x):
        self.seen = x
        q = quantize(x[..., :2], 0.05, 3, np.int8)  # "model output" = first two channels, quantised
        return {"out": dequantize(q, 0.05, 3)}


def test_base_runtime_converts_layouts_and_quantisation():
    manifest = {
        "input": {"name": "input", "shape": [1, 4, 5, 3], "layout": "NHWC"},
        "outputs": [{"name": "out", "shape": [1, 4, 5, 2], "layout": "NHWC"}],
    }
    rt = _FakeNHWC("x", manifest)
    x = np.random.RandomState(2).uniform(-2, 2, (2, 3, 4, 5)).astype(np.float32)
    out = rt.run(x)["out"]
    assert rt.seen.shape == (1, 4, 5, 3)  # fed NHWC, one item at a time
    assert out.shape == (2, 2, 4, 5) and out.dtype == np.float32  # returned NCHW
    np.testing.assert_allclose(out, x[:, :2], atol=0.05 / 2 + 1e-6)  # within half a quantisation step


def test_outputs_are_matched_by_name_then_by_unique_shape():
    manifest = {
        "input": {"shape": [1, 3, 8, 8]},
        "outputs": [
            {"name": "heatmaps_tags", "shape": [1, 28, 2, 2]},
            {"name": "heatmaps", "shape": [1, 14, 4, 4]},
        ],
    }
    rt = Runtime("x", manifest)
    assert rt.match_outputs([("Identity_1", [1, 14, 4, 4]), ("Identity", [1, 28, 2, 2])]) == {
        "heatmaps_tags": 1,
        "heatmaps": 0,
    }
    with pytest.raises(EdgeposeError, match="cannot find output 'heatmaps'"):
        rt.match_outputs([("a", [1, 28, 2, 2]), ("b", [1, 7, 4, 4])])


def test_bad_folders_and_tampered_models_are_clear_errors(tmp_path, bottomup):
    folder, _ = bottomup
    with pytest.raises(EdgeposeError, match="model folder not found"):
        load_manifest(str(tmp_path / "nope"))
    with pytest.raises(EdgeposeError, match="no manifest.json"):
        load_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text('{"schema": "other"}')
    with pytest.raises(EdgeposeError, match="not an edgepose manifest"):
        load_manifest(str(tmp_path))
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(EdgeposeError, match="does not match its manifest"):
        open_runtime(str(copy), load_manifest(str(copy)))
    manifest = load_manifest(str(folder))
    with pytest.raises(
        EdgeposeError, match="backend 'tflite' cannot run this onnx artifact; choose one of: onnxruntime"
    ):
        open_runtime(str(folder), manifest, backend="tflite")
    with pytest.raises(EdgeposeError, match="build it on this device first"):
        open_runtime(str(folder), {**manifest, "format": "tensorrt"}, backend="tensorrt")
    with pytest.raises(EdgeposeError, match="has no model.tflite for the tflite backend"):
        open_runtime(str(folder), {**manifest, "format": "tflite", "runtime": {}})
    with pytest.raises(EdgeposeError, match="unknown backend"):
        open_runtime(str(folder), manifest, backend="tvm")


def test_missing_runtime_package_is_one_clear_line(bottomup, monkeypatch):
    folder, _ = bottomup
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(EdgeposeError, match="onnxruntime is not installed.*pip install onnxruntime"):
        open_runtime(str(folder), load_manifest(str(folder)))


def test_missing_tensorrt_is_reported(bottomup, tmp_path, monkeypatch):
    folder, _ = bottomup
    copy = tmp_path / "trt"
    shutil.copytree(folder, copy)
    (copy / "model.engine").write_bytes(b"not an engine")
    manifest = {**load_manifest(str(copy)), "format": "tensorrt"}  # a Jetson folder
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EdgeposeError, match="tensorrt is not installed"):
        open_runtime(str(copy), manifest, backend="tensorrt")
    (copy / "engine.json").write_text(json.dumps({"onnx_sha256": "0" * 64}))  # build_engine.py's sidecar
    with pytest.raises(EdgeposeError, match="built from another model.onnx"):
        open_runtime(str(copy), manifest, backend="tensorrt")


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_onnxruntime(bottomup, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (Jetson / NVIDIA GPU only)")
    pytest.importorskip("pycuda.autoinit", reason="pycuda with a CUDA GPU is needed for the TensorRT runtime")
    folder, _ = bottomup
    copy = tmp_path / "trt"
    shutil.copytree(folder, copy)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = (
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        if hasattr(trt, "NetworkDefinitionCreationFlag")
        else 0
    )
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse((copy / "model.onnx").read_bytes())
    config = builder.create_builder_config()
    (copy / "model.engine").write_bytes(bytes(builder.build_serialized_network(network, config)))
    manifest = {**load_manifest(str(copy)), "format": "tensorrt"}  # a Jetson folder
    x = np.random.RandomState(3).randn(1, 3, 64, 64).astype(np.float32)
    ref = open_runtime(str(copy), manifest, backend="onnxruntime").run(x)
    out = open_runtime(str(copy), manifest, backend="tensorrt").run(x)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], atol=1e-3)


# ---- the real exporters: the same random-weight model through torch, onnxruntime and TFLite ----

_EXPORTS = {}


def exported(model_name, target, size, dataset):
    """Export ``model_name`` once per session (random weights, saved so torch can rebuild them)."""
    key = (model_name, target, size, dataset)
    if key in _EXPORTS:
        return _EXPORTS[key]
    from edgepose.export.pipeline import export_model
    from edgepose.models import build_model

    root = Path(tempfile.mkdtemp(prefix="edgepose-xrt-"))
    atexit.register(shutil.rmtree, root, True)
    torch.manual_seed(0)
    model = build_model(model_name, dataset=dataset)
    state = model.state_dict()
    joints = len(get_skeleton(dataset)["joints"])
    for key_name, value in state.items():
        # Random heads give flat heatmaps below the 0.1 threshold; make peaks and spread-out tags.
        if key_name.endswith("conv.3.weight"):  # LitePose's prediction convs (Lite-HRNet's peak anyway)
            value.mul_(8.0)
            if value.shape[0] == 2 * joints:
                value[joints:] *= 100.0
    weights = root / f"{model_name}.pth"
    torch.save(state, weights)
    folder = export_model(
        model_name, target, dataset=dataset, input_size=size, weights=weights, out=root / target
    )
    _EXPORTS[key] = (folder, weights)
    return _EXPORTS[key]


def _poses(folder, frame, runtime=None, **options):
    from edgepose.device.pipeline import PosePipeline

    # The random heads' tags make hundreds of near-tie pairs; the official grouping's rounded costs do
    # not flip under the runtimes' float differences, the crowd grouping's unrounded ones can.
    options.setdefault("grouping", "official")
    result = PosePipeline(str(folder), runtime=runtime, **options)(frame)
    return np.array([p["keypoints"] for p in result["people"]]).reshape(-1, 3)


def assert_same_poses(got, ref):
    """Same people, and (nearly) every keypoint at the same place with the same score (relative 1e-3)."""
    assert got.shape == ref.shape
    tol = np.maximum(np.abs(ref[:, 2]), 1.0) * 1e-3
    same = (np.abs(got[:, :2] - ref[:, :2]).max(axis=1) <= 0.01) & (np.abs(got[:, 2] - ref[:, 2]) <= tol)
    # A near-tie between two heatmap pixels may go either way under rounding differences.
    assert same.mean() >= 0.98, f"{(~same).sum()} of {len(same)} keypoints differ"


CASES = [("litepose-xs", (128, 128), "crowdpose"), ("litehrnet-18", (128, 96), "coco")]


@pytest.fixture(scope="module")
def photo():
    import cv2
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.mark.slow
@pytest.mark.parametrize("model_name,size,dataset", CASES)
def test_torch_and_onnxruntime_decode_to_the_same_poses(model_name, size, dataset, photo):
    from edgepose.torch_runtime import TorchRuntime

    folder, weights = exported(model_name, "onnx", size, dataset)
    manifest = load_manifest(str(folder))
    for flip in (False, True):
        ort_poses = _poses(folder, photo, flip=flip)
        torch_poses = _poses(folder, photo, TorchRuntime(manifest, weights=weights), flip=flip)
        assert (ort_poses[:, 2] > 0.1).sum() >= 10  # a real decoding problem, not an empty one
        assert_same_poses(torch_poses, ort_poses)


@pytest.mark.slow
@pytest.mark.parametrize("model_name,size,dataset", CASES[:1])
def test_tflite_decodes_to_the_same_poses_as_onnxruntime(model_name, size, dataset, photo):
    # Only a missing optional extra skips; the exporter and the rpi4 (TFLite) recipe are part of the project.
    pytest.importorskip("litert_torch", reason="TFLite export needs the 'tflite' extra (litert-torch)")
    pytest.importorskip("ai_edge_litert", reason="the TFLite runtime is the 'tflite' extra's ai-edge-litert")
    onnx_folder, _ = exported(model_name, "onnx", size, dataset)
    tfl_folder, _ = exported(model_name, "rpi4", size, dataset)
    ref = _poses(onnx_folder, photo)
    got = _poses(tfl_folder, photo, backend="tflite")
    assert_same_poses(got, ref)
