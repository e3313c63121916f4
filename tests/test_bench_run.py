"""`edgepose bench` end to end on a tiny LitePose-XS (64x64): locally, and over ssh to a real sshd on 127.0.0.1."""

import json
import sys
from pathlib import Path

import pytest
from test_bench_remote import sshd  # noqa: F401  (the module-scoped sshd fixture)

from edgepose.bench.profiles import devices_dir
from edgepose.bench.records import read_records
from edgepose.cli import main
from edgepose.device.bench import STAT_KEYS

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
    assert "delegate" in r and r["threads"] is None or r["threads"] >= 1
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
    """devices/<base>.toml with some values replaced (recipe, python, workdir, path, setup)."""
    lines = []
    for line in (devices_dir() / f"{base}.toml").read_text().splitlines():
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
    assert r["device"] == "rpi4" and r["on_device"] is False and r["threads"] == 4
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
    from edgepose.errors import EdgeposeError
    from edgepose.export.recipe import known_recipes

    if "rpi4" not in known_recipes():
        pytest.skip("the rpi4 (TFLite) export recipe is not in this tree yet")
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        try:
            import tflite_runtime  # noqa: F401
        except ImportError:
            pytest.skip("no TFLite runtime (ai-edge-litert / tflite-runtime) to play the Pi's part")
    prof = profile_copy(tmp_path, python=sys.executable, workdir=str(tmp_path / "pi"))
    tool = tmp_path / "benchmark_model"  # stands in for TFLite's binary: prints a real Pi 4 log
    tool.write_text(f"#!/bin/sh\ncat {Path(__file__).parent / 'data' / 'benchmark_model_rpi4_xnnpack.log'}\n")
    tool.chmod(0o755)
    out = tmp_path / "r.jsonl"
    argv = bench_argv(prof, out, cache, "--no-pipeline", "--benchmark-model", str(tool), *ssh_args(sshd))
    try:
        code = main(argv)
    except EdgeposeError as exc:  # pragma: no cover - depends on the TFLite exporter's extras
        pytest.skip(f"TFLite export unavailable here: {exc}")
    assert code == 0, out.read_text() if out.exists() else "no records"
    native, r = read_records([out])
    assert native["tool"] == "benchmark_model" and native["stats"]["mean_ms"] == 121.552
    assert native["command"].startswith(f"{tmp_path / 'pi'}/benchmark_model --graph=")
    assert r["device"] == "rpi4" and r["on_device"] and r["format"] == "tflite"
    assert r["runtime"].startswith("tflite") and r["tool"] == "edgepose_device.bench"
    assert set(r["artifacts"]) == {"model.tflite"} and r["threads"] == 4


def test_jetson_over_ssh_builds_with_trtexec_and_keeps_its_record(sshd, cache, tmp_path):  # noqa: F811
    """trtexec runs on the device (a stand-in printing TRT 8.2 output here); without TensorRT the Python
    timer then fails, which is reported, while trtexec's record is kept."""
    fake = tmp_path / "trtexec"
    log = Path(__file__).parent / "data" / "trtexec_8.2_jetson_nano.log"
    fake.write_text(f'#!/bin/sh\necho "$@" > trtexec.args\ntouch model.engine\ncat {log}\n')
    fake.chmod(0o755)
    prof = profile_copy(tmp_path, "jetson-nano", python=sys.executable, workdir=str(tmp_path / "nano"),
                        path=str(fake), setup="true")  # fmt: skip
    out = tmp_path / "r.jsonl"
    argv = bench_argv(prof, out, cache, "--no-pipeline", *ssh_args(sshd))
    assert main(argv) == 1  # the Python timer needs TensorRT, which this machine lacks
    (r,) = read_records([out])
    assert r["tool"] == "trtexec" and r["runtime"] == "tensorrt" and r["runtime_version"] == "8.2.1"
    assert r["on_device"] and r["precision"] == "fp16" and r["stats"]["median_ms"] == 38.1128
    assert "--workspace=256" in r["trtexec_command"] and "--fp16" in r["trtexec_command"]
    assert r["host"]["cpu"] and r["native"]["throughput_qps"] == 26.0465
    pushed = next((tmp_path / "nano").iterdir())
    assert (pushed / "model.engine").exists() and "--onnx=model.onnx" in (pushed / "trtexec.args").read_text()
