"""The model kinds, written once: what a manifest's ``model.kind`` may be.

Each kind has its pipeline on the device (``pipeline.PIPELINES``) and may have its own parity limits in
an export recipe (``[parity.<kind>]``, ``[parity.<precision>.<kind>]``): a segmentation model's logits
are gated on per-pixel classes and SQNR, a pose model's heatmaps on an absolute difference and peaks.
Torch-free, Python 3.6: the device side reads it too.
"""

KINDS = ("bottom-up", "top-down", "segmentation")
POSE_KINDS = ("bottom-up", "top-down")  # kinds that find people with keypoints (agreement AP applies)
