"""trtexec and benchmark_model: parsers on their real output formats, and the command lines we run."""

from pathlib import Path

import pytest

from edgepose.bench.benchmark_model import benchmark_model_command, parse_benchmark_model
from edgepose.bench.trtexec import parse_trtexec, trtexec_stats
from edgepose.errors import EdgeposeError

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_trtexec_8_2_summary():
    p = parse_trtexec(read("trtexec_8.2_jetson_nano.log"))
    assert p["tensorrt_version"] == "8.2.1" and p["passed"] is True
    assert p["throughput_qps"] == pytest.approx(26.0465)
    gpu = p["gpu_compute"]
    assert gpu["median_ms"] == pytest.approx(38.1128) and gpu["p99_ms"] == pytest.approx(41.6711)
    assert "p90_ms" not in gpu  # TRT 8.2 prints only the 99th percentile
    assert p["end_to_end"]["mean_ms"] == pytest.approx(38.4147)
    assert p["h2d"]["min_ms"] == pytest.approx(0.185547)
    assert len(p["trace_averages"]) == 10 and p["trace_averages"][0]["gpu_ms"] == pytest.approx(38.1703)
    stats = trtexec_stats(p)
    assert (
        stats["median_ms"] == pytest.approx(38.1128) and stats["p90_ms"] is None and stats["std_ms"] is None
    )


def test_trtexec_10_summary_has_more_percentiles():
    p = parse_trtexec(read("trtexec_10.3_orin.log"))
    assert p["tensorrt_version"] == "10.3.0"
    assert p["gpu_compute"]["p90_ms"] == pytest.approx(2.79468)
    assert p["gpu_compute"]["p95_ms"] == pytest.approx(2.81152)
    assert p["latency"]["median_ms"] == pytest.approx(3.01489)
    assert "end_to_end" not in p
    assert p["host_walltime_s"] == pytest.approx(0.29114)


def test_trtexec_7_multiline_blocks():
    p = parse_trtexec(read("trtexec_7.1_blocks.log"))
    assert p["gpu_compute"]["median_ms"] == pytest.approx(1.56006)
    assert p["gpu_compute"]["p99_ms"] == pytest.approx(1.57324)
    assert p["latency"]["mean_ms"] == pytest.approx(1.66069)
    assert p["enqueue"]["max_ms"] == pytest.approx(1.47461)


def test_trtexec_version_from_the_banner_alone():
    text = "&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec\n[I] GPU Compute Time: min = 1 ms, max = 2 ms, mean = 1.5 ms, median = 1.4 ms, percentile(99%) = 2 ms\n"
    assert parse_trtexec(text)["tensorrt_version"] == "8.6.1"


def test_trtexec_failure_output_is_an_error():
    with pytest.raises(EdgeposeError, match="no performance summary"):
        parse_trtexec("&&&& FAILED TensorRT.trtexec [TensorRT v8201] # trtexec --onnx=model.onnx\n")


def test_benchmark_model_rpi4_xnnpack():
    p = parse_benchmark_model(read("benchmark_model_rpi4_xnnpack.log"))
    assert p["runs"] == 100 and p["warmup_runs"] == 10 and p["threads"] == 4
    assert p["stats"]["mean_ms"] == pytest.approx(121.552)  # printed in µs
    assert p["stats"]["std_ms"] == pytest.approx(1.843)
    assert p["inference_avg_ms"] == pytest.approx(121.552) and p["init_ms"] == pytest.approx(91.337)
    assert p["delegates"] == [
        {"delegate": "TfLiteXNNPackDelegate", "replaced_nodes": 178, "total_nodes": 178}
    ]
    assert p["peak_memory_mb"] == {"init": 16.0312, "overall": 31.1406}
    assert p["fallback_warnings"] == []


def test_benchmark_model_scientific_notation():
    p = parse_benchmark_model(read("benchmark_model_rpi4_scientific.log"))
    assert p["stats"]["mean_ms"] == pytest.approx(2950.34)
    assert p["stats"]["min_ms"] == pytest.approx(2938.11)
    assert p["inference_avg_ms"] == pytest.approx(2950.34)
    assert p["delegates"] == []


def test_benchmark_model_gpu_partial_coverage_and_fallback():
    p = parse_benchmark_model(read("benchmark_model_sd855_gpu_adb.log"))
    assert p["delegates"][0]["replaced_nodes"] == 231 and p["delegates"][0]["total_nodes"] == 236
    assert any("remaining 5 operations will run on the CPU" in w for w in p["fallback_warnings"])
    assert p["stats"]["median_ms"] == pytest.approx(29.931) and p["stats"]["p95_ms"] == pytest.approx(30.876)


def test_benchmark_model_without_timings_is_an_error():
    with pytest.raises(EdgeposeError, match="no timing line"):
        parse_benchmark_model("ERROR: Could not open 'model.tflite'.\n")


def test_benchmark_model_command_for_each_delegate():
    cmd = benchmark_model_command("/data/local/tmp/benchmark_model", "/d/model.tflite", threads=4, runs=100,
                                  warmup=10, delegate="gpu", cpu_mask="f0")  # fmt: skip
    assert cmd[:3] == ["taskset", "f0", "/data/local/tmp/benchmark_model"]
    assert "--graph=/d/model.tflite" in cmd and "--num_threads=4" in cmd and "--use_gpu=true" in cmd
    assert "--num_runs=100" in cmd and "--warmup_runs=10" in cmd
    assert "--use_xnnpack=false" in benchmark_model_command("b", "g", delegate="none")
    hexagon = benchmark_model_command("b", "g", delegate="hexagon", hexagon_lib_path="/data/local/tmp/x")
    assert "--use_hexagon=true" in hexagon and "--hexagon_lib_path=/data/local/tmp/x" in hexagon
    with pytest.raises(EdgeposeError, match="unknown TFLite delegate"):
        benchmark_model_command("b", "g", delegate="tpu")
