"""Accuracy of poses: COCO keypoint OKS and AP (``oks``, ``ap``), the agreement of an exported artifact
with its own PyTorch model (``agreement``), and AP on a labelled COCO-format set (``coco_eval``).

docs/accuracy.md explains what each number means.
"""
