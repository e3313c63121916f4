"""Lite-HRNet segmentation from export to run.py: every target, the pixel-agreement gate, the manifest's
label set, the torch-free run script on a photo and a video, and the bench's timer.

The networks are exported at 128x256 (a multiple of 32 with the paper's 1:2 aspect) with seeded random
weights. The TFLite precisions reuse one litert-torch conversion (as tests/test_export_tflite.py does).
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from test_run_script import count_frames, write_clip

from edgepose.cli import main
from edgepose.device.bench import bench_model
from edgepose.device.manifest import load_manifest
from edgepose.device.runtime import open_runtime
from edgepose.device.segmentation_classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE_RGB
from edgepose.errors import EdgeposeError
from edgepose.export import parity, precision_gates
from edgepose.export.pipeline import RANDOM_SEED, export_model
from edgepose.models import build_seeded

MODEL, SIZE = "litehrnet-18-seg", (128, 256)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def torch_logits(size=SIZE) -> np.ndarray:
    model = build_seeded(MODEL, RANDOM_SEED)  # the export's own random-weight model
    with torch.no_grad():
        return model(torch.from_numpy(parity.sample_input(size))).numpy()


# ---------------------------------------------------------------- the pure gate (fast)


def test_pixel_agreement_gates_logits_and_only_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (1, 19, 10, 10)).astype(np.float32)
    moved = logits.copy()
    moved[0, :, 0, 0] = np.roll(moved[0, :, 0, 0], 1)  # one pixel of 100 changes class (a permutation)
    assert parity.pixel_agreement(logits, moved) == 0.99
    limits = {"min_sqnr_db": 0.0, "min_pixel_agreement": 0.999, "min_peak_agreement": 1.0}
    verdict = parity.gate({"logits": logits}, {"logits": moved}, limits, roles={"logits": "logits"})
    assert not verdict["passed"] and verdict["failures"] == ["logits: pixel agreement 0.99000 < 0.99900"]
    # The heatmap bar does not apply to logits (and is not reported as checked), nor the pixel bar to heatmaps.
    assert verdict["thresholds"] == {"min_sqnr_db": 0.0, "min_pixel_agreement": 0.999}
    assert "peak_agreement" not in verdict["outputs"]["logits"]
    heat = parity.gate({"heatmaps": logits}, {"heatmaps": moved}, limits)
    assert heat["thresholds"] == {"min_sqnr_db": 0.0, "min_peak_agreement": 1.0}
    assert "pixel_agreement" not in heat["outputs"]["heatmaps"]
    assert "pixels 0.99000" in parity.summary(verdict)
    # A floor below the bar lowers it by the margin, as for peaks.
    floor = {"logits": {"sqnr_db": 50.0, "pixel_agreement": 0.95}}
    lowered = parity.relative_limits(limits, floor, precision_gates.FP16_MARGIN)
    assert lowered["min_pixel_agreement"] == pytest.approx(0.95 - precision_gates.PIXEL_MARGIN)
    with pytest.raises(EdgeposeError, match="no agreement figure for output role 'depth'"):
        parity.output_figures(logits, moved, role="depth")


def test_the_parity_photo_gives_the_random_model_a_meaningful_agreement_figure():
    # Random weights could give nearly flat logits (argmax ties everywhere) or one class everywhere:
    # then pixel agreement would say nothing. On the parity photo the seeded model does neither.
    logits = torch_logits()[0]
    labels = logits.argmax(axis=0)
    top2 = np.sort(logits, axis=0)[-2:]
    assert len(np.unique(labels)) >= 12  # measured 16 of 19 classes
    assert np.bincount(labels.ravel()).max() / labels.size < 0.4  # measured 18 % for the largest
    assert np.median(top2[1] - top2[0]) > 0.1  # measured 0.32: far above fp32 noise (3e-5)
    # A graph one logit cell off (wrong padding, a shifted resize) scores far below any bar.
    shifted = np.roll(logits, 1, axis=2)
    assert parity.pixel_agreement(logits[None], shifted[None]) < 0.6  # measured 0.41


# ---------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def seg_onnx(tmp_path_factory) -> Path:
    return export_model(MODEL, "onnx", input_size=SIZE, out=tmp_path_factory.mktemp("seg") / "onnx")


def test_onnx_manifest_describes_a_segmentation_model(seg_onnx):
    m = manifest(seg_onnx)
    model = m["model"]
    assert (model["kind"], model["dataset"], model["num_classes"]) == ("segmentation", "cityscapes", 19)
    assert model["classes"] == CITYSCAPES_CLASSES and model["ignore_label"] == 255
    assert model["palette_rgb"] == [list(c) for c in CITYSCAPES_PALETTE_RGB]
    assert not {"num_joints", "joints", "limbs", "flip_index"} & set(model)
    assert model["weights"]["kind"] == "random" and model["macs"]["paper_convention"] == "torchstat-seg-fit"
    [out] = m["outputs"]
    assert (out["name"], out["role"], out["stride"], out["shape"]) == ("logits", "logits", 4, [1, 19, 32, 64])
    assert "argmax" in out["meaning"]
    p = m["parity"]
    assert p["passed"] and p["thresholds"] == {"min_sqnr_db": 60.0, "min_pixel_agreement": 0.999}
    figures = p["outputs"]["logits"]
    assert figures["pixel_agreement"] >= 0.999 and figures["sqnr_db"] > 80 and "peak_agreement" not in figures
    # The device runtime reads the file to the same labels as PyTorch.
    got = open_runtime(str(seg_onnx), m).run(parity.sample_input(SIZE))["logits"]
    assert parity.pixel_agreement(torch_logits(), got) >= 0.999


# Run the folder's run.py in a subprocess with torch and the host package made unimportable.
BLOCKED = """
import sys
sys.modules["torch"] = None
sys.modules["edgepose"] = None
folder = sys.argv[1]
sys.path.insert(0, folder)
from edgepose_device.cli import main
sys.exit(main(sys.argv[2:], model_dir=folder))
"""


def run_blocked(folder: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED, str(folder), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "coffee.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    return path


def check_photo(folder: Path, photo: Path, tmp: Path, *extra) -> None:
    """run.py on a real photo without torch: the overlay, the class shares and the label PNG agree."""
    out, lines, masks = tmp / "overlay.jpg", tmp / "classes.jsonl", tmp / "masks"
    proc = run_blocked(folder, "--source", photo, "--out", out, "--json", lines, "--mask", masks, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "the classes it finds are meaningless" in proc.stderr  # random weights, said once
    image, drawn = cv2.imread(str(photo)), cv2.imread(str(out))
    assert drawn.shape == image.shape and np.abs(drawn.astype(int) - image).mean() > 10
    [record] = [json.loads(line) for line in lines.read_text().splitlines()]
    shares = record["class_shares"]
    assert set(shares) <= set(CITYSCAPES_CLASSES) and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert list(shares.values()) == sorted(shares.values(), reverse=True)
    assert "people" not in record and set(record["timings_ms"]) == {"pre", "model", "post"}
    mask = cv2.imread(str(masks / "coffee.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and mask.shape == image.shape[:2] and mask.max() < 19
    counts = np.bincount(mask.ravel(), minlength=19) / mask.size
    assert {CITYSCAPES_CLASSES[c]: round(float(v), 5) for c, v in enumerate(counts) if v} == shares


def check_video(folder: Path, tmp: Path, *extra) -> None:
    """run.py on a video without torch: an overlay video, one JSON line and one mask per frame."""
    tmp.mkdir(parents=True, exist_ok=True)
    clip = write_clip(tmp / "clip.avi", frames=3, size=(256, 128))
    out, lines, masks = tmp / "overlay.mp4", tmp / "classes.jsonl", tmp / "masks"
    proc = run_blocked(folder, "--source", clip, "--out", out, "--json", lines, "--mask", masks, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "3 frame(s)" in proc.stdout and count_frames(out) == 3
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2] and all(r["class_shares"] for r in records)
    assert sorted(p.name for p in masks.iterdir()) == [
        "frame_000000.png",
        "frame_000001.png",
        "frame_000002.png",
    ]


def test_run_py_photo_without_torch(seg_onnx, photo, tmp_path):
    check_photo(seg_onnx, photo, tmp_path)


def test_run_py_video_without_torch(seg_onnx, tmp_path):
    check_video(seg_onnx, tmp_path, "--flip")


def test_infer_and_its_errors(seg_onnx, photo, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert main(["infer", str(seg_onnx), "--source", str(photo), "--out", str(out), "--quiet"]) == 0
    assert cv2.imread(str(out)).shape == cv2.imread(str(photo)).shape
    capsys.readouterr()
    for flag in (["--boxes", str(photo)], ["--dark"], ["--alpha", "1.5"]):
        assert main(["infer", str(seg_onnx), "--source", str(photo), *flag]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("segmentation model" in err or "--alpha" in err)
    (tmp_path / "file").write_text("not a folder")
    assert main(["infer", str(seg_onnx), "--source", str(photo), "--mask", str(tmp_path / "file")]) == 2
    assert "--mask must be a folder" in capsys.readouterr().err


def test_mask_is_refused_for_a_pose_model(tmp_path, photo, capsys):
    from test_device_runtime import make_artifact

    folder, _ = make_artifact(tmp_path / "pose")
    assert main(["infer", str(folder), "--source", str(photo), "--mask", str(tmp_path / "m")]) == 2
    assert "--mask is for segmentation models" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


class _Keep:
    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)


def test_bench_times_the_model_and_the_segmentation_pipeline(seg_onnx):
    writer = _Keep()
    bench_model(str(seg_onnx), writer, runs=2, warmup=1, threads=1, progress=False)
    timed = [r["timed"] for r in writer.records]
    assert timed == ["model", "pipeline.pre", "pipeline.model", "pipeline.post", "pipeline.total"]
    assert all(r["model"] == MODEL and r["input_size"] == list(SIZE) for r in writer.records)
    assert all(r["stats"]["median_ms"] > 0 for r in writer.records)


# ---------------------------------------------------------------- Jetson (TensorRT)


@pytest.fixture(scope="module")
def seg_jetson(tmp_path_factory) -> Path:
    return export_model(MODEL, "jetson", input_size=SIZE, out=tmp_path_factory.mktemp("seg") / "jetson")


@pytest.mark.slow
def test_jetson_folder_is_linted_and_gated(seg_jetson, photo, tmp_path):
    m = manifest(seg_jetson)
    assert (m["format"], m["precision"], m["export"]["opset"]) == ("tensorrt", "fp16", 13)
    assert m["export"]["engine_build"]["lint"] == "passed" and m["engine"]["precision"] == "fp16"
    assert m["parity"]["passed"] and m["parity"]["outputs"]["logits"]["pixel_agreement"] >= 0.999
    assert (seg_jetson / "build_engine.py").exists() and (seg_jetson / "trtexec.sh").exists()
    # Without TensorRT here, the same model.onnx runs in onnxruntime (on the Jetson: the built engine).
    check_photo(seg_jetson, photo, tmp_path / "photo", "--backend", "onnxruntime")
    check_video(seg_jetson, tmp_path / "video", "--backend", "onnxruntime")


@pytest.fixture()
def tensorrt():
    return pytest.importorskip("tensorrt", reason="needs TensorRT (a Jetson or a GPU machine)")


@pytest.mark.tensorrt
def test_jetson_engine_labels_the_photo_like_pytorch(tensorrt, seg_jetson, photo, tmp_path):
    from edgepose.device import build_engine

    assert build_engine.main([], model_dir=str(seg_jetson)) == 0
    got = open_runtime(str(seg_jetson), load_manifest(str(seg_jetson))).run(parity.sample_input(SIZE))
    assert parity.pixel_agreement(torch_logits(), got["logits"]) >= 0.98  # fp16 engine: the fp16 bar
    check_photo(seg_jetson, photo, tmp_path)


# ---------------------------------------------------------------- TFLite (rpi4, snapdragon855)


@pytest.fixture(scope="module")
def seg_rpi4(tmp_path_factory) -> Path:
    pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (export extra)")
    return export_model(MODEL, "rpi4", input_size=SIZE, out=tmp_path_factory.mktemp("seg") / "rpi4")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    from edgepose.export.calibration import write_sample_images

    return write_sample_images(tmp_path_factory.mktemp("calib"), count=8)


@pytest.mark.slow
def test_rpi4_fp32_is_nhwc_gated_and_runs_without_torch(seg_rpi4, photo, tmp_path):
    m = manifest(seg_rpi4)
    assert m["input"]["layout"] == "NHWC" and m["input"]["shape"] == [1, 128, 256, 3]
    assert [(o["name"], o["layout"], o["shape"]) for o in m["outputs"]] == [
        ("logits", "NHWC", [1, 32, 64, 19])
    ]
    figures = m["parity"]["outputs"]["logits"]
    assert m["parity"]["passed"] and figures["pixel_agreement"] >= 0.999
    assert m["parity"]["thresholds"] == {"min_sqnr_db": 60.0, "min_pixel_agreement": 0.999}
    check_photo(seg_rpi4, photo, tmp_path / "photo")
    check_video(seg_rpi4, tmp_path / "video")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rpi4", "snapdragon855"])
def test_fp16_keeps_the_pixels_classes(seg_rpi4, target, tmp_path):
    m = manifest(export_model(MODEL, target, input_size=SIZE, precision="fp16", out=tmp_path / "f16"))
    p = m["parity"]
    assert p["passed"] and p["thresholds"] == {"min_sqnr_db": 40.0, "min_pixel_agreement": 0.98}
    figures, floor = p["outputs"]["logits"], p["fp16_weights_in_pytorch"]["logits"]
    assert figures["pixel_agreement"] >= 0.98 and figures["sqnr_db"] >= 40.0  # measured 0.996, 47 dB
    # fp16-rounded weights in PyTorch predict the file's figures.
    assert abs(figures["pixel_agreement"] - floor["pixel_agreement"]) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rpi4", "snapdragon855"])
def test_int8_is_judged_against_onnxruntime_int8(seg_rpi4, calib_dir, target, tmp_path, capsys):
    # Random-weight Lite-HRNet loses its signal in any int8 implementation (docs/segmentation.md):
    # the file passes only as "no worse than onnxruntime's int8 of the same network", and says so.
    folder = tmp_path / "i8"
    argv = ["export", MODEL, "--target", target, "--precision", "int8", "--input", "128x256"]
    assert main([*argv, "--calib", str(calib_dir), "--out", str(folder)]) == 0
    assert "warning: int8 loses much of this network's signal" in capsys.readouterr().err
    m = manifest(folder)
    p = m["parity"]
    assert m["input"]["dtype"] == "int8" and p["passed"] and len(p["warnings"]) == 1
    ours, other = p["outputs"]["logits"], p["int8_reference"]["outputs"]["logits"]
    assert other["pixel_agreement"] < 0.75 and other["sqnr_db"] < 15.0  # measured 0.20, -0.4 dB
    assert ours["pixel_agreement"] >= other["pixel_agreement"] - precision_gates.PIXEL_MARGIN
    assert p["thresholds"]["min_pixel_agreement"] == pytest.approx(
        other["pixel_agreement"] - precision_gates.PIXEL_MARGIN
    )
    # The device runtime reads the int8 file to the same figure.
    got = open_runtime(str(folder), m).run(parity.sample_input(SIZE))["logits"]
    assert parity.pixel_agreement(torch_logits(), got) == pytest.approx(ours["pixel_agreement"], abs=1e-3)


# ------------------------------------------------- keypoint agreement (pose only), faults, every profile


def test_keypoint_agreement_is_recorded_as_not_applicable(seg_onnx, capsys):
    # The export's agreement block (edgepose.accuracy) is about people; a segmentation manifest says so,
    # and its fidelity figure is the parity block's pixel agreement.
    agreement = manifest(seg_onnx)["parity"]["agreement"]
    assert set(agreement) == {"not_applicable"} and "pixel agreement" in agreement["not_applicable"]
    assert main(["agree", str(seg_onnx)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keypoint agreement is for pose models" in err
    coco = seg_onnx.parent / "coco.json"
    coco.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]})
    )
    assert main(["eval", str(seg_onnx), "--coco", str(coco), "--images", str(seg_onnx)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scores keypoints" in err and "segmentation model" in err
    # The pose pipeline, handed a segmentation folder, says what it is.
    from edgepose.device.pipeline import PosePipeline

    with pytest.raises(EdgeposeError, match="is a segmentation model: it has classes per pixel"):
        PosePipeline(str(seg_onnx))


def test_a_failed_run_removes_the_masks_and_frames_it_made(seg_onnx, photo, tmp_path, capsys, monkeypatch):
    import errno
    import os

    from edgepose.device import atomic as device_atomic
    from edgepose.device.cli import main as device_main

    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (frames / name).write_bytes(photo.read_bytes())
    calls, real = [], device_atomic.os.replace

    def third_fails(src, dst):  # a's mask, a's overlay, then b's mask hits a full disk
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        return real(src, dst)

    monkeypatch.setattr(device_atomic.os, "replace", third_fails)
    args = ["--source", str(frames), "--out", str(tmp_path / "over"), "--mask", str(tmp_path / "masks")]
    assert device_main([*args, "--quiet"], model_dir=str(seg_onnx)) == 2
    err = capsys.readouterr().err
    assert "b.png: No space left on device" in err and err.count("run.py: error:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # a's mask and overlay went too
    monkeypatch.undo()
    assert device_main([*args, "--quiet"], model_dir=str(seg_onnx)) == 0  # control
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a.png", "b.png"]
    assert sorted(p.name for p in (tmp_path / "over").iterdir()) == ["a.jpg", "b.jpg"]


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


@pytest.mark.slow
@pytest.mark.parametrize("device", ["host", "rpi4", "snapdragon855", "jetson-nano"])
def test_every_profile_times_the_model_and_its_pipeline_with_agree(device, bench_cache, tmp_path, request):
    from edgepose.bench.profiles import load_profile
    from edgepose.bench.records import read_records

    if device != "host":  # the shipped profiles list both segmentation models
        assert {"litehrnet-18-seg", "litehrnet-30-seg"} <= set(load_profile(device).models)
    if load_profile(device).recipe.format == "tflite":  # its fp32 conversion: seg_rpi4's (tests/conftest.py)
        request.getfixturevalue("seg_rpi4")
    out = tmp_path / "r.jsonl"
    argv = ["bench", "--device", device, "--models", MODEL, "--input", "128x256", "--quick", "--agree"]
    assert main([*argv, "--out", str(out), "--cache", str(bench_cache), "--format", "none"]) == 0
    records = read_records([out])
    assert [r["timed"] for r in records] == [
        "model",
        "pipeline.pre",
        "pipeline.model",
        "pipeline.post",
        "pipeline.total",
    ]
    assert all(r["model"] == MODEL and r["stats"]["median_ms"] > 0 for r in records)
    # --agree: keypoint agreement does not apply, and the record says so rather than failing.
    assert all(set(r["agreement"]) == {"not_applicable"} for r in records)
