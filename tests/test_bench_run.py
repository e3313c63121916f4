"""`edgepose bench` end to end on a tiny LitePose-XS (64x64): locally, and over ssh to a real sshd on 127.0.0.1."""

import json
import sys
from pathlib import Path

import pytest
from test_bench_remote import sshd  # noqa: F401  (the module-scoped sshd fixture)

from edgepose import shipped
from edgepose.bench.records import read_records
from edgepose.cli import main
from edgepose.device.timing import STAT_KEYS

pytestmark = pytest.mark.slow
TINY = ["--models", "litepose-xs", "--input", "64x64", "--runs", "3", "--warmup", "1", "--format", "none"]


def bench_argv(device, out: Path, cache: Path, *extra: str) -> list[str]:
    """`edgepose bench` on the tiny model for ``device``, writing ``out``, exporting into ``cache``."""
    return ["bench", "--device", str(device), *TINY, "--out", str(out), "--cache", str(cache), *extra]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(scope="module")
def host_run(cache, tmp_path_factory):
    """One host benchmark (export + model + pipeline timing); its records file."""
    out = tmp_path_factory.mktemp("records") / "host.jsonl"
    assert main(bench_argv("host", out, cache)) == 0
    return out


def folder_of(cache: Path) -> Path:
    (folder,) = [
        p for p in cache.iterdir() if p.name.startswith("litepose-xs-") and p.name.endswith("-onnx-fp32")
    ]
    return folder


def test_host_records_carry_the_full_protocol(host_run, cache):
    records = read_records([host_run])
    assert [r["timed"] for r in records] == [
        "model",
        "pipeline.pre",
        "pipeline.model",
        "pipeline.post",
        "pipeline.total",
    ]
    r = records[0]
    manifest = json.loads((folder_of(cache) / "manifest.json").read_text())
    assert r["device"] == "host" and r["on_device"] is True and r["reached"] == "local"
    assert r["host"]["cpu"] and r["host"]["os"].startswith("Linux") and r["host"]["cores"] >= 1
    assert r["runtime"] == "onnxruntime" and r["runtime_version"] and r["precision"] == "fp32"
    assert "delegate" in r and (r["threads"] is None or r["threads"] >= 1)
    assert r["input_size"] == [64, 64] and r["batch"] == 1 and r["model"] == "litepose-xs"
    assert (
        r["runs"] == 3 and r["runs_done"] == 3 and r["warmup"] == 1 and r["tool"] == "edgepose_device.bench"
    )
    assert (
        set(STAT_KEYS) <= set(r["stats"])
        and 0 < r["stats"]["min_ms"] <= r["stats"]["median_ms"] <= r["stats"]["max_ms"]
    )
    assert r["artifacts"]["model.onnx"] == manifest["artifacts"]["model.onnx"]["sha256"]
    assert r["params"] == manifest["model"]["params"] and r["macs"] == manifest["model"]["macs"]
    assert r["date"].endswith("Z") and r["edgepose_version"]
    assert 10 < r["peak_rss_mb"] < 2000  # the timing process's own peak, not this (torch-sized) one


def test_matching_artifact_is_reused_and_records_append(host_run, cache):
    onnx = folder_of(cache) / "model.onnx"
    before = onnx.stat().st_mtime_ns
    assert main(bench_argv("host", host_run, cache, "--no-pipeline")) == 0
    assert onnx.stat().st_mtime_ns == before
    assert len(read_records([host_run])) == 6


def profile_copy(tmp_path: Path, base: str = "rpi4", **replace: str) -> Path:
    """devices/<base>.toml with some values replaced (recipe, python, workdir)."""
    lines = []
    for line in shipped.locate("devices", base)[0].read_text().splitlines():
        key = line.split("=")[0].strip()
        if key in replace:
            line = f"{key} = {json.dumps(replace[key])}"
        lines.append(line)
    path = tmp_path / f"{base}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_device_profile_run_here_is_labelled_with_this_cpu(cache, tmp_path):
    prof = profile_copy(tmp_path, recipe="onnx")  # the onnx recipe: TFLite is not needed for the labelling
    out = tmp_path / "r.jsonl"
    assert main(bench_argv(prof, out, cache, "--no-pipeline")) == 0
    (r,) = read_records([out])
    assert r["device"] == "rpi4" and r["on_device"] is False and r["threads"] == 2  # the onnx recipe's
    assert "not on the device" in r["notes"][0] and "Raspberry" not in r["host"]["cpu"]


def ssh_args(cfg) -> list[str]:
    args = ["--host", cfg["host"], "--port", str(cfg["port"]), "--identity", cfg["identity"]]
    for opt in cfg["options"]:
        args += ["--ssh-option", opt]
    return args


def test_bench_over_ssh_pushes_runs_and_fetches(sshd, cache, tmp_path):  # noqa: F811
    workdir = tmp_path / "device"
    prof = profile_copy(tmp_path, recipe="onnx", python=sys.executable, workdir=str(workdir))
    out = tmp_path / "r.jsonl"
    argv = bench_argv(prof, out, cache, *ssh_args(sshd))
    assert main(argv) == 0
    records = read_records([out])
    assert [r["timed"] for r in records][0] == "model" and len(records) == 5
    r = records[0]
    assert r["device"] == "rpi4" and r["on_device"] is True and r["reached"] == f"ssh {sshd['host']}"
    assert r["stats"]["median_ms"] > 0
    pushed = workdir / folder_of(cache).name
    assert (pushed / "model.onnx").is_file() and (pushed / "edgepose_device" / "bench.py").is_file()


def test_unreachable_device_fails_in_one_line(cache, tmp_path, capsys):
    ssh = ["--host", "nobody@127.0.0.1", "--port", "1", "--ssh-option", "ConnectTimeout=3"]
    argv = bench_argv("rpi4", tmp_path / "r.jsonl", cache, *ssh)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgepose: error: cannot reach nobody@127.0.0.1 over ssh")


def test_rpi4_profile_over_ssh(sshd, cache, tmp_path):  # noqa: F811
    """The issue's check: `edgepose bench --device rpi4 --host root@127.0.0.1` (TFLite export + runtime)."""
    prof = profile_copy(tmp_path, python=sys.executable, workdir=str(tmp_path / "pi"))
    tool = tmp_path / "benchmark_model"  # stands in for TFLite's binary: prints a real Pi 4 log
    tool.write_text(f"#!/bin/sh\ncat {Path(__file__).parent / 'data' / 'benchmark_model_rpi4_xnnpack.log'}\n")
    tool.chmod(0o755)
    out = tmp_path / "r.jsonl"
    argv = bench_argv(prof, out, cache, "--no-pipeline", "--benchmark-model", str(tool), *ssh_args(sshd))
    assert main(argv) == 0, out.read_text() if out.exists() else "no records"
    native, r = read_records([out])
    assert native["tool"] == "benchmark_model" and native["stats"]["mean_ms"] == 121.552
    assert (
        native["command"].startswith(f"{tmp_path / 'pi'}/")
        and "benchmark_model --graph=" in native["command"]
    )
    assert r["device"] == "rpi4" and r["on_device"] and r["format"] == "tflite"
    assert r["runtime"].startswith("tflite") and r["tool"] == "edgepose_device.bench"
    assert set(r["artifacts"]) == {"model.tflite"} and r["threads"] == 4


FAKE_TRTEXEC = """#!/bin/sh
# stands in for TensorRT's trtexec: records its arguments; "builds" a plan; prints a real Nano log
echo "$@" >> trtexec.args
case "$*" in *--saveEngine=*) printf PLAN > model.engine ;; esac
cat {log}
"""


def fake_trtexec(tmp_path: Path) -> Path:
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE_TRTEXEC.format(log=Path(__file__).parent / "data" / "trtexec_8.2_jetson_nano.log"))
    fake.chmod(0o755)
    return fake


def nano_profile(tmp_path: Path, python: str, **top: str) -> Path:
    """A Jetson Nano profile reached over ssh, with a stand-in trtexec as its native tool."""
    settings = "".join(f"{k} = {json.dumps(v)}\n" for k, v in top.items())
    path = tmp_path / "jetson-nano.toml"
    path.write_text(
        f'name = "jetson-nano"\nrecipe = "jetson"\n{settings}[hardware]\nint8 = false\n'
        f'[reach]\nmethod = "ssh"\npython = {json.dumps(python)}\nworkdir = {json.dumps(str(tmp_path / "nano"))}\n'
        f'setup = "true"\n[native]\ntool = "trtexec"\npath = {json.dumps(str(fake_trtexec(tmp_path)))}\n'
    )
    return path


def python_with(tmp_path: Path, *folders: Path) -> Path:
    """A python that finds ``folders`` first: the remote side's modules, the same on every machine."""
    python = tmp_path / "python-for-the-device"
    path = ":".join(str(f) for f in folders)
    python.write_text(f'#!/bin/sh\nPYTHONPATH={path} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


HIDE = Path(__file__).parent / "data" / "hide_gpu"


def test_jetson_over_ssh_builds_with_trtexec_sh_and_times_that_engine(sshd, cache, tmp_path, capsys):  # noqa: F811
    """engine_builder = "trtexec": the folder's own builder runs trtexec (a stand-in here) with the manifest's
    settings; trtexec then times that engine. The device's Python has no TensorRT (hidden, so that a machine
    with TensorRT behaves the same): the Python timer fails, which is reported, while trtexec's record is kept."""
    python = python_with(tmp_path, HIDE / "tensorrt_missing")
    prof = nano_profile(tmp_path, str(python), engine_builder="trtexec")
    out = tmp_path / "r.jsonl"
    assert main(bench_argv(prof, out, cache, "--no-pipeline", *ssh_args(sshd))) == 1
    assert "error: tensorrt is not installed" in capsys.readouterr().out  # failed for that reason only
    (r,) = read_records([out])
    assert r["tool"] == "trtexec" and r["runtime"] == "tensorrt" and r["runtime_version"] == "8.2.1"
    assert r["on_device"] and r["precision"] == "fp16" and r["stats"]["median_ms"] == 38.1128
    assert "--loadEngine=model.engine" in r["trtexec_command"] and "--iterations=3" in r["trtexec_command"]
    assert r["host"]["cpu"] and r["native"]["throughput_qps"] == 26.0465
    pushed = next((tmp_path / "nano").iterdir())
    build, timing = (pushed / "trtexec.args").read_text().splitlines()
    assert build.split() == ["--onnx=model.onnx", "--saveEngine=model.engine", "--workspace=256", "--fp16"]
    assert timing.startswith("--loadEngine=model.engine")  # times the engine it built, never another one
    engine = json.loads((pushed / "engine.json").read_text())
    assert engine["builder"] == "trtexec" and (pushed / "model.engine").read_bytes() == b"PLAN"


def test_jetson_over_ssh_builds_with_build_engine_py_and_a_stand_in_tensorrt(sshd, cache, tmp_path, capsys):  # noqa: F811
    """The default builder: the folder's build_engine.py with TensorRT's Python API (a stand-in module).
    pycuda is hidden (the same on a machine that has it), so the Python timer fails and says why."""
    python = python_with(tmp_path, Path(__file__).parent / "data" / "fake_tensorrt", HIDE / "pycuda_missing")
    prof = nano_profile(tmp_path, str(python))
    out = tmp_path / "r.jsonl"
    assert main(bench_argv(prof, out, cache, "--no-pipeline", *ssh_args(sshd))) == 1
    assert "error: pycuda is not installed" in capsys.readouterr().out
    (r,) = read_records([out])
    assert r["tool"] == "trtexec" and r["on_device"]
    pushed = next((tmp_path / "nano").iterdir())
    engine = json.loads((pushed / "engine.json").read_text())
    assert (
        engine["builder"] == "python"
        and engine["tensorrt_version"] == "8.2.1.8"
        and engine["workspace_mib"] == 256
    )
    assert (pushed / "model.engine").read_bytes() == b"PLAN"
    assert (pushed / "trtexec.args").read_text().startswith("--loadEngine=model.engine")  # trtexec only timed


def test_int8_on_the_nano_is_refused_before_anything_runs(cache, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(bench_argv("jetson-nano", out, cache, "--precision", "int8")) == 2
    assert "cannot run int8" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("device", ["host", "rpi4", "snapdragon855", "jetson-nano"])
def test_every_shipped_profile_benchmarks_here_labelled_as_host_run(device, cache, tmp_path, monkeypatch):
    # TensorRT hidden (None in sys.modules: not importable, find_spec finds nothing), so that a machine that
    # has it takes the same stand-in path; the TensorRT run itself is test_build_engine's tensorrt tests.
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "r.jsonl"
    assert main(bench_argv(device, out, cache, "--quick", "--no-pipeline")) == 0
    (r,) = read_records([out])
    assert r["device"] == device and r["stats"]["median_ms"] > 0
    assert r["on_device"] is (device == "host")
    if device == "jetson-nano":  # no TensorRT: the same ONNX, timed with onnxruntime, and said so
        assert r["runtime"] == "onnxruntime" and r["stand_in_for"] == "tensorrt" and r["format"] == "tensorrt"
        assert any("tensorrt is not installed here" in n for n in r["notes"])
    if device in ("rpi4", "snapdragon855"):
        assert r["runtime"].startswith("tflite") and r["precision"] == (
            "fp32" if device == "rpi4" else "fp16"
        )


def test_a_relative_cache_folder_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(bench_argv("host", Path("r.jsonl"), Path("rel-cache"), "--no-pipeline")) == 0
    (r,) = read_records([tmp_path / "r.jsonl"])
    assert r["timed"] == "model" and not list((tmp_path / "rel-cache").rglob("records.jsonl"))
