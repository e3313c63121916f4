"""The bench's artifact cache: export each model once per profile, reuse it while it still matches.

A cached folder carries export's own name (:meth:`edgepose.export.recipe.Recipe.folder_name`) and is
reused only when every file matches its manifest, it was made for the same model, target, precision
and edgepose version, and its ``edgepose_device/`` copy is today's device code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import edgepose
from edgepose.bench.profiles import DeviceProfile
from edgepose.device import bench as device_bench
from edgepose.device.manifest import load_manifest, sha256_of, verify_file
from edgepose.errors import EdgeposeError


def reusable(folder: Path, model: str, target: str, precision: str) -> bool:
    """True when ``folder`` holds a complete artifact of this model/target/precision made by this edgepose."""
    try:
        manifest = load_manifest(str(folder))
        for name in manifest.get("artifacts", {}):
            verify_file(str(folder), manifest, name)
    except EdgeposeError:
        return False
    return (
        device_code_current(manifest)
        and manifest["model"].get("name") == model
        and manifest.get("target") == target
        and manifest.get("precision") == precision
        and manifest.get("edgepose_version") == edgepose.__version__
    )


def device_code_current(manifest: dict[str, Any]) -> bool:
    """True when the artifact's ``edgepose_device/`` copy is today's device code (else re-export)."""
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
    model: str,
    profile: DeviceProfile,
    cache: Path,
    dataset: str | None = None,
    size: tuple[int, int] | None = None,
) -> Path:
    """Export ``model`` with the profile's resolved recipe into ``cache``, or reuse a matching artifact there."""
    from edgepose.models.registry import get_spec

    spec = get_spec(model)
    dataset = dataset if dataset in spec.datasets else spec.default_dataset
    size = size or spec.input_size
    recipe = profile.recipe
    folder = cache / recipe.folder_name(model, dataset, size)
    if reusable(folder, model, recipe.name, recipe.precision):
        return folder
    from edgepose.export.pipeline import export_model

    print(f"[bench] exporting {model} ({recipe.name}, {recipe.precision}) -> {folder}", file=sys.stderr)
    return export_model(model, recipe, dataset=dataset, input_size=size, out=folder)
