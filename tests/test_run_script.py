"""The artifact folder's run.py end to end (video, image, folder, boxes) and its bad-input errors."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
from test_device_runtime import make_artifact

from edgepose.cli import main as edgepose_main
from edgepose.device.cli import main as device_main


def write_clip(path, frames=5, size=(160, 120), fps=10):
    """A short MJPG video of the astronaut photo panning right."""
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(cv2.resize(img[:, i * 10 : i * 10 + 400], size))
    writer.release()
    return path


def count_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def run_py(folder, *args, cwd=None):
    """Run the folder's own run.py in a subprocess, as a user on the device would."""
    return subprocess.run(
        [sys.executable, str(folder / "run.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture(scope="module")
def bottomup(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("bu") / "tiny-bu")[0]


@pytest.fixture(scope="module")
def topdown(tmp_path_factory):
    return make_artifact(
        tmp_path_factory.mktemp("td") / "tiny-td", "top-down", size=(64, 48), dynamic_batch=True
    )[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.avi")


def test_video_to_annotated_video_and_json_lines(bottomup, clip, tmp_path):
    out, poses = tmp_path / "out.mp4", tmp_path / "poses.jsonl"
    proc = run_py(bottomup, "--source", clip, "--out", out, "--json", poses, "--flip")
    assert proc.returncode == 0, proc.stderr
    assert "5 frame(s) with onnxruntime" in proc.stdout
    # Random weights are said once; the one FPS figure says what it covers, the same everywhere.
    assert proc.stderr.count("was exported with random weights: the poses it finds are meaningless") == 1
    summary_fps = float(proc.stdout.split("per frame; ")[1].split(" FPS (pre+model+post)")[0])
    assert count_frames(out) == 5
    lines = [json.loads(line) for line in poses.read_text().splitlines()]
    assert [rec["frame"] for rec in lines] == [0, 1, 2, 3, 4]
    mean_ms = sum(sum(rec["timings_ms"].values()) for rec in lines) / len(lines)
    assert summary_fps == pytest.approx(1000.0 / mean_ms, rel=0.01, abs=0.06)
    for rec in lines:
        assert set(rec["timings_ms"]) == {"pre", "model", "post"} and rec["fps_covers"] == "pre+model+post"
        assert rec["fps"] == pytest.approx(1000.0 / sum(rec["timings_ms"].values()), rel=1e-3, abs=0.01)
        for person in rec["people"]:
            assert len(person["keypoints"]) == 14 and all(len(k) == 3 for k in person["keypoints"])
            xs = [k[0] for k in person["keypoints"] if k[2] > 0]
            assert all(-1 <= x <= 161 for x in xs)  # back in frame pixels, not model pixels
    assert not list(tmp_path.glob(".*partial*"))  # temporary files were renamed into place


def test_image_folder_and_boxes_for_top_down(topdown, tmp_path):
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[::4, ::4])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"format": "xywh", "boxes": [[10, 10, 60, 100, 0.9], [70, 5, 50, 90]]}))
    proc = run_py(
        topdown,
        "--source",
        photo,
        "--out",
        tmp_path / "photo_pose.jpg",
        "--json",
        tmp_path / "p.jsonl",
        "--boxes",
        boxes,
        "--dark",
    )
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(tmp_path / "photo_pose.jpg")).shape == (128, 128, 3)
    (rec,) = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [p["box"] for p in rec["people"]] == [[10, 10, 70, 110], [70, 5, 120, 95]]
    assert len(rec["people"][0]["keypoints"]) == 17
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(photo, folder / "a.jpg")
    shutil.copy(photo, folder / "b.png")
    proc = run_py(topdown, "--source", folder, "--out", tmp_path / "annotated", "--flip")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["a.jpg", "b.png"]


def test_host_infer_command_runs_the_same_pipeline(bottomup, tmp_path, capsys):
    """`edgepose infer` on the host and the folder's own run.py give the same poses for the same photo."""
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[::4, ::4])
    host, device = tmp_path / "host.jsonl", tmp_path / "device.jsonl"
    assert edgepose_main(["infer", str(bottomup), "--source", str(photo), "--json", str(host)]) == 0
    proc = run_py(bottomup, "--source", photo, "--json", device)
    assert proc.returncode == 0, proc.stderr
    (ours,), (theirs,) = ([json.loads(line) for line in p.read_text().splitlines()] for p in (host, device))
    assert ours["people"], "a photo the tiny model finds nobody in compares nothing"
    assert ours["people"] == theirs["people"]
    assert edgepose_main(["infer", str(bottomup), "--source", str(photo), "--weights", "x.pth"]) == 2
    assert "--weights is for --backend torch" in capsys.readouterr().err


def _one_line_error(proc, text):
    assert proc.returncode == 2
    ours = [line for line in proc.stderr.splitlines() if line.startswith("run.py")]
    # (FFmpeg may log its own line about a broken file before ours)
    assert len(ours) == 1 and text in ours[0] and proc.stderr.strip().endswith(ours[0]), proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_inputs_fail_with_one_line(bottomup, clip, tmp_path, capsys):
    def fails(text, *args, folder=bottomup):
        assert device_main([str(a) for a in args], model_dir=str(folder)) == 2
        err = capsys.readouterr().err
        ours = [line for line in err.splitlines() if line.startswith("run.py: error")]
        assert len(ours) == 1 and text in ours[0], err

    fails("source not found", "--source", tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    fails("cannot open video", "--source", broken)
    bad_img = tmp_path / "bad.jpg"
    bad_img.write_bytes(b"nope")
    fails("cannot read image", "--source", bad_img)
    fails("cannot open camera 7", "--source", "7")
    fails("--out for a video", "--source", clip, "--out", tmp_path / "x.jpg")
    fails("boxes file not found", "--source", clip, "--boxes", tmp_path / "none.json")
    fails("--boxes is for top-down models", "--source", clip, "--boxes", _write(tmp_path / "b.json", "[]"))
    fails("no manifest.json", "--source", clip, folder=tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(bottomup, copy)
    with open(copy / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x01\x02")
    fails("does not match its manifest", "--source", clip, folder=copy)
    fails("backend 'tflite' cannot run this onnx artifact", "--source", clip, "--backend", "tflite")


def _write(path, text):
    path.write_text(text)
    return path


def test_run_py_reports_a_missing_runtime_in_one_line(bottomup, clip, tmp_path):
    _one_line_error(run_py(bottomup, "--source", tmp_path / "missing.mp4"), "source not found")
    blocked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['onnxruntime'] = None; sys.path.insert(0, sys.argv[1]); "
            "from edgepose_device.cli import main; sys.exit(main(sys.argv[2:], model_dir=sys.argv[1]))",
            str(bottomup),
            "--source",
            str(clip),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _one_line_error(blocked, "onnxruntime is not installed")


@pytest.mark.parametrize("width", [160, 640, 1920])
def test_the_overlay_text_sits_inside_its_box(width):
    """The label box is measured by OpenCV at the thickness the text is drawn with (OpenCV 4 and 5 alike)."""
    from edgepose.device.draw import draw_timings

    frame = np.full((max(120, width // 2), width, 3), 255, np.uint8)
    draw_timings(
        frame, {"pre": 1.0, "model": 22.5, "post": 3.25}, 37.2, "RANDOM WEIGHTS: poses are meaningless"
    )
    dark = np.argwhere(frame.max(axis=2) == 0)  # the box
    (y0, _), (y1, x1) = dark.min(axis=0), dark.max(axis=0)
    text = np.argwhere((frame.min(axis=2) > 200) & (np.arange(frame.shape[1])[None, :] <= x1))
    inside = text[(text[:, 0] >= y0) & (text[:, 0] <= y1)]
    assert len(inside) > 50  # white text drawn on the box
    assert x1 < width and y1 < frame.shape[0]
    # no white text pixel leaks out of the box's right edge on its rows
    row_band = frame[y0 : y1 + 1, x1 + 1 : x1 + 40]
    assert row_band.size == 0 or row_band.min() > 200
