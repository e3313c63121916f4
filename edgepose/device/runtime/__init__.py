"""One runtime interface over onnxruntime, TFLite and TensorRT; each backend is imported only when used.

``open_runtime(model_dir, manifest)`` picks the backend the manifest names (or the one asked for),
checks the model file's sha256 and returns a :class:`Runtime` whose ``run(batch)`` takes an NCHW
float32 batch and returns every output by name as NCHW float32, whatever the artifact's layout and
precision.
"""

import importlib

from ..formats import BACKENDS, get_backend
from ..manifest import default_backend, model_file
from .base import Runtime

__all__ = ["BACKENDS", "Runtime", "open_runtime"]


def open_runtime(model_dir, manifest, backend=None, threads=None, verify=True):
    """Load the model of ``model_dir`` on ``backend`` (default: the manifest's) with ``threads``."""
    backend = get_backend(backend or default_backend(manifest)).name
    path = model_file(model_dir, manifest, backend, verify=verify)
    # Each backend is its own module, imported only when used (a Pi never imports TensorRT).
    module = importlib.import_module("." + BACKENDS[backend].module, __name__)
    if threads is None:
        threads = (manifest.get("runtime") or {}).get("threads")
    return module.RUNTIME(path, manifest, threads=threads)
