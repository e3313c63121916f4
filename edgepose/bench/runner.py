"""``edgepose bench``: for each model, export (cached), reach the device, build what must be built there, time, record.

Per model: the artifact cache (:mod:`edgepose.bench.cache`) gives the folder; the transport
(:mod:`edgepose.bench.transports`) puts it where it runs; a TensorRT folder's engine is built by the
folder's own builder (``build_engine.py``); the Python timer (``python -m edgepose_device.bench`` in the
folder) and the device's native tools (:mod:`edgepose.bench.native`) time it; every record gets the
host-side protocol (:func:`enrich`) and is appended at once. A profile run on this machine without an
address is labelled with this machine's CPU and ``on_device: false``; where the device's runtime is
absent here (TensorRT), the same model file is timed with the format's next runtime and the record
says it stands in.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import edgepose
from edgepose.bench import native
from edgepose.bench.cache import prepare_artifact
from edgepose.bench.options import BenchOptions
from edgepose.bench.profiles import DeviceProfile
from edgepose.bench.records import RecordWriter, read_records
from edgepose.bench.transports import Local, Transport
from edgepose.device.formats import NATIVE_TOOLS, get_backend, get_format
from edgepose.device.manifest import load_manifest
from edgepose.errors import EdgeposeError

__all__ = ["BenchOptions", "enrich", "paper_jobs", "resolve_models", "run_bench"]
TIMER_RECORDS = "records.jsonl"  # the device-side timer's own output, next to the artifact there


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


def enrich(
    rec: dict[str, Any], profile: DeviceProfile, reached: str, stand_in: str | None = None
) -> dict[str, Any]:
    """Add the host-side protocol: the profile, how it was reached, what a host run stands for."""
    rec["device_profile"] = {
        "name": profile.name,
        "description": profile.description,
        "recipe": profile.recipe.name,
    }
    rec["reached"] = reached
    rec["edgepose_version"] = rec.get("edgepose_version") or edgepose.__version__
    notes = rec.setdefault("notes", [])
    if not rec.get("on_device"):
        notes.append(f"{profile.name} profile run on {rec.get('host', {}).get('cpu')}, not on the device")
    if stand_in:
        rec["stand_in_for"] = stand_in
        notes.append(
            f"{stand_in} is not installed here: the same {rec.get('format')} model timed with {rec.get('runtime')}"
        )
    return rec


def timing_backend(
    profile: DeviceProfile, manifest: dict[str, Any], transport: Transport
) -> tuple[str, str | None]:
    """The backend the Python timer uses, and the one it stands in for (or None).

    On the device, the profile's backend. On this machine, where that backend's runtime is not
    installed (TensorRT off a GPU machine), the format's next backend runs the same model file.
    """
    wanted = profile.recipe.runtime.backend
    if not isinstance(transport, Local) or installed(wanted):
        return wanted, None
    others = [b for b in get_format(manifest["format"]).backends if b != wanted and installed(b)]
    if not others:
        raise EdgeposeError(
            f"the {wanted} runtime is not installed here, and nothing else runs {manifest['format']}"
        )
    return others[0], wanted


def installed(backend: str) -> bool:
    """True when one of the Python packages that provide ``backend`` is importable here."""
    return any(importlib.util.find_spec(name) is not None for name in get_backend(backend).packages)


def timer_argv(python: str, profile: DeviceProfile, opts: BenchOptions, on_device: bool, backend: str,
               out: str) -> list[str]:  # fmt: skip
    """``python -m edgepose_device.bench ...`` as run inside an artifact folder, here or on the device."""
    cmd = [python, "-m", "edgepose_device.bench", "--model-dir", ".", "--device", profile.name,
           "--runs", str(opts.runs), "--warmup", str(opts.warmup), "--out", out, "--backend", backend]  # fmt: skip
    if on_device:
        cmd.append("--on-device")
    if profile.threads:
        cmd += ["--threads", str(profile.threads)]
    if opts.max_seconds:
        cmd += ["--max-seconds", f"{opts.max_seconds:g}"]
    if opts.cpus:
        cmd += ["--cpus", opts.cpus]
    if not opts.pipeline:
        cmd.append("--no-pipeline")
    if not opts.progress:
        cmd.append("--quiet")
    return cmd


def bench_artifact(folder: Path, profile: DeviceProfile, opts: BenchOptions, writer: RecordWriter,
                   transport: Transport) -> list[dict[str, Any]]:  # fmt: skip
    """Time one artifact folder through ``transport``; every record is written as soon as it exists."""
    manifest = load_manifest(str(folder))
    agreement = None
    if opts.agree:  # on this machine, before timing: every record of the folder carries it
        from edgepose.accuracy.agreement import on_bundled_photos

        print(f"[bench] {folder.name}: agreement with PyTorch on the bundled photos", file=sys.stderr)
        agreement = on_bundled_photos(folder)
    remote = transport.push(folder)
    records: list[dict[str, Any]] = []

    def keep(rec: dict[str, Any], stand_in: str | None = None) -> None:
        if agreement is not None:
            rec["agreement"] = agreement
        writer.write(enrich(rec, profile, transport.reached, stand_in))
        records.append(rec)

    if profile.reach.setup and transport.on_device:
        # Best effort (needs passwordless sudo); host facts (L4T, governor) are recorded with the numbers.
        transport.run(profile.reach.setup, remote, 120, check=False)
    backend, stand_in = timing_backend(profile, manifest, transport)
    if "engine" in manifest and stand_in is None:  # built on the device by the folder's own builder
        print(
            f"[bench] {folder.name}: building the engine with build_engine.py (minutes on a Nano)",
            file=sys.stderr,
        )
        transport.run(native.build_engine_argv(transport.python or "python3", profile), remote, 3600)
        if profile.native and profile.native.tool == "trtexec":
            keep(native.time_with_trtexec(transport, remote, manifest, profile, opts))
    backends = get_format(manifest["format"]).backends
    if opts.benchmark_model and NATIVE_TOOLS["benchmark_model"] in backends:
        keep(native.time_with_benchmark_model(transport, remote, manifest, profile, opts))
    if transport.python is not None:
        _python_timer(transport, remote, profile, opts, backend, lambda rec: keep(rec, stand_in))
    return records


def _python_timer(transport: Transport, remote: str, profile: DeviceProfile, opts: BenchOptions,
                  backend: str, keep: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
    """Run the device-side timer in the folder there; what it measured is kept even if it then fails."""
    remote_out = f"{remote}/{TIMER_RECORDS}"
    transport.run(["rm", "-f", remote_out], remote, 60, check=False)
    argv = timer_argv(transport.python, profile, opts, transport.on_device, backend, remote_out)
    print(f"[bench] {Path(remote).name}: timing ({transport.reached})", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="edgepose-bench-") as tmp:
        try:
            transport.run(argv, remote, opts.remote_timeout)
        except EdgeposeError as exc:
            raise EdgeposeError(f"timing {Path(remote).name} failed: {exc}") from None
        finally:  # keep what was measured, even when the run failed part-way or was interrupted
            local = transport.fetch(remote_out, Path(tmp) / TIMER_RECORDS)
            for rec in read_records([local]) if local else []:
                keep(rec)
            transport.run(["rm", "-f", remote_out], remote, 60, check=False)


def run_bench(
    profile: DeviceProfile,
    models: list[str] | list[tuple[str, tuple[int, int] | None]],
    opts: BenchOptions,
    out: Path,
    *,
    cache: Path,
    transport: Transport,
) -> tuple[list[dict], list[str]]:
    """Benchmark every model (a name, or (name, input size)); returns (records, failures).

    A model that fails is reported and the others go on; the failures are returned, not hidden.
    """
    if transport.python is None and not opts.benchmark_model:
        raise EdgeposeError(
            f"{transport.reached} runs no Python: give --benchmark-model PATH (TFLite's binary)"
        )
    transport.check()
    writer = RecordWriter(str(out))
    records: list[dict] = []
    failures: list[str] = []
    for job in models:
        model, size = job if isinstance(job, tuple) else (job, None)
        try:
            folder = prepare_artifact(model, profile, cache, opts.dataset, size or opts.input_size)
            records += bench_artifact(folder, profile, opts, writer, transport)
        except EdgeposeError as exc:
            failures.append(f"{model}: {exc}")
            print(f"[bench] {model} failed: {exc}", file=sys.stderr)
    return records, failures
