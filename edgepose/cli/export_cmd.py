"""``edgepose export MODEL --target T``: write a checked artifact folder for a device (see docs/export.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgepose.device.formats import PRECISIONS


def register(subparsers) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export",
        help="export a model for a target (onnx, jetson, rpi4, ... or a recipe .toml)",
        description="Export MODEL for a target recipe; the folder holds the model file, manifest.json, "
        "the device-side code and run.py. The export is checked against PyTorch; a failed check writes nothing.",
    )
    p.add_argument("model", help="registered model name, e.g. litepose-s (see `edgepose models`)")
    p.add_argument(
        "--target",
        required=True,
        help="recipe name (export/<name>.toml) or path to a recipe .toml; `edgepose targets` lists them",
    )
    p.add_argument("--dataset", help="keypoint set / head: coco, crowdpose or mpii (default: the model's)")
    p.add_argument("--weights", metavar="CKPT", help="checkpoint to load (default: random initialisation)")
    p.add_argument(
        "--input", metavar="HxW", help="input size, e.g. 448x448 or 256x192 (default: the paper's)"
    )
    p.add_argument("--opset", type=int, help="ONNX opset (11-17; default per recipe)")
    p.add_argument(
        "--dynamic-batch", action=argparse.BooleanOptionalAction, default=None, help="dynamic batch axis"
    )
    p.add_argument("--precision", choices=PRECISIONS, help="default per recipe (see `edgepose targets`)")
    p.add_argument("--calib", metavar="DIR", help="calibration images (int8), or a .npy / TensorRT .cache")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: artifacts/<model>-<dataset>-<HxW>-<target>-<precision>)",
    )
    p.add_argument(
        "--build", action="store_true", help="also build the TensorRT engine here (needs tensorrt)"
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


def next_commands(folder: Path, manifest: dict) -> list[str]:
    """What to run next with this folder (on the device)."""
    lines = []
    engine = manifest.get("engine")
    if engine and not (folder / engine["engine"]).exists():
        lines += [
            f"copy {folder} to the Jetson, then on the Jetson:",
            f"  python3 {folder}/build_engine.py        # or: sh {folder}/trtexec.sh",
        ]
    source = "photo.jpg" if manifest["model"]["kind"] == "top-down" else "0"
    lines.append(f"  python3 {folder}/run.py --source {source}")
    if engine:
        lines.append(f"  {engine['trtexec']} --loadEngine={folder}/{engine['engine']}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Export, then print the folder, the model file's size, the parity figures and the next commands."""
    from edgepose.export.parity import summary
    from edgepose.export.pipeline import MANIFEST, export_model

    folder = export_model(
        args.model,
        args.target,
        dataset=args.dataset,
        weights=args.weights,
        input_size=args.input,
        precision=args.precision,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        calib=args.calib,
        out=args.out,
        build=args.build,
    )
    manifest = json.loads((folder / MANIFEST).read_text())
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    model_files = [n for n in manifest["artifacts"] if n.startswith("model.")]
    print(f"exported {args.model} ({manifest['model']['dataset']}) for {manifest['target']} -> {folder}")
    for name in model_files:
        print(f"  {name}: {_size(folder / name)}, input {manifest['input']['shape']}")
    print(f"  precision: {manifest['precision']} ({manifest['format']})")
    if manifest.get("parity"):
        print(f"  parity vs PyTorch: {summary(manifest['parity'])}")
        for warning in manifest["parity"].get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    built = manifest["export"].get("engine_build", {}).get("built_here")
    if built:
        print(
            f"  built {built['engine']} here: TensorRT {built['tensorrt_version']}, {built['precision']}, {built['gpu']}"
        )
    print("next:")
    for line in next_commands(folder, manifest):
        print(line)
    return 0
