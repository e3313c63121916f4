"""The devices' own timing tools, run where the artifact was pushed: trtexec (Jetson) and TFLite's benchmark_model.

Each wraps the native binary rather than imitating it: the command line comes from the profile and
the artifact, the log is parsed (:mod:`edgepose.bench.trtexec`, :mod:`edgepose.bench.benchmark_model`),
and the record goes through the same assembly as the Python timer's (``edgepose.device.bench.record``).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from edgepose.bench.benchmark_model import benchmark_model_command, parse_benchmark_model
from edgepose.bench.options import BenchOptions
from edgepose.bench.profiles import DeviceProfile
from edgepose.bench.transports import Transport
from edgepose.bench.trtexec import parse_trtexec, trtexec_stats
from edgepose.device import bench as device_bench
from edgepose.device import trtexec_build
from edgepose.device.formats import get_format


def native_record(
    manifest: dict[str, Any], profile: DeviceProfile, transport: Transport, remote_dir: str, tool: str,
    parsed: dict[str, Any], stats: dict[str, Any], opts: BenchOptions, **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    """A record of a native tool's measurement, with the same protocol fields as the Python timer's."""
    threads = parsed.get("threads", profile.threads)
    base = device_bench.base_record(
        manifest, profile.name, transport.on_device, threads, opts.runs, opts.warmup
    )
    base["host"] = transport.host_info(remote_dir)
    runs_done = parsed.get("runs", opts.runs)
    return device_bench.record(base, "model", tool, stats, runs_done, False, native=parsed, **extra)


def benchmark_model_argv(profile: DeviceProfile, opts: BenchOptions, binary: str, graph: str,
                         cpu_mask: bool = True) -> list[str]:  # fmt: skip
    """benchmark_model with the profile's threads, delegate and CPU mask (``taskset f0``: SD855 big cores)."""
    native = profile.native
    return benchmark_model_command(
        binary, graph, threads=profile.threads or 4, runs=opts.runs, warmup=opts.warmup,
        max_seconds=opts.max_seconds or 150, delegate=profile.delegate or "xnnpack",
        cpu_mask=native.cpu_mask if native and cpu_mask else None, hexagon_lib_path=profile.reach.workdir,
    )  # fmt: skip


def time_with_benchmark_model(
    transport: Transport,
    remote_dir: str,
    manifest: dict[str, Any],
    profile: DeviceProfile,
    opts: BenchOptions,
) -> dict[str, Any]:
    """Put the given benchmark_model binary next to the artifact there, run it on the model, record its figures."""
    binary = str(Path(opts.benchmark_model).resolve())
    if transport.on_device or transport.python is None:  # a device: the binary travels with the artifact
        binary = f"{remote_dir}/benchmark_model"
        transport.push_file(opts.benchmark_model, binary)
    graph = f"{remote_dir}/{get_format(manifest['format']).model_file}"
    # The CPU mask is the device's (a phone's big cores); it means nothing for a run on this machine.
    cmd = benchmark_model_argv(profile, opts, binary, graph, cpu_mask=transport.on_device)
    proc = transport.run(cmd, remote_dir, opts.remote_timeout, check=False)
    parsed = parse_benchmark_model(proc.stdout + (proc.stderr or ""))
    return native_record(
        manifest, profile, transport, remote_dir, "benchmark_model", parsed, parsed["stats"], opts,
        runtime="tflite benchmark_model", delegate=profile.delegate, command=shlex.join(cmd),
    )  # fmt: skip


def build_engine_argv(python: str, profile: DeviceProfile) -> list[str]:
    """The artifact's own engine builder, with the profile's builder choice and trtexec path."""
    argv = [python, "build_engine.py", "--builder", profile.recipe.options.builder]
    if profile.native and profile.native.path:
        argv += ["--trtexec", profile.native.path]
    return argv


def time_with_trtexec(
    transport: Transport,
    remote_dir: str,
    manifest: dict[str, Any],
    profile: DeviceProfile,
    opts: BenchOptions,
) -> dict[str, Any]:
    """Time the engine the artifact's builder made, with trtexec on the device (it loads, never rebuilds)."""
    trtexec = (profile.native.path if profile.native else None) or profile.recipe.options.trtexec
    engine = manifest["engine"]["engine"]
    cmd = [trtexec, *trtexec_build.trtexec_time_args(engine, opts.runs)]
    proc = transport.run(cmd, remote_dir, opts.remote_timeout)
    parsed = parse_trtexec(proc.stdout + (proc.stderr or ""))
    return native_record(
        manifest, profile, transport, remote_dir, "trtexec", parsed, trtexec_stats(parsed), opts,
        runtime=profile.recipe.runtime.backend, runtime_version=parsed.get("tensorrt_version"),
        trtexec_command=shlex.join(cmd),
    )  # fmt: skip
