"""MAC counting: true executed multiply-adds plus each paper's own convention (LitePose: ptflops, Lite-HRNet:
torchstat; Lite-HRNet segmentation: torchstat times a fitted factor, docs/segmentation.md).

from edgepose.macs import count_macs
r = count_macs(model, input_size=(448, 448))   # r.params, r.true_macs, r.paper_display, r.layers, ...
"""

from __future__ import annotations

import functools

import torch

from edgepose.macs.conventions import CONVENTIONS, Convention, get_convention
from edgepose.macs.count import LayerMacs, MacReport, count_macs
from edgepose.models.registry import ModelSpec, build_model, check_input_size, get_spec

# Published input sizes that depend on the dataset rather than the model: top-down MPII models use 256x256.
_DATASET_SIZES = {("top-down", "mpii"): (256, 256)}


def published_sizes(spec: ModelSpec, dataset: str) -> list[tuple[int, int]]:
    """The input sizes the paper reports for ``spec`` on ``dataset``, the default one first."""
    special = _DATASET_SIZES.get((spec.kind, dataset))
    if special is not None:
        return [special]
    return [spec.input_size, *spec.extra_sizes]


def count_registered(
    name: str,
    dataset: str | None = None,
    input_size: tuple[int, int] | None = None,
    convention: str | None = None,
) -> MacReport:
    """Build the registered model ``name`` on the meta device (no weights, no init cost) and count it.

    ``input_size`` defaults to the published size for the dataset.
    """
    spec = get_spec(name)
    dataset = dataset or spec.default_dataset
    size = input_size or published_sizes(spec, dataset)[0]
    check_input_size(spec, *size)  # before building: a bad size is the user's error, not the model's
    return count_macs(_model_to_count(name, dataset), size, convention)


@functools.lru_cache(maxsize=32)
def _model_to_count(name: str, dataset: str) -> torch.nn.Module:
    """The model, built on the meta device where its builder allows (else on the CPU); count_macs only reads it."""
    try:
        with torch.device("meta"):
            return build_model(name, dataset=dataset)
    except (NotImplementedError, RuntimeError):
        return build_model(name, dataset=dataset)


__all__ = [
    "CONVENTIONS",
    "Convention",
    "LayerMacs",
    "MacReport",
    "count_macs",
    "count_registered",
    "get_convention",
    "published_sizes",
]
