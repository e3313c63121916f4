"""The export's agreement check: the staged artifact and its PyTorch model on the parity photo.

After a lowering has written and gated its model file, :func:`with_agreement` runs the file (on a
runtime installed here) and the PyTorch model rebuilt from the draft manifest through the same
pipeline on the parity photo, and adds the agreement AP (:mod:`edgepose.accuracy.agreement`) to the
fragment's parity block, so every manifest carries it. It informs; it does not gate the export.
One photo and two forward passes: a second or so next to the conversion itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgepose.accuracy.agreement import applies, measure, not_applicable, summary
from edgepose.accuracy.images import bundled_photo
from edgepose.errors import EdgeposeError

if TYPE_CHECKING:
    from edgepose.export.pipeline import ExportJob

PHOTO = "astronaut"  # the parity photo (edgepose.export.parity), here whole: the pipeline letterboxes it


def with_agreement(job: ExportJob, fragment: dict[str, Any]) -> dict[str, Any]:
    """``fragment`` with ``parity.agreement`` added: the summary, ``{"skipped": why}``, or
    ``{"not_applicable": why}`` for a segmentation model (its parity block has the pixel agreement)."""
    from edgepose.export.pipeline import build_manifest

    manifest = build_manifest(job, fragment)
    if not applies(manifest):
        return {**fragment, "parity": {**(fragment.get("parity") or {}), "agreement": not_applicable()}}
    try:
        result = measure(
            job.stage,
            [(PHOTO, bundled_photo(PHOTO))],
            photos_label=f"{PHOTO} (skimage), the parity photo",
            manifest=manifest,
            weights=job.weights.path if job.weights is not None else None,
        )
        agreement = summary(result)
    except EdgeposeError as exc:  # e.g. no runtime for this format on this machine
        agreement = {"skipped": str(exc)}
    return {**fragment, "parity": {**(fragment.get("parity") or {}), "agreement": agreement}}
