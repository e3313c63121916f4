"""Read an artifact folder's manifest.json and check the model file against its sha256.

The manifest (docs/manifest.md, schema ``edgepose.manifest/1``) tells the device side everything it
needs: the model kind, joints, input layout and normalisation, and the outputs by role. Unknown keys
are ignored, so newer exporters stay readable.
"""

import hashlib
import json
import os

from .errors import EdgeposeError

SCHEMA = "edgepose.manifest/1"
# The file each backend loads; the TensorRT engine is built on the device from model.onnx.
MODEL_FILES = {"onnxruntime": "model.onnx", "tflite": "model.tflite", "tensorrt": "model.engine"}
DEFAULT_BACKENDS = {"onnx": "onnxruntime", "tflite": "tflite", "tensorrt": "tensorrt"}


def load_manifest(model_dir):
    """Return the parsed manifest.json of ``model_dir``; a clear error if it is missing or not ours."""
    path = os.path.join(model_dir, "manifest.json")
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
    """The backend the manifest asks for (runtime.backend, else the one that fits the format)."""
    backend = (manifest.get("runtime") or {}).get("backend")
    return backend or DEFAULT_BACKENDS.get(manifest.get("format"), "onnxruntime")


def model_file(model_dir, manifest, backend, verify=True):
    """Path of the file ``backend`` loads, after checking it against the manifest's sha256."""
    if backend not in MODEL_FILES:
        raise EdgeposeError("unknown backend {!r}; known: {}".format(backend, ", ".join(sorted(MODEL_FILES))))
    name = MODEL_FILES[backend]
    path = os.path.join(model_dir, name)
    if not os.path.isfile(path):
        if backend == "tensorrt" and os.path.isfile(os.path.join(model_dir, "model.onnx")):
            raise EdgeposeError(
                "no model.engine in {}: build it on this device first with `python3 build_engine.py`".format(
                    model_dir
                )
            )
        raise EdgeposeError("{} has no {} for the {} backend".format(model_dir, name, backend))
    if verify:
        # The engine is built on the device, so only the ONNX it came from is in the manifest.
        checked = "model.onnx" if backend == "tensorrt" else name
        verify_file(model_dir, manifest, checked)
        if backend == "tensorrt":
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
    expected = ((manifest.get("artifacts") or {}).get("model.onnx") or {}).get("sha256")
    if built_from and expected and built_from != expected:
        raise EdgeposeError(
            "model.engine in {} was built from another model.onnx: rebuild it with `python3 build_engine.py`".format(
                model_dir
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
