"""``edgepose bench``: export each model for a device profile (cached), time it where the profile says, keep records.

Timing runs through :mod:`edgepose.device.bench` everywhere, as ``python -m edgepose_device.bench``
inside the artifact folder (which carries that package): in a fresh process on this machine, or on a
device reached over ssh. Native tools add their own records: ``trtexec`` on a Jetson,
``benchmark_model`` over adb or wherever a binary is given. A profile run on this machine without ``--host``/``--adb`` is labelled
with this machine's CPU and ``on_device: false``, never as the device.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import edgepose
from edgepose.bench.benchmark_model import benchmark_model_command, parse_benchmark_model
from edgepose.bench.profiles import DeviceProfile
from edgepose.bench.records import RecordWriter, read_records
from edgepose.bench.remote import AdbTarget, SshTarget
from edgepose.bench.trtexec import parse_trtexec, trtexec_command, trtexec_stats
from edgepose.device import bench as device_bench
from edgepose.device.manifest import load_manifest, verify_file
from edgepose.errors import EdgeposeError


@dataclass
class BenchOptions:
    """How to measure: runs, warm-up, time cap and what to time besides the model."""

    runs: int = 50
    warmup: int = 5
    max_seconds: float | None = 20.0
    threads: int | None = None  # None: the profile's
    precision: str | None = None  # None: the profile's
    dataset: str | None = None
    input_size: tuple[int, int] | None = None
    pipeline: bool = True
    progress: bool = True
    cpus: str | None = None  # pin to these CPUs (e.g. "4-7")
    benchmark_model: str | None = None  # a local benchmark_model binary to time TFLite artifacts with
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_models(profile: DeviceProfile, models: str | None) -> list[str]:
    """The models to time: ``--models a,b`` (checked against the registry), else the profile's list."""
    from edgepose.models.registry import get_spec, list_models

    if models:
        names = [m.strip() for m in models.split(",") if m.strip()]
    elif profile.models is not None:
        names = list(profile.models)
    else:
        names = [spec.name for spec in list_models()]
    for name in names:
        get_spec(name)  # unknown name -> error with did-you-mean
    if not names:
        raise EdgeposeError("no models to benchmark")
    return names


def paper_jobs(paper_name: str) -> tuple[list[tuple[str, tuple[int, int] | None]], list[str]]:
    """(model, input size) of every paper row edgepose has, once each; and the labels of the rows it lacks."""
    from edgepose.bench.papers import load_paper
    from edgepose.models.registry import list_models

    known = {spec.name for spec in list_models()}
    jobs: list[tuple[str, tuple[int, int] | None]] = []
    missing = []
    for table in load_paper(paper_name).tables:
        for row in table.rows:
            if row.model in known:
                if (row.model, row.input_size) not in jobs:
                    jobs.append((row.model, row.input_size))
            elif row.label not in missing:
                missing.append(row.label)
    return jobs, missing


def _artifact_name(model: str, dataset: str, size: tuple[int, int], recipe: str, precision: str) -> str:
    return f"{model}-{dataset}-{size[0]}x{size[1]}-{recipe}-{precision}"


def _reusable(folder: Path, model: str, recipe: str, precision: str) -> bool:
    """True when ``folder`` holds a complete artifact of this model/recipe/precision made by this edgepose."""
    try:
        manifest = load_manifest(str(folder))
        for name in manifest.get("artifacts", {}):
            verify_file(str(folder), manifest, name)
    except EdgeposeError:
        return False
    return (
        _device_code_current(manifest)
        and manifest["model"].get("name") == model
        and manifest.get("target") == recipe
        and manifest.get("precision") == precision
        and manifest.get("edgepose_version") == edgepose.__version__
    )


def _device_code_current(manifest: dict[str, Any]) -> bool:
    """True when the artifact's ``edgepose_device/`` copy is today's device code (else re-export)."""
    from edgepose.device.manifest import sha256_of

    package = Path(device_bench.__file__).parent
    recorded = {
        k: v.get("sha256")
        for k, v in manifest.get("artifacts", {}).items()
        if k.startswith("edgepose_device/")
    }
    current = {
        f"edgepose_device/{p.relative_to(package).as_posix()}": sha256_of(str(p))
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    return recorded == current


def prepare_artifact(
    model: str, profile: DeviceProfile, opts: BenchOptions, cache: Path, size: tuple[int, int] | None = None
) -> Path:
    """Export ``model`` with the profile's recipe into ``cache``, or reuse a matching artifact there."""
    from edgepose.models.registry import get_spec

    spec = get_spec(model)
    dataset = opts.dataset if opts.dataset in spec.datasets else spec.default_dataset
    size = size or opts.input_size or spec.input_size
    precision = opts.precision or profile.precision
    folder = cache / _artifact_name(model, dataset, size, profile.recipe, precision)
    if _reusable(folder, model, profile.recipe, precision):
        return folder
    from edgepose.export.pipeline import export_model

    print(f"[bench] exporting {model} ({profile.recipe}, {precision}) -> {folder}", file=sys.stderr)
    return export_model(
        model, profile.recipe, dataset=dataset, input_size=size, precision=precision, out=folder
    )


def enrich(rec: dict[str, Any], profile: DeviceProfile, reached: str) -> dict[str, Any]:
    """Add the host-side protocol: the profile, how it was reached, the edgepose version."""
    rec["device_profile"] = {
        "name": profile.name,
        "description": profile.description,
        "recipe": profile.recipe,
    }
    rec["reached"] = reached
    rec["edgepose_version"] = rec.get("edgepose_version") or edgepose.__version__
    if not rec.get("on_device"):
        rec.setdefault("notes", []).append(
            f"{profile.name} profile run on {rec.get('host', {}).get('cpu')}, not on the device"
        )
    return rec


class _Enriching:
    """A RecordWriter wrapper that adds the host-side protocol before writing."""

    def __init__(self, writer: RecordWriter, profile: DeviceProfile, reached: str) -> None:
        self.writer, self.profile, self.reached = writer, profile, reached

    def write(self, rec: dict[str, Any]) -> None:
        self.writer.write(enrich(rec, self.profile, self.reached))


def native_record(
    manifest: dict[str, Any], profile: DeviceProfile, host: dict[str, Any], on_device: bool, tool: str,
    parsed: dict[str, Any], stats: dict[str, Any], runs: int, warmup: int,
) -> dict[str, Any]:  # fmt: skip
    """A record for a native tool's measurement, with the same protocol fields as the Python timer."""
    threads = parsed.get("threads", profile.threads)
    rec = device_bench.base_record(manifest, profile.name, on_device, threads, runs, warmup)
    rec["host"] = host
    rec["timed"] = "model"
    rec["tool"] = tool
    rec["runs_done"] = parsed.get("runs", runs)
    rec["capped"] = False
    rec["stats"] = stats
    rec["peak_rss_mb"] = None
    rec["native"] = parsed
    if tool == "trtexec":
        rec["runtime"], rec["runtime_version"] = "tensorrt", parsed.get("tensorrt_version")
        rec["precision"] = manifest.get("precision")
    else:
        rec["runtime"] = "tflite benchmark_model"
        rec["delegate"] = profile.delegate
    return rec


def is_this_device(profile: DeviceProfile) -> bool:
    """True for the host profile, or when this machine's board name contains the profile's ``hardware.match``."""
    match = profile.hardware.get("match")
    return profile.name == "host" or bool(match and match in device_bench.cpu_name())


def device_bench_argv(python: str, profile: DeviceProfile, opts: BenchOptions, on_device: bool) -> list[str]:
    """``python -m edgepose_device.bench ...`` as run inside an artifact folder, here or on the device."""
    cmd = [python, "-m", "edgepose_device.bench", "--model-dir", ".", "--device", profile.name,
           "--runs", str(opts.runs), "--warmup", str(opts.warmup), "--out", "records.jsonl"]  # fmt: skip
    if on_device:
        cmd.append("--on-device")
    threads = opts.threads or profile.threads
    if threads:
        cmd += ["--threads", str(threads)]
    if opts.max_seconds:
        cmd += ["--max-seconds", f"{opts.max_seconds:g}"]
    if opts.cpus:
        cmd += ["--cpus", opts.cpus]
    if not opts.pipeline:
        cmd.append("--no-pipeline")
    if not opts.progress:
        cmd.append("--quiet")
    return cmd


def _copy_records(path: Path, out: _Enriching) -> list[dict]:
    records = read_records([path]) if path.is_file() else []
    for rec in records:
        out.write(rec)
    return records


def bench_local(folder: Path, profile: DeviceProfile, opts: BenchOptions, writer: RecordWriter) -> list[dict]:
    """Time an artifact on this machine in a fresh process, exactly as on a device (clean peak RSS, no torch)."""
    on_device = is_this_device(profile)
    out = _Enriching(writer, profile, "local")
    scratch = folder / "records.jsonl"
    scratch.unlink(missing_ok=True)
    argv = device_bench_argv(sys.executable, profile, opts, on_device)
    # stderr stays on the terminal: the progress bar, and the timer's own one-line error if it fails.
    proc = subprocess.run(argv, cwd=folder, stdout=subprocess.DEVNULL)
    records = _copy_records(scratch, out)  # what was measured, even if the run then failed
    scratch.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise EdgeposeError(
            f"timing {folder.name} failed (exit {proc.returncode}; its error is printed above)"
        )
    if opts.benchmark_model and (folder / "model.tflite").is_file():
        here = replace(profile, runtime={})  # no cpu_mask: the phone's big-core mask means nothing here
        cmd = benchmark_model_argv(here, opts, opts.benchmark_model, str(folder / "model.tflite"))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        manifest = load_manifest(str(folder))
        rec = _tool_record(
            manifest, profile, device_bench.host_info(), on_device, opts, proc.stdout + proc.stderr, cmd
        )
        out.write(rec)
        records.append(rec)
    return records


def bench_ssh(folder: Path, profile: DeviceProfile, opts: BenchOptions, writer: RecordWriter,
              target: SshTarget) -> list[dict]:  # fmt: skip
    """Push the artifact folder, (build the engine and run trtexec on a TensorRT device,) time, fetch records."""
    workdir = profile.reach_options.get("workdir", "/tmp/edgepose-bench")
    remote_dir = f"{workdir}/{folder.name}"
    print(f"[bench] {folder.name}: pushing to {target.host}:{remote_dir}", file=sys.stderr)
    target.push_dir(folder, remote_dir)
    out = _Enriching(writer, profile, f"ssh {target.host}")
    records: list[dict] = []
    if setup := profile.reach_options.get("setup"):
        # Best effort (needs passwordless sudo); host facts (L4T, governor) are recorded with the numbers.
        target.run(setup, check=False)
    manifest = load_manifest(str(folder))
    if manifest.get("format") == "tensorrt":
        records += _remote_trtexec(target, remote_dir, manifest, profile, opts, out)
    if opts.benchmark_model and (folder / "model.tflite").is_file():
        records += _remote_benchmark_model(target, workdir, remote_dir, manifest, profile, opts, out)
    print(f"[bench] {folder.name}: timing on {target.host}", file=sys.stderr)
    python = profile.reach_options.get("python", "python3")
    argv = device_bench_argv(python, profile, replace(opts, progress=False), on_device=True)
    command = f"cd {shlex.quote(remote_dir)} && rm -f records.jsonl && {shlex.join(argv)}"
    try:
        target.run(command, timeout=_remote_timeout(opts))
    finally:  # fetch what was measured, even when the run failed part-way
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = target.pull(f"{remote_dir}/records.jsonl", Path(tmp) / "records.jsonl")
            except EdgeposeError:
                local = Path(tmp) / "none"
            records += _copy_records(local, out)
    return records


def _remote_timeout(opts: BenchOptions) -> float:
    per = (opts.max_seconds or 600) * (4 if opts.pipeline else 1)
    return per + 300  # model load, warm-up and engine deserialisation


def _remote_trtexec(target: SshTarget, remote_dir: str, manifest: dict, profile: DeviceProfile,
                    opts: BenchOptions, out: _Enriching) -> list[dict]:  # fmt: skip
    """Build model.engine with trtexec on the device (it is not portable) and record trtexec's timing."""
    trt = profile.native.get("path", "trtexec")
    cmd = trtexec_command(
        "model.onnx", engine="model.engine", precision=manifest.get("precision", "fp16"),
        workspace_mib=profile.runtime.get("workspace_mib"), tensorrt_version=str(profile.runtime.get("tensorrt", "8.2")),
        iterations=opts.runs, trtexec=trt,
    )  # fmt: skip
    print(f"[bench] building the TensorRT engine on {target.host} (minutes on a Nano)", file=sys.stderr)
    proc = target.run(f"cd {shlex.quote(remote_dir)} && {shlex.join(cmd)}", timeout=3600)
    parsed = parse_trtexec(proc.stdout + proc.stderr)
    host = remote_host_info(target, remote_dir, profile.reach_options.get("python", "python3"))
    rec = native_record(manifest, profile, host, True, "trtexec", parsed, trtexec_stats(parsed), opts.runs, 0)
    rec["trtexec_command"] = shlex.join(cmd)
    out.write(rec)
    return [rec]


def _remote_benchmark_model(target: SshTarget, workdir: str, remote_dir: str, manifest: dict,
                            profile: DeviceProfile, opts: BenchOptions, out: _Enriching) -> list[dict]:  # fmt: skip
    """Push the given benchmark_model binary next to the artifacts, run it on the .tflite, record its figures."""
    binary = f"{workdir}/benchmark_model"
    target.push_file(opts.benchmark_model, binary)
    target.run(["chmod", "755", binary])
    cmd = benchmark_model_argv(profile, opts, binary, f"{remote_dir}/model.tflite")
    proc = target.run(shlex.join(cmd), timeout=_remote_timeout(opts))
    host = remote_host_info(target, remote_dir, profile.reach_options.get("python", "python3"))
    rec = _tool_record(manifest, profile, host, True, opts, proc.stdout + proc.stderr, cmd)
    out.write(rec)
    return [rec]


_HOST_INFO_SCRIPT = (
    "import json,sys; sys.path.insert(0, '.'); from edgepose_device.bench import host_info; "
    "print(json.dumps(host_info()))"
)


def remote_host_info(
    target: SshTarget, remote_dir: str | None = None, python: str = "python3"
) -> dict[str, Any]:
    """host_info() as the device itself reports it (run through the pushed edgepose_device package)."""
    where = f"cd {shlex.quote(remote_dir)} && " if remote_dir else ""
    proc = target.run(f"{where}{shlex.quote(python)} -c {shlex.quote(_HOST_INFO_SCRIPT)}", check=False)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"cpu": f"unknown ({target.host})"}


def adb_host_info(target: AdbTarget) -> dict[str, Any]:
    """The phone's model, SoC and Android version from getprop."""
    props = {}
    for key, prop in (
        ("cpu", "ro.board.platform"),
        ("model", "ro.product.model"),
        ("android", "ro.build.version.release"),
    ):
        props[key] = target.shell(["getprop", prop], timeout=30).strip()
    return {
        "cpu": props["cpu"],
        "board": props["model"],
        "os": f"Android {props['android']}",
        "serial": target.serial,
    }


def benchmark_model_argv(profile: DeviceProfile, opts: BenchOptions, binary: str, graph: str) -> list[str]:
    """benchmark_model with the profile's threads, delegate and CPU mask (``taskset f0``: SD855 big cores)."""
    return benchmark_model_command(
        binary, graph, threads=opts.threads or profile.threads or 4, runs=opts.runs, warmup=opts.warmup,
        max_seconds=opts.max_seconds or 150, delegate=profile.delegate or "xnnpack",
        cpu_mask=profile.runtime.get("cpu_mask"), hexagon_lib_path=profile.reach_options.get("workdir"),
    )  # fmt: skip


def _tool_record(manifest: dict, profile: DeviceProfile, host: dict, on_device: bool, opts: BenchOptions,
                 text: str, cmd: list[str]) -> dict:  # fmt: skip
    """Parse benchmark_model's output into a record carrying the command that produced it."""
    parsed = parse_benchmark_model(text)
    rec = native_record(manifest, profile, host, on_device, "benchmark_model", parsed, parsed["stats"], opts.runs,
                        opts.warmup)  # fmt: skip
    rec["command"] = shlex.join(cmd)
    return rec


def bench_adb(folder: Path, profile: DeviceProfile, opts: BenchOptions, writer: RecordWriter, target: AdbTarget,
              benchmark_model: str) -> list[dict]:  # fmt: skip
    """adb: push benchmark_model and the .tflite, run pinned to the big cores, pull the log, parse it."""
    tflite = folder / "model.tflite"
    if not tflite.is_file():
        raise EdgeposeError(f"{folder} has no model.tflite: the {profile.name} profile needs a TFLite recipe")
    if not Path(benchmark_model).is_file():
        raise EdgeposeError(f"benchmark_model binary not found: {benchmark_model}")
    workdir = profile.reach_options.get("workdir", "/data/local/tmp/edgepose")
    remote_dir = f"{workdir}/{folder.name}"
    binary = f"{workdir}/benchmark_model"
    target.shell(["mkdir", "-p", remote_dir])
    target.push(benchmark_model, binary)
    target.shell(["chmod", "755", binary])
    target.push(tflite, f"{remote_dir}/model.tflite")
    cmd = benchmark_model_argv(profile, opts, binary, f"{remote_dir}/model.tflite")
    log = f"{remote_dir}/benchmark_model.log"
    target.shell(f"{shlex.join(cmd)} > {shlex.quote(log)} 2>&1; echo exit=$?", timeout=_remote_timeout(opts))
    with tempfile.TemporaryDirectory() as tmp:
        text = target.pull(log, Path(tmp) / "benchmark_model.log").read_text()
    rec = _tool_record(load_manifest(str(folder)), profile, adb_host_info(target), True, opts, text, cmd)
    out = _Enriching(writer, profile, f"adb {target.serial}")
    out.write(rec)
    return [rec]


def run_bench(
    profile: DeviceProfile,
    models: list[str] | list[tuple[str, tuple[int, int] | None]],
    opts: BenchOptions,
    out: Path,
    *,
    cache: Path,
    ssh: SshTarget | None = None,
    adb: AdbTarget | None = None,
) -> tuple[list[dict], list[str]]:
    """Benchmark every model (a name, or (name, input size)); returns (records, failures).

    A model that fails is reported and the others go on; the failures are returned, not hidden.
    """
    if ssh and adb:
        raise EdgeposeError("give either --host (ssh) or --adb, not both")
    if adb and not opts.benchmark_model:
        raise EdgeposeError(
            "--adb needs --benchmark-model PATH (the TFLite benchmark_model binary for Android)"
        )
    if ssh or adb:
        (ssh or adb).check()
    writer = RecordWriter(str(out))
    records: list[dict] = []
    failures: list[str] = []
    for job in models:
        model, size = job if isinstance(job, tuple) else (job, None)
        try:
            folder = prepare_artifact(model, profile, opts, cache, size)
            if ssh:
                records += bench_ssh(folder, profile, opts, writer, ssh)
            elif adb:
                records += bench_adb(folder, profile, opts, writer, adb, opts.benchmark_model)
            else:
                records += bench_local(folder, profile, opts, writer)
        except EdgeposeError as exc:
            failures.append(f"{model}: {exc}")
            print(f"[bench] {model} failed: {exc}", file=sys.stderr)
    return records, failures
