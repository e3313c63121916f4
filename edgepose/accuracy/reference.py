"""What ``edgepose eval MODEL`` runs: a registry model in PyTorch, described by an in-memory manifest.

The manifest is the one ``edgepose export`` would write for this model, weights and input size
(its ``model``, ``input`` and ``outputs`` sections, from the export pipeline's own builders), so the
device pipeline decodes the PyTorch model exactly as it decodes an exported artifact of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgepose.device.manifest import SCHEMA


def model_manifest(
    model_name: str,
    weights: str | os.PathLike | None = None,
    dataset: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> tuple[dict[str, Any], Path | None]:
    """The manifest of ``model_name`` with these weights (None: the exporter's seeded random weights),
    and the checkpoint file to load (None for random weights)."""

    from edgepose.export.pipeline import RANDOM_SEED, ExportJob, io_sections, model_section, resolve_source
    from edgepose.models import build_seeded, get_spec

    spec = get_spec(model_name)
    used, dataset, (height, width) = resolve_source(spec, weights, dataset, input_size)
    model = build_seeded(model_name, RANDOM_SEED, dataset=dataset)
    job = ExportJob(
        model_name=model_name,
        model=model,
        spec=spec,
        dataset=model.dataset,
        input_size=(height, width),
        recipe=None,  # nothing is exported: the model, input and outputs sections do not read it
        stage=Path("."),
        weights=used,
    )
    inp, outs = io_sections(job)
    manifest = {
        "schema": SCHEMA,
        "model": model_section(job),
        "input": inp,
        "outputs": outs,
        "format": "pytorch",
        "precision": "fp32",
    }
    return manifest, (used.path if used is not None else None)
