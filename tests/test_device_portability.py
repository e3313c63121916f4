"""The device package runs without torch and on Python 3.6: vermin, an import audit, and isolated runs."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_device_runtime import exported, make_artifact
from test_run_script import count_frames, write_clip

import edgepose

DEVICE = Path(edgepose.__file__).parent / "device"
# What device code may import: the standard library, numpy, OpenCV and the runtimes.
ALLOWED = {"numpy", "cv2", "onnxruntime", "ai_edge_litert", "tflite_runtime", "tensorrt", "pycuda"}


def _vermin(*args):
    # vermin has no `python -m vermin`; run its console script from this interpreter's bin folder
    script = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120)


def test_device_code_needs_at_most_python_36():
    pytest.importorskip("vermin", reason="vermin is a dev dependency (pip install vermin)")
    proc = _vermin("-t=3.6-", "--no-tips", "--violations", "--eval-annotations", str(DEVICE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vermin_does_catch_newer_syntax(tmp_path):
    pytest.importorskip("vermin", reason="vermin is a dev dependency (pip install vermin)")
    bad = tmp_path / "bad.py"
    bad.write_text("import dataclasses\nif (n := 3):\n    print(f'{n=}')\n")
    assert _vermin("-t=3.6-", "--no-tips", "--violations", str(bad)).returncode != 0


def test_device_imports_are_stdlib_numpy_opencv_runtimes_or_relative():
    offenders = []
    for path in sorted(DEVICE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    continue  # relative: inside the device package
                names = [node.module or ""]
                if node.module == "__future__":
                    offenders.append(f"{path.name}: from __future__ (Python 3.6 has no annotations future)")
                    continue
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    offenders.append(f"{path.relative_to(DEVICE)}:{node.lineno} imports {name}")
    assert not offenders, offenders


# Run in a subprocess with torch and the host package made unimportable.
BLOCKED = """
import importlib, pkgutil, sys
sys.modules["torch"] = None
sys.modules["edgepose"] = None
folder = sys.argv[1]
sys.path.insert(0, folder)
import edgepose_device
for info in pkgutil.walk_packages(edgepose_device.__path__, "edgepose_device."):
    importlib.import_module(info.name)
from edgepose_device.cli import main
sys.exit(main(sys.argv[2:], model_dir=folder))
"""


def test_package_imports_and_runs_with_torch_blocked(tmp_path):
    folder, _ = make_artifact(tmp_path / "art")
    clip = write_clip(tmp_path / "clip.avi", frames=2)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKED,
            str(folder),
            "--source",
            str(clip),
            "--json",
            str(tmp_path / "p.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2


def _device_only_env(tmp_path):
    """A fresh venv that sees only numpy, OpenCV and onnxruntime (linked from this one; no download)."""
    import cv2
    import numpy
    import onnxruntime

    site = tmp_path / "device-site"
    site.mkdir()
    for module in (numpy, cv2, onnxruntime):
        src = Path(module.__file__).parent
        (site / src.name).symlink_to(src)
        for libs in src.parent.glob("*.libs"):  # the wheels' bundled shared libraries
            if (
                libs.name.split(".")[0] in ("numpy", "opencv_python_headless")
                and not (site / libs.name).exists()
            ):
                (site / libs.name).symlink_to(libs)
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "device_deps.pth").write_text(str(site) + "\n")
    return python


@pytest.mark.slow
def test_exported_folder_runs_in_a_venv_without_torch(tmp_path):
    """The issue's 'done when': export, then run the folder's script with only the device dependencies."""
    folder, _ = exported("litepose-xs", "onnx", (128, 128), "crowdpose")  # shared with test_device_runtime
    python = _device_only_env(tmp_path)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, env=clean)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    clip = write_clip(tmp_path / "clip.avi", frames=3)
    proc = subprocess.run(
        [
            str(python),
            str(folder / "run.py"),
            "--source",
            str(clip),
            "--out",
            str(tmp_path / "out.mp4"),
            "--json",
            str(tmp_path / "poses.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert count_frames(tmp_path / "out.mp4") == 3
    assert len((tmp_path / "poses.jsonl").read_text().splitlines()) == 3
