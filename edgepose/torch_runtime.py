"""Host-only runtime that runs an artifact's PyTorch model, to compare it with the exported one.

``edgepose infer DIR --backend torch`` and ``edgepose agree DIR`` rebuild the network the manifest
names (registry + the same weights: a checkpoint file given again, a released checkpoint by its
catalog name, or the exporter's seeded random weights) and run it eagerly behind the device runtime interface, so the same pipeline,
decoding and drawing can be checked against onnxruntime / TFLite / TensorRT output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from edgepose.device.runtime.base import Runtime
from edgepose.errors import EdgeposeError
from edgepose.models import build_seeded, load_weights
from edgepose.models.weights import read_checkpoint


class TorchRuntime(Runtime):
    """The registry model of a manifest, run in PyTorch (CPU, fp32, eval mode)."""

    backend = "torch"

    def __init__(self, manifest: dict, weights: str | os.PathLike | None = None, threads: int | None = None):
        super().__init__("pytorch", manifest, threads)
        self.version = torch.__version__.split("+")[0]
        self.max_batch = None
        info = manifest["model"]
        recorded = info.get("weights")
        random = bool(recorded) and recorded.get("kind") == "random"
        # random weights: the exporter's seed gives the exporter's model
        seed = int(recorded.get("seed", 0)) if random else 0
        self.model = build_seeded(info["name"], seed, dataset=info.get("dataset"))
        if random and weights is not None:
            raise EdgeposeError("this artifact has seeded random weights: leave --weights out")
        if weights is None and recorded and recorded.get("kind") == "catalog" and recorded.get("name"):
            from edgepose.hub import resolve_weights  # a released checkpoint: the cache, or a download

            weights = resolve_weights(recorded["name"]).path
        if weights is not None:
            load_weights(self.model, weights)
            self.path = str(weights)
        elif random:
            self.path = f"random weights (seed {recorded.get('seed', 0)})"
        elif recorded:
            raise EdgeposeError(
                f"this artifact was exported from weights {recorded.get('file')!r}: pass them with --weights"
            )
        else:
            raise EdgeposeError(
                "this manifest does not say which weights the artifact was exported from: pass them with --weights"
            )
        if recorded and recorded.get("sha256") and weights is not None:
            _check_same_weights(Path(weights), recorded["sha256"])
        # PyTorch takes and gives NCHW, whatever the artifact's layout (a TFLite folder's is NHWC).
        self.input_spec = {**self.input_spec, "layout": "NCHW"}
        self.output_specs = [{**spec, "layout": "NCHW"} for spec in self.output_specs]
        self.names = [o.name for o in self.model.spec.outputs]
        self.threads = threads

    def _infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.threads:
            torch.set_num_threads(int(self.threads))
        with torch.inference_mode():
            out = self.model(torch.from_numpy(x))
        outs = [out] if isinstance(out, torch.Tensor) else list(out)
        return {name: t.float().numpy() for name, t in zip(self.names, outs)}


def _check_same_weights(path: Path, sha256: str) -> None:
    """Refuse weights other than the ones the artifact was exported from."""
    from edgepose.device.manifest import sha256_of

    if sha256_of(str(path)) != sha256:
        read_checkpoint(path)  # a clearer error first if the file is not a checkpoint at all
        raise EdgeposeError(
            f"{path} is not the weights file this artifact was exported from (sha256 differs)"
        )
