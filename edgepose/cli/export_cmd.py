"""``edgepose export MODEL --target T``: write a checked artifact folder for a device (see docs/export.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgepose.device.formats import PRECISIONS, model_files


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
    p.add_argument(
        "--weights",
        metavar="CKPT|NAME",
        help="a checkpoint file, or a released checkpoint by name (`edgepose weights`; downloaded once); "
        "default: random weights, with a warning",
    )
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
        help="output folder (default: artifacts/<model>-<dataset>-<HxW>-<target>-<precision>); an existing one "
        "is replaced only if it is an edgepose artifact folder",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace whatever is at --out (a file, or a folder edgepose did not write)",
    )
    p.add_argument(
        "--build", action="store_true", help="also build the TensorRT engine here (needs tensorrt)"
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


# An example input per model kind for the printed next steps (bottom-up: a crowd photo).
EXAMPLE_SOURCES = {"top-down": "person.jpg", "segmentation": "street.jpg"}


def next_commands(folder: Path, manifest: dict, steps: tuple[str, ...]) -> list[str]:
    """What to do next with this folder: the recipe's ``next_steps``, filled in for this export."""
    kind = manifest["model"]["kind"]
    source = EXAMPLE_SOURCES.get(kind, "crowd.jpg")
    fields = {
        "folder": folder.name,
        "path": str(folder.resolve()),
        "model": manifest["model"]["name"],
        "source": source,
        "json": "classes.jsonl" if kind == "segmentation" else "poses.jsonl",
    }
    lines = [step.format(**fields) for step in steps]
    return lines or [f"  python3 {fields['path']}/run.py --source {source} --out out.jpg"]


def run(args: argparse.Namespace) -> int:
    """Export, then print the folder, the model file's size, the parity figures and the next commands."""
    from edgepose.export.parity import summary
    from edgepose.export.pipeline import MANIFEST, export_model
    from edgepose.export.recipe import load_recipe

    recipe = load_recipe(args.target)
    start = time.monotonic()
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
        force=args.force,
    )
    seconds = time.monotonic() - start
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest["model"]["weights"]["kind"] == "random":
        from edgepose.models.catalog import load_catalog

        released = any(e.model == args.model for e in load_catalog().entries)
        print(
            f"warning: {args.model} has random weights (no --weights): the export is real, its "
            f"{'classes' if manifest['model']['kind'] == 'segmentation' else 'poses'} are meaningless; "
            + (
                f"`edgepose weights --model {args.model}` lists the released checkpoints"
                if released
                else "no released checkpoint is known for it (--weights FILE takes your own)"
            ),
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    print(
        f"exported {args.model} ({manifest['model']['dataset']}) for {manifest['target']} in {seconds:.0f} s "
        f"-> {folder.resolve()}"
    )
    for name in (n for n in manifest["artifacts"] if n in model_files()):
        print(f"  {name}: {_size(folder / name)}, input {manifest['input']['shape']}")
    print(f"  precision: {manifest['precision']} ({manifest['format']})")
    if manifest.get("parity"):
        if manifest["parity"].get("outputs"):
            print(f"  parity vs PyTorch: {summary(manifest['parity'])}")
        if "agreement" in manifest["parity"]:  # edgepose.accuracy: poses vs PyTorch's on the photo
            from edgepose.accuracy.agreement import describe

            print(f"  agreement with PyTorch: {describe(manifest['parity']['agreement'])}")
        for warning in manifest["parity"].get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    built = manifest["export"].get("engine_build", {}).get("built_here")
    if built:
        print(
            f"  built {built['engine']} here: TensorRT {built['tensorrt_version']}, {built['precision']}, {built['gpu']}"
        )
    print("next:")
    for line in next_commands(folder, manifest, recipe.next_steps):
        print(f"  {line}")
    return 0
