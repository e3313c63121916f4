"""Installed like a library: the wheel carries the shipped TOML files; a core install degrades cleanly."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgepose import shipped

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_every_recipe_profile_and_paper_table(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("edgepose-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind, inside in (("recipes", "export"), ("devices", "devices"), ("papers", "papers")):
        shipped_names = shipped.names(kind)
        assert shipped_names, kind
        for name in shipped_names:
            assert f"edgepose/_data/{inside}/{name}.toml" in names, (kind, name)
    assert "edgepose/models/weights_catalog.toml" in names
    assert (
        "edgepose/device/formats.py" in names and "edgepose/models/configs/litepose/search-XS.json" in names
    )
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    assert not (REPO / "build").exists()  # building wrote nothing into the source tree


CORE_ONLY = """
import sys
for name in ["cv2", "onnx", "onnxruntime", "onnxslim", "skimage", "litert_torch", "ai_edge_litert",
             "ai_edge_quantizer", "matplotlib", "gdown", "ptflops"]:
    sys.modules[name] = None  # as after `pip install edgepose` with no extras
from edgepose.cli import main
sys.exit(main(sys.argv[1:]))
"""


def core(*argv, cwd):
    return subprocess.run([sys.executable, "-c", CORE_ONLY, *argv], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "argv", [["--help"], ["models", "--family", "litepose"], ["macs", "litepose-xs"], ["targets"]]
)
def test_a_core_install_runs_what_needs_no_extra(argv, tmp_path):
    proc = core(*argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv, extra",
    [
        (["export", "litepose-xs", "--target", "onnx"], "export"),
        (["infer", "folder", "--source", "x.jpg"], "device"),
        (["bench", "--quick"], "device"),
    ],
)
def test_a_core_install_names_the_extra_a_command_needs(argv, extra, tmp_path):
    proc = core(*argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"edgepose: error: `edgepose {argv[0]}` needs cv2, which is not installed: pip install 'edgepose[{extra}]'"
    ]
    assert not any(tmp_path.iterdir())  # nothing written
