"""Host-only runtime that runs an artifact's PyTorch model, to compare it with the exported one.

``edgepose infer DIR --backend torch`` rebuilds the network the manifest names (registry + the
same weights) and runs it eagerly behind the device runtime interface, so the same pipeline,
decoding and drawing can be checked against onnxruntime / TFLite / TensorRT output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from edgepose.device.runtime.base import Runtime
from edgepose.errors import EdgeposeError
from edgepose.models import build_model, load_weights
from edgepose.models.weights import read_checkpoint


class TorchRuntime(Runtime):
    """The registry model of a manifest, run in PyTorch (CPU, fp32, eval mode)."""

    backend = "torch"

    def __init__(self, manifest: dict, weights: str | os.PathLike | None = None, threads: int | None = None):
        super().__init__("pytorch", manifest, threads)
        self.version = torch.__version__.split("+")[0]
        self.max_batch = None
        info = manifest["model"]
        self.model = build_model(info["name"], dataset=info.get("dataset"))
        recorded = info.get("weights")
        if weights is not None:
            load_weights(self.model, weights)
            self.path = str(weights)
        elif recorded:
            raise EdgeposeError(
                f"this artifact was exported from weights {recorded.get('file')!r}: pass them with --weights"
            )
        else:
            raise EdgeposeError(
                "this artifact has random weights, which cannot be rebuilt: export it with --weights FILE "
                "and pass the same file to --weights"
            )
        if recorded and recorded.get("sha256"):
            _check_same_weights(Path(weights), recorded["sha256"])
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
