"""The device path on an emulated Raspberry Pi 4: arm64 Debian bookworm under qemu-aarch64 (devices/emulated/).

``make emulated-rpi4`` builds it once (cached) and starts its sshd on 127.0.0.1:2222; the fixture below
brings it up the same way, or skips with the script's one-line reason when it cannot work here (not
root, no binfmt_misc, no network to build it). Exported folders are pushed with scp and run with ssh as
the ``pi`` user, like a Pi user would: ``run.py`` on a photo and a short video, and the model file's
raw outputs on one fixed input, compared with this x86 machine's outputs of the same file and with the
PyTorch reference, within the gates its manifest records (XNNPACK's and onnxruntime's ARM kernels are
other code than their x86 kernels: the x86 parity figures alone do not vouch for the Pi).

Set EDGEPOSE_EMU_FIGURES=FILE to append the figures as JSON lines (docs/emulated.md).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepose.device.machine import emulation, host_info

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "devices" / "emulated" / "rpi4.sh"
RAW_OUTPUTS = REPO / "devices" / "emulated" / "raw_outputs.py"
VIDEO_FRAMES = 2  # every frame costs seconds under emulation
# Half the default inputs: qemu runs a frame 4x faster, and the ARM kernels and run.py are the same code.
EXPORT_INPUT = {"litepose-xs": (128, 128), "litehrnet-18": (128, 96)}

INTEL_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"
PI_CPUINFO = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"


# ------------------------------------------------------------------- emulation() (fast, everywhere)


def test_an_arm_userland_on_an_x86_machine_is_emulated():
    assert emulation("aarch64", INTEL_CPUINFO, "") == "qemu-aarch64"  # QEMU < 8.2: the host's cpuinfo
    assert emulation("armv7l", INTEL_CPUINFO.replace("GenuineIntel", "AuthenticAMD"), "") == "qemu-armv7l"
    assert emulation("aarch64", PI_CPUINFO, "x86_64") == "qemu-aarch64"  # QEMU 8.2+ emulates cpuinfo


def test_native_machines_are_not_emulated():
    assert emulation("aarch64", PI_CPUINFO, "aarch64") is None  # a real Pi 4 (Cortex-A72)
    assert emulation("armv8l", PI_CPUINFO, "aarch64") is None  # 32-bit userland on a 64-bit Pi kernel
    assert emulation("x86_64", INTEL_CPUINFO, "x86_64") is None
    assert emulation("aarch64", "", "") is None  # nothing readable: no claim
    assert "emulated" in host_info() and host_info()["emulated"] == emulation()


# ------------------------------------------------------- the script's one-line refusals (fast)


def run_script(*args: str, env: dict | None = None, as_nobody: bool = False) -> subprocess.CompletedProcess:
    cmd = [str(SCRIPT), *args]
    if as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_without_root_it_refuses_in_one_line():
    proc = run_script("up", as_nobody=os.geteuid() == 0)
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "emulated-rpi4: needs root (debootstrap, chroot, binfmt_misc): run it as root"
    ]


def test_bad_usage_and_a_relative_cache_are_refused():
    assert run_script("build").returncode == 2
    if os.geteuid() == 0:
        proc = run_script("up", env={"EDGEPOSE_EMU_CACHE": "relative/dir"})
        assert proc.returncode == 3 and "must be an absolute path" in proc.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("debootstrap") and os.path.exists("/usr/bin/qemu-aarch64-static")),
    reason="needs root, debootstrap and qemu-user-static to get as far as the network check",
)
def test_no_network_to_the_mirror_is_one_line_and_builds_nothing(tmp_path):
    cache = tmp_path / "cache"
    proc = run_script(
        "up", env={"EDGEPOSE_EMU_CACHE": str(cache), "EDGEPOSE_EMU_MIRROR": "http://127.0.0.1:9/debian"}
    )
    if "binfmt_misc" in proc.stderr:  # a container without binfmt_misc stops one step earlier
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        "emulated-rpi4: cannot reach the Debian mirror http://127.0.0.1:9/debian (needed once, to build the root file system)"
    ]
    assert not (cache / "rootfs").exists() and not (cache / "rootfs.new").exists()


def test_the_cpuinfo_filter_keeps_everything_else():
    text = (
        "Error in cpuinfo: failed to parse the list of possible processors in /sys/devices/system/cpu/possible\n"
        "onnxruntime cpuid_info warning: Unknown CPU vendor. cpuinfo_vendor value: 0\n"
        "onnxruntime warning: cpuinfo_initialize failed. May cause CPU EP performance degradation\n"
        "error: no manifest.json in x\n"
    )
    assert without_cpuinfo_warnings(text) == "error: no manifest.json in x\n"


# ---------------------------------------------------------------------------- the emulated Pi


class EmulatedPi:
    """ssh / scp into the emulated Pi as ``pi``, through the ssh config its script wrote."""

    def __init__(self, facts: dict):
        self.facts = facts
        self.config = facts["ssh_config"]

    def ssh(self, command: str, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["ssh", "-F", self.config, "emulated-rpi4", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        proc.stderr = without_cpuinfo_warnings(proc.stderr)
        return proc

    def scp(self, *args: str) -> None:
        proc = subprocess.run(["scp", "-F", self.config, "-q", "-r", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    def push(self, local: Path, remote: str) -> None:
        self.scp(str(local), f"emulated-rpi4:{remote}")

    def fetch(self, remote: str, local: Path) -> None:
        self.scp(f"emulated-rpi4:{remote}", str(local))


def without_cpuinfo_warnings(text: str) -> str:
    """The script's own filter (one home for the pattern) over ``text``."""
    return subprocess.run([str(SCRIPT), "filter"], input=text, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def emulated_pi() -> EmulatedPi:
    if not sys.platform.startswith("linux"):
        pytest.skip("the emulated Raspberry Pi needs Linux (chroot, binfmt_misc, qemu-user-static)")
    proc = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=3600)
    reason = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
    if proc.returncode == 3:  # cannot work on this machine: the script says why in one line
        pytest.skip(reason)
    assert proc.returncode == 0, reason
    facts = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    return EmulatedPi(facts)


@pytest.mark.emulated
def test_it_is_an_arm64_userland_under_qemu_and_records_say_so(emulated_pi, tmp_path):
    proc = emulated_pi.ssh("uname -m && python3 -c 'import sys; print(sys.version_info[:2])'")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["aarch64", "(3, 11)"]  # Raspberry Pi OS bookworm's Python
    # The device package's own host_info(), run there: what every record made there carries.
    assert emulated_pi.ssh("rm -rf edgepose_device").returncode == 0
    emulated_pi.push(REPO / "edgepose" / "device", "edgepose_device")
    proc = emulated_pi.ssh(
        "python3 -c 'import json; from edgepose_device.machine import host_info; print(json.dumps(host_info()))'"
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["machine"] == "aarch64" and info["emulated"] == "qemu-aarch64"


# ------------------------------------------------------------- exports, media and the comparisons


def export_all(model: str, out: Path, calib: Path) -> dict[str, Path]:
    """The rpi4 TFLite exports (fp32, fp16, int8) and the ONNX export of ``model``.

    fp16 and int8 start from the fp32 file litert-torch made for this same seeded model (the suite runs
    each distinct conversion once: tests/conftest.py); quantisation, the parity gate and the folder are real.
    """
    from functools import partial

    from edgepose.export.pipeline import export_model

    export = partial(export_model, model, input_size=EXPORT_INPUT[model])
    return {
        "tflite-fp32": export("rpi4", out=out / "tflite-fp32"),
        "tflite-fp16": export("rpi4", precision="fp16", out=out / "tflite-fp16"),
        "tflite-int8": export("rpi4", precision="int8", calib=calib, out=out / "tflite-int8"),
        "onnx-fp32": export("onnx", out=out / "onnx-fp32"),
    }


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A photo, a short video (the photo panning), calibration photos and nothing else (skimage photos)."""
    from skimage import data

    from edgepose.export import calibration

    root = tmp_path_factory.mktemp("media")
    photo = np.ascontiguousarray(data.astronaut()[..., ::-1])
    cv2.imwrite(str(root / "photo.jpg"), photo)
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    assert writer.isOpened()
    for i in range(VIDEO_FRAMES):
        writer.write(cv2.resize(photo[16 * i : 384 + 16 * i, 16 * i : 464 + 16 * i], (320, 240)))
    writer.release()
    calibration.write_sample_images(root / "calib", count=8)
    return root


def fixed_input(manifest: dict) -> np.ndarray:
    """The manifest's parity photo as an NCHW batch (what the export's gate was measured on)."""
    from edgepose.export import parity

    shape = manifest["input"]["shape"]
    hw = shape[1:3] if manifest["input"]["layout"] == "NHWC" else shape[2:4]
    return parity.sample_input(tuple(hw), batch=shape[0])


def run_raw_outputs_here(folder: Path, inp: Path, out: Path) -> dict[str, np.ndarray]:
    proc = subprocess.run(
        [sys.executable, str(RAW_OUTPUTS), str(folder), str(inp), str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return {p.stem: np.load(p) for p in out.glob("*.npy")}


def pytorch_outputs(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """The export's own reference: the same seeded random-weight model in PyTorch fp32."""
    import torch

    from edgepose.export.pipeline import RANDOM_SEED
    from edgepose.models import build_seeded

    net = build_seeded(model, RANDOM_SEED)  # the export's own random-weight model
    with torch.no_grad():
        out = net(torch.from_numpy(x))
    out = out if isinstance(out, tuple) else (out,)
    return {o.name: t.numpy() for o, t in zip(net.spec.outputs, out)}


def gate_failures(manifest: dict, reference: dict, arm: dict) -> tuple[dict, list[str]]:
    """aarch64 outputs against ``reference``, held to the gates the file's manifest records."""
    from edgepose.export import parity

    recorded = manifest["parity"]
    joints = manifest["model"]["num_joints"]
    figures, failures = {}, []
    assert set(arm) == set(reference)
    for name, ref in reference.items():
        limits = dict(recorded["thresholds"])
        limit = recorded["outputs"].get(name, {}).get("max_abs_diff_limit")  # the fp32 noise allowance
        if limit is not None:
            limits["max_abs_diff"] = limit
        result = parity.gate({name: ref}, {name: arm[name]}, limits, {name: joints})
        figures[name] = {**result["outputs"][name], "gate": limits, "manifest": recorded["outputs"].get(name)}
        failures += result["failures"]
    return figures, failures


def record_figures(model: str, variant: str, against: str, figures: dict) -> None:
    path = os.environ.get("EDGEPOSE_EMU_FIGURES")
    if path:
        with open(path, "a") as fh:
            for name, f in figures.items():
                line = {"model": model, "variant": variant, "aarch64_vs": against, "output": name, **f}
                fh.write(json.dumps(line) + "\n")


def check_run_outputs(local: Path, kind: str) -> list[str]:
    """What run.py wrote on the Pi for one folder: JSON lines per frame, the overlay photo and video."""
    problems = []
    photo_lines = (local / "photo.jsonl").read_text().splitlines()
    clip_lines = (local / "clip.jsonl").read_text().splitlines()
    if len(photo_lines) != 1 or len(clip_lines) != VIDEO_FRAMES:
        problems.append(f"{kind}: {len(photo_lines)} photo / {len(clip_lines)} video JSON lines")
    for line in photo_lines + clip_lines:
        record = json.loads(line)
        if not {"frame", "people", "timings_ms"} <= set(record) or not isinstance(record["people"], list):
            problems.append(f"{kind}: bad JSON line {line[:80]}")
    overlay = cv2.imread(str(local / "photo_pose.jpg"))
    if overlay is None or overlay.shape != (512, 512, 3):
        problems.append(f"{kind}: overlay photo missing or resized")
    video = cv2.VideoCapture(str(local / "clip_pose.mp4"))
    frames = 0
    while video.read()[0]:
        frames += 1
    if frames != VIDEO_FRAMES:
        problems.append(f"{kind}: overlay video has {frames} frames, expected {VIDEO_FRAMES}")
    return problems


DEVICE_JOB = (
    "cd {dir} && python3 raw_outputs.py {kind} input.npy {kind}.raw"
    " && python3 {kind}/run.py --source photo.jpg --out {kind}.out/photo_pose.jpg --json {kind}.out/photo.jsonl"
    " && python3 {kind}/run.py --source clip.mp4 --out {kind}.out/clip_pose.mp4 --json {kind}.out/clip.jsonl"
    " && python3 -c 'import platform; print(platform.machine())'"
)


@pytest.mark.emulated
@pytest.mark.slow
@pytest.mark.parametrize("model", ["litepose-xs", "litehrnet-18"])
def test_exports_run_on_aarch64_and_match_x86_within_their_gates(model, emulated_pi, media, tmp_path):
    folders = export_all(model, tmp_path / "exports", media / "calib")
    remote = f"work/{model}"
    emulated_pi.ssh(f"rm -rf {shlex.quote(remote)} && mkdir -p work")
    bundle = tmp_path / model  # one scp: every folder, its fixed input, the media and the helper
    bundle.mkdir()
    x = fixed_input(json.loads((folders["tflite-fp32"] / "manifest.json").read_text()))
    np.save(bundle / "input.npy", x)  # every file of a model takes the same input
    torch_ref = pytorch_outputs(model, x)
    x86 = {}
    for kind, folder in folders.items():
        (bundle / f"{kind}.out").mkdir()
        x86[kind] = run_raw_outputs_here(folder, bundle / "input.npy", tmp_path / f"x86-{kind}")
        subprocess.run(["cp", "-r", str(folder), str(bundle / kind)], check=True)
    for name in ("photo.jpg", "clip.mp4"):
        (bundle / name).write_bytes((media / name).read_bytes())
    (bundle / "raw_outputs.py").write_bytes(RAW_OUTPUTS.read_bytes())
    emulated_pi.push(bundle, remote)

    problems = []
    for kind, folder in folders.items():
        proc = emulated_pi.ssh(DEVICE_JOB.format(dir=shlex.quote(remote), kind=kind))
        if proc.returncode != 0 or proc.stdout.split()[-1:] != ["aarch64"]:
            problems.append(f"{kind}: on the Pi: {proc.stderr.strip()[-500:]}")
            continue
        local = tmp_path / f"arm-{kind}"
        local.mkdir()
        emulated_pi.fetch(f"{remote}/{kind}.raw", local / "raw")
        emulated_pi.fetch(f"{remote}/{kind}.out", local / "out")
        arm = {p.stem: np.load(p) for p in (local / "raw").glob("*.npy")}
        manifest = json.loads((folder / "manifest.json").read_text())
        for against, reference in (("x86", x86[kind]), ("pytorch", torch_ref)):
            figures, failures = gate_failures(manifest, reference, arm)
            record_figures(model, kind, against, figures)
            problems += [f"{kind}: aarch64 vs {against}: {f}" for f in failures]
        problems += check_run_outputs(local / "out", kind)
    assert not problems, "\n".join(problems)


# ----------------------------------------------------- edgepose bench --device rpi4 over ssh, emulated

# Under qemu a LitePose-XS frame at 256x256 takes 10-40 s (4 emulated threads on this host's cores):
# the bench runs small inputs on one thread so that it checks the path, not qemu's speed. The sizes are
# those of test_bench_run.py (LitePose) and of the export test above (Lite-HRNet): the same conversions.
BENCH_INPUT = {"litepose-xs": (64, 64), "litehrnet-18": EXPORT_INPUT["litehrnet-18"]}


@pytest.mark.emulated
@pytest.mark.slow
@pytest.mark.parametrize(
    "model, runtime", [("litepose-xs", None), ("litepose-xs", "onnxruntime"), ("litehrnet-18", None)]
)
def test_bench_over_ssh_on_the_emulated_pi_records_aarch64_and_never_the_pis_latency(
    model, runtime, emulated_pi, tmp_path
):
    from edgepose.bench.papers import load_paper
    from edgepose.bench.records import read_records
    from edgepose.bench.report import build_table
    from edgepose.cli import main

    records = tmp_path / "emulated.jsonl"
    args = ["bench", "--device", "rpi4", "--ssh-config", emulated_pi.config, "--host", "emulated-rpi4",
            "--models", model, "--input", "{}x{}".format(*BENCH_INPUT[model]), "--threads", "1", "--runs", "2", "--warmup", "1",
            "--cache", str(tmp_path / "cache"), "--out", str(records)]  # fmt: skip
    if runtime:
        args += ["--runtime", runtime]
    assert main(args) == 0
    recs = read_records([records])
    assert {r["timed"] for r in recs} >= {"model", "pipeline.total"}
    for r in recs:
        assert r["device"] == "rpi4" and r["reached"] == "ssh emulated-rpi4"
        assert r["host"]["machine"] == "aarch64" and r["host"]["emulated"] == "qemu-aarch64"
        assert r["on_device"] is False  # the Pi's software, not its speed
        assert r["runtime"].startswith(runtime or "tflite") and r["threads"] == 1
        assert r["input_size"] == list(BENCH_INPUT[model]) and r["stats"]["median_ms"] > 0
    if model == "litepose-xs" and runtime is None:  # the report keeps it out of the paper's Pi column
        paper = load_paper("litepose")
        table = build_table(paper, paper.table("crowdpose")[0], recs, count_macs=False)
        assert any("rpi4 emulated (qemu-aarch64" in h for h in table.header)
