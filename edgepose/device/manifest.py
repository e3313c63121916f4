"""Read an artifact folder's manifest.json and check the folder's files against their sha256.

The manifest (docs/manifest.md, schema ``edgepose.manifest/1``) tells the device side everything it
needs: the model kind, joints, input layout and normalisation, and the outputs by role. Unknown keys
are ignored, so newer exporters stay readable.
"""

import hashlib
import json
import os

from .errors import EdgeposeError
from .formats import get_backend, get_format

SCHEMA = "edgepose.manifest/1"
MANIFEST = "manifest.json"


def load_manifest(model_dir):
    """Return the parsed manifest.json of ``model_dir``; a clear error if it is missing or not ours."""
    path = os.path.join(model_dir, MANIFEST)
    if not os.path.isdir(model_dir):
        raise EdgeposeError("model folder not found: {}".format(model_dir))
    if not os.path.isfile(path):
        raise EdgeposeError(
            "no manifest.json in {}: point at a folder written by `edgepose export`".format(model_dir)
        )
    try:
        with open(path, "r") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise EdgeposeError("cannot read {}: {}".format(path, exc)) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise EdgeposeError(
            "{} is not an edgepose manifest (schema {!r}, expected {!r})".format(path, found, SCHEMA)
        )
    for key in ("model", "input", "outputs"):
        if key not in manifest:
            raise EdgeposeError("{} lacks the {!r} section".format(path, key))
    return manifest


def default_backend(manifest):
    """The backend the manifest asks for (runtime.backend, else the format's default)."""
    backend = (manifest.get("runtime") or {}).get("backend")
    return backend or get_format(manifest.get("format")).backends[0]


def model_file(model_dir, manifest, backend, verify=True):
    """Path of the file ``backend`` loads, after checking every file the manifest lists (model and code).

    A backend whose file is built on the device (a TensorRT engine) is checked through the file it is
    built from, which the manifest lists, and the build's own record of that file's sha256.
    """
    fmt = get_format(manifest.get("format"))
    if backend not in fmt.backends:
        raise EdgeposeError(
            "backend {!r} cannot run this {} artifact; choose one of: {}".format(
                backend, fmt.name, ", ".join(fmt.backends)
            )
        )
    name = get_backend(backend).model_file
    path = os.path.join(model_dir, name)
    built_here = name != fmt.model_file
    if not os.path.isfile(path):
        if built_here and os.path.isfile(os.path.join(model_dir, fmt.model_file)):
            raise EdgeposeError(
                "no {} in {}: build it on this device first with `python3 build_engine.py`".format(
                    name, model_dir
                )
            )
        raise EdgeposeError("{} has no {} for the {} backend".format(model_dir, name, backend))
    if verify:
        if fmt.model_file not in (manifest.get("artifacts") or {}):
            raise EdgeposeError(
                "manifest.json in {} records no sha256 for {}".format(model_dir, fmt.model_file)
            )
        verify_artifacts(model_dir, manifest)
        if built_here:
            _check_engine_source(model_dir, manifest)
    return path


def _check_engine_source(model_dir, manifest):
    """Refuse an engine that build_engine.py made from another model.onnx (its engine.json says which)."""
    sidecar = os.path.join(model_dir, "engine.json")
    if not os.path.isfile(sidecar):
        return
    try:
        with open(sidecar, "r") as fh:
            built_from = json.load(fh).get("onnx_sha256")
    except (OSError, ValueError, AttributeError):
        return
    source = get_format(manifest.get("format")).model_file
    expected = ((manifest.get("artifacts") or {}).get(source) or {}).get("sha256")
    if built_from and expected and built_from != expected:
        raise EdgeposeError(
            "the engine in {} was built from another {}: rebuild it with `python3 build_engine.py`".format(
                model_dir, source
            )
        )


def verify_file(model_dir, manifest, name):
    """Raise unless ``name`` in ``model_dir`` has the sha256 the manifest records for it."""
    entry = (manifest.get("artifacts") or {}).get(name)
    if not entry or "sha256" not in entry:
        raise EdgeposeError("manifest.json in {} records no sha256 for {}".format(model_dir, name))
    actual = sha256_of(os.path.join(model_dir, name))
    if actual != entry["sha256"]:
        raise EdgeposeError(
            "{} in {} does not match its manifest (sha256 {}..., expected {}...): the file was changed or "
            "damaged; export or copy the folder again".format(
                name, model_dir, actual[:12], entry["sha256"][:12]
            )
        )


def verify_artifacts(model_dir, manifest):
    """Raise unless every file the manifest lists is in ``model_dir`` with its sha256; one line per mismatch.

    The code next to the model (``edgepose_device/*.py``, run.py, the engine builder) is checked too: an
    edited copy would run silently otherwise.
    """
    problems = []
    for name, entry in sorted((manifest.get("artifacts") or {}).items()):
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        path = os.path.join(model_dir, name)
        if not expected:
            problems.append("manifest.json in {} records no sha256 for {}".format(model_dir, name))
        elif not os.path.isfile(path):
            problems.append("{} in {} is missing (manifest.json lists it)".format(name, model_dir))
        else:
            actual = sha256_of(path)
            if actual != expected:
                problems.append(
                    "{} in {} does not match its manifest (sha256 {}..., expected {}...)".format(
                        name, model_dir, actual[:12], expected[:12]
                    )
                )
    if problems:
        problems[-1] += ": the folder was changed or damaged; export or copy it again"
        raise EdgeposeError("\n".join(problems))


def sha256_of(path):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def output_by_role(manifest, role):
    """The manifest entry of the output with ``role`` (e.g. 'heatmaps_tags'), or None."""
    for out in manifest["outputs"]:
        if out.get("role") == role:
            return out
    return None


def input_hw(manifest):
    """(H, W) of the model input, whatever its layout."""
    spec = manifest["input"]
    shape = spec["shape"]
    if spec.get("layout", "NCHW") == "NHWC":
        return int(shape[1]), int(shape[2])
    return int(shape[2]), int(shape[3])
