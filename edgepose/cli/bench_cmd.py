"""``edgepose bench``: time models on a device profile (this machine, or a device over ssh / adb)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepose.device.formats import PRECISIONS

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
    p.add_argument("--precision", choices=PRECISIONS, help="default: the profile's")
    p.add_argument("--runs", type=int, default=50, help="timed runs per measurement (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default 5)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="seconds each for the warm-up and the timed runs of a measurement (default 20)",
    )
    p.add_argument("--threads", type=int, help="runtime threads (default: the profile's)")
    p.add_argument(
        "--runtime",
        help="one of the profile's runtimes (e.g. rpi4: tflite or onnxruntime; default: its first)",
    )
    p.add_argument("--cpus", help="pin to these CPUs, e.g. 4-7")
    p.add_argument("--no-pipeline", action="store_true", help="time the model only, not pre / model / post")
    p.add_argument(
        "--quick", action="store_true", help="10 runs, 2 warm-up, 3 s cap: a first look in seconds"
    )
    p.add_argument(
        "--agree",
        action="store_true",
        help="also score each artifact's poses against its PyTorch model's on the bundled photos (agreement AP)",
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
    reach.add_argument(
        "--host", metavar="USER@HOST[:PORT]", help="a device the profile reaches over ssh (key auth)"
    )
    reach.add_argument("--port", type=int, help="ssh port (or give it in --host)")
    reach.add_argument("--identity", metavar="KEY", help="ssh private key")
    reach.add_argument("--ssh-option", action="append", default=[], metavar="OPT", help="extra ssh -o option")
    reach.add_argument(
        "--ssh-config", metavar="FILE", help="an ssh_config file for ssh and scp (-F), e.g. the emulated Pi's"
    )
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
    p.add_argument("--wide", action="store_true", help="print every protocol column, not the compact view")
    p.set_defaults(func=run)


def ssh_target(args: argparse.Namespace):
    """``--host user@host[:port]`` (+ ``--port``, ``--identity``, ``--ssh-option``) as an ssh target, or None."""
    from edgepose.bench.remote import SshTarget
    from edgepose.errors import EdgeposeError

    if not args.host:
        return None
    host, port = args.host, args.port
    name, sep, tail = host.rpartition(":")
    if sep and tail.isdigit() and "]" not in tail:
        if port is not None and port != int(tail):
            raise EdgeposeError(f"--host says port {tail} and --port says {port}: give one")
        host, port = name, int(tail)
    config = args.ssh_config
    if config and not Path(config).is_file():
        raise EdgeposeError(f"--ssh-config {config}: no such file")
    return SshTarget(host, port=port, identity=args.identity, options=args.ssh_option, config=config)


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the new records, and exit 1 if any model failed (the others are kept)."""
    from edgepose.bench.options import BenchOptions
    from edgepose.bench.profiles import load_profile
    from edgepose.bench.records import to_compact, to_csv, to_markdown
    from edgepose.bench.remote import AdbTarget
    from edgepose.bench.runner import paper_jobs, resolve_models, run_bench
    from edgepose.bench.transports import open_transport
    from edgepose.errors import EdgeposeError
    from edgepose.models.registry import parse_size

    profile = load_profile(args.device).with_settings(args.precision, args.threads, args.runtime)
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
        runs=runs, warmup=warmup, max_seconds=max_seconds, dataset=args.dataset,
        input_size=parse_size(args.input) if args.input else None, pipeline=not args.no_pipeline,
        cpus=args.cpus, benchmark_model=args.benchmark_model, agree=args.agree,
    )  # fmt: skip
    adb = AdbTarget(args.adb, adb=args.adb_path) if args.adb else None
    transport = open_transport(profile, ssh_target(args), adb)
    out = Path(args.out) if args.out else Path("benchmarks/results") / f"{profile.name}.jsonl"
    records, failures = run_bench(profile, models, opts, out, cache=Path(args.cache), transport=transport)
    if args.format != "none":
        if args.wide:
            print((to_markdown if args.format == "md" else to_csv)(records), end="")
        else:
            print(to_compact(records, args.format), end="")
    print(f"{len(records)} records appended to {out}")
    for line in failures:
        print(f"failed: {line}")
    return 1 if failures else 0
