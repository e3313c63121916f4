"""``edgepose infer ARTIFACT_DIR --source ...``: the artifact's run script, on the host.

Same options and pipeline as the folder's ``run.py`` (edgepose/device/cli.py); ``--backend torch``
runs the original PyTorch model instead (needs ``--weights``), to compare it with the export.
"""

from __future__ import annotations

import argparse

from edgepose.device import cli as device_cli
from edgepose.device.runtime import BACKENDS
from edgepose.errors import EdgeposeError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="run an exported model on a camera, video, image or folder",
        description="Run an artifact folder (from `edgepose export`) on a camera, video, image or folder of "
        "images: annotated output, JSON lines with keypoints, and per-frame timings.",
    )
    parser.add_argument("artifact_dir", metavar="ARTIFACT_DIR", help="folder written by `edgepose export`")
    device_cli.add_arguments(parser, backends=list(BACKENDS) + ["torch"])
    parser.add_argument("--weights", help="--backend torch: the checkpoint the artifact was exported from")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runtime = None
    if args.weights and args.backend != "torch":
        raise EdgeposeError("--weights is for --backend torch (exported models carry their weights)")
    if args.backend == "torch":
        from edgepose.device.manifest import load_manifest
        from edgepose.torch_runtime import TorchRuntime

        runtime = TorchRuntime(load_manifest(args.artifact_dir), weights=args.weights, threads=args.threads)
    return device_cli.run(args, args.artifact_dir, runtime=runtime)
