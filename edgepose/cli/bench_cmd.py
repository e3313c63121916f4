"""``edgepose bench``: time models on a device profile (this machine, or a device over ssh / adb)."""

from __future__ import annotations

import argparse
from pathlib import Path

QUICK = {"runs": 10, "warmup": 2, "max_seconds": 3.0}


def register(subparsers) -> None:
    """Add the ``bench`` sub-command."""
    p = subparsers.add_parser(
        "bench",
        help="measure latency on a device profile (host, rpi4, snapdragon855, jetson-nano, or a .toml)",
        description="Export each model with the device's recipe (cached), time it (warm-up, then N runs; model "
        "only and the full pipeline's pre / model / post) and append one JSON record per measurement. Without "
        "--host/--adb a device profile runs on this machine and its records are labelled with this CPU.",
    )
    p.add_argument(
        "--device", default="host", help="device profile: devices/<name>.toml or a path (default: host)"
    )
    p.add_argument("--models", help="comma-separated model names (default: the profile's list; host: all)")
    p.add_argument(
        "--paper", help="time every model of a paper's tables at the paper's input sizes (e.g. litepose)"
    )
    p.add_argument("--dataset", help="keypoint set / head where the model has it (default: each model's)")
    p.add_argument("--input", metavar="HxW", help="input size (default: each model's paper size)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="default: the profile's")
    p.add_argument("--runs", type=int, default=50, help="timed runs per measurement (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default 5)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="seconds each for the warm-up and the timed runs of a measurement (default 20)",
    )
    p.add_argument("--threads", type=int, help="runtime threads (default: the profile's)")
    p.add_argument("--cpus", help="pin to these CPUs, e.g. 4-7")
    p.add_argument("--no-pipeline", action="store_true", help="time the model only, not pre / model / post")
    p.add_argument(
        "--quick", action="store_true", help="10 runs, 2 warm-up, 3 s cap: a first look in seconds"
    )
    p.add_argument(
        "--out",
        metavar="JSONL",
        help="records file to append to (default: benchmarks/results/<device>.jsonl)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        default="artifacts/bench",
        help="exported artifacts (reused when they match)",
    )
    reach = p.add_argument_group("reaching the device")
    reach.add_argument("--host", metavar="USER@HOST", help="run on this machine over ssh (key auth)")
    reach.add_argument("--port", type=int, help="ssh port")
    reach.add_argument("--identity", metavar="KEY", help="ssh private key")
    reach.add_argument("--ssh-option", action="append", default=[], metavar="OPT", help="extra ssh -o option")
    reach.add_argument("--adb", metavar="SERIAL", help="Android device serial (see `adb devices`)")
    reach.add_argument("--adb-path", default="adb", help="the adb binary (default: adb on PATH)")
    reach.add_argument(
        "--benchmark-model",
        metavar="PATH",
        help="TFLite benchmark_model binary: required with --adb, also run here or pushed with --host",
    )
    p.add_argument(
        "--format", choices=("md", "csv", "none"), default="md", help="print the new records as (default md)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the new records, and exit 1 if any model failed (the others are kept)."""
    from edgepose.bench.profiles import load_profile
    from edgepose.bench.records import to_csv, to_markdown
    from edgepose.bench.remote import AdbTarget, SshTarget
    from edgepose.bench.runner import BenchOptions, paper_jobs, resolve_models, run_bench
    from edgepose.errors import EdgeposeError
    from edgepose.models.registry import parse_size

    profile = load_profile(args.device)
    if args.paper and args.models:
        raise EdgeposeError("give --models or --paper, not both")
    if args.paper:
        models, missing = paper_jobs(args.paper)
        if missing:
            print(f"not in edgepose (published numbers only): {', '.join(missing)}")
    else:
        models = resolve_models(profile, args.models)
    runs, warmup, max_seconds = args.runs, args.warmup, args.max_seconds
    if args.quick:
        runs, warmup, max_seconds = QUICK["runs"], QUICK["warmup"], QUICK["max_seconds"]
    opts = BenchOptions(
        runs=runs, warmup=warmup, max_seconds=max_seconds, threads=args.threads, precision=args.precision,
        dataset=args.dataset, input_size=parse_size(args.input) if args.input else None,
        pipeline=not args.no_pipeline, cpus=args.cpus, benchmark_model=args.benchmark_model,
    )  # fmt: skip
    ssh = (
        SshTarget(args.host, port=args.port, identity=args.identity, options=args.ssh_option)
        if args.host
        else None
    )
    adb = AdbTarget(args.adb, adb=args.adb_path) if args.adb else None
    out = Path(args.out) if args.out else Path("benchmarks/results") / f"{profile.name}.jsonl"
    records, failures = run_bench(profile, models, opts, out, cache=Path(args.cache), ssh=ssh, adb=adb)
    if args.format == "md":
        print(to_markdown(records), end="")
    elif args.format == "csv":
        print(to_csv(records), end="")
    print(f"{len(records)} records appended to {out}")
    for line in failures:
        print(f"failed: {line}")
    return 1 if failures else 0
