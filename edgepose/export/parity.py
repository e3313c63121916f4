"""Parity checks: run an exported model and PyTorch on the same real photo and compare the outputs.

The input is scikit-image's ``astronaut`` (bundled with the package, nothing to download),
letterboxed to the model's input size and normalised like inference pre-processing, so that the
heatmaps have real peaks and peak agreement means something. The figures go into the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from edgepose.errors import EdgeposeError

# ImageNet statistics, as both papers' pre-processing uses; written into every manifest.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SAMPLE_NAME = "astronaut (skimage), letterboxed"
NOISE_FACTOR = 2.0  # candidate vs fp32 may be off by fp32's error plus its own, each <= the floor


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``image`` (H, W, C uint8) to fit ``height`` x ``width`` keeping its aspect, pad with zeros."""
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((height, width, image.shape[2]), dtype=image.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def normalize(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (H, W, 3): /255, then ImageNet mean/std."""
    x = image_rgb.astype(np.float32) / 255.0
    return (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)


def sample_input(input_size: tuple[int, int], layout: str = "NCHW", batch: int = 1) -> np.ndarray:
    """The parity input: astronaut photo at ``input_size`` (H, W), float32, batch first."""
    from skimage import data  # dev/export dependency; imported late so the module loads without it

    height, width = input_size
    if layout not in ("NCHW", "NHWC"):
        raise EdgeposeError(f"unknown layout {layout!r}; expected NCHW or NHWC")
    x = normalize(letterbox(data.astronaut(), height, width))  # H, W, C
    # A batch alternates the photo and its mirror image, so that mixing up images in a batch shows.
    images = np.stack([x if i % 2 == 0 else x[:, ::-1] for i in range(batch)])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2) if layout == "NCHW" else images)


def peak_agreement(reference: np.ndarray, candidate: np.ndarray, channels: int | None = None) -> float:
    """Fraction of (image, joint) heatmaps whose argmax location is the same; NCHW arrays."""
    n, c = reference.shape[:2]
    c = c if channels is None else min(channels, c)
    ref = reference[:, :c].reshape(n * c, -1).argmax(axis=1)
    cand = candidate[:, :c].reshape(n * c, -1).argmax(axis=1)
    return float(np.mean(ref == cand))


def output_figures(reference: np.ndarray, candidate: np.ndarray, heatmap_channels: int | None = None) -> dict:
    """max/mean abs diff, SQNR (dB; None when the two are identical) and peak agreement of one output."""
    if reference.shape != candidate.shape:
        raise EdgeposeError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    ref = reference.astype(np.float64)
    err = candidate.astype(np.float64) - ref
    noise = float(np.sum(err * err))
    signal = float(np.sum(ref * ref))
    if noise == 0.0:
        sqnr = None
    else:
        sqnr = 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf
    return {
        "max_abs_diff": float(np.max(np.abs(err))) if err.size else 0.0,
        "mean_abs_diff": float(np.mean(np.abs(err))) if err.size else 0.0,
        "sqnr_db": sqnr,
        "peak_agreement": peak_agreement(reference, candidate, heatmap_channels),
    }


def _failures(name: str, figures: dict, thresholds: Mapping[str, float], noise_factor: float) -> list[str]:
    out = []
    for key in ("max_abs_diff", "mean_abs_diff"):
        limit = thresholds.get(key)
        if key == "max_abs_diff" and limit is not None and figures.get("fp32_noise_floor") is not None:
            limit = max(limit, noise_factor * figures["fp32_noise_floor"])
            figures["max_abs_diff_limit"] = limit
        if limit is not None and not figures[key] <= limit:
            out.append(f"{name}: {key} {figures[key]:.3g} > {limit:.3g}")
    sqnr = figures["sqnr_db"]
    if "min_sqnr_db" in thresholds and sqnr is not None and not sqnr >= thresholds["min_sqnr_db"]:
        out.append(f"{name}: SQNR {sqnr:.1f} dB < {thresholds['min_sqnr_db']:.1f} dB")
    if "min_peak_agreement" in thresholds and figures["peak_agreement"] < thresholds["min_peak_agreement"]:
        out.append(
            f"{name}: peak agreement {figures['peak_agreement']:.3f} < {thresholds['min_peak_agreement']:.3f}"
        )
    return out


def noise_floor(reference: Mapping[str, np.ndarray], exact: Mapping[str, np.ndarray]) -> dict[str, float]:
    """max |fp32 - fp64| per output: the rounding noise PyTorch fp32 itself has on this input."""
    return {k: float(np.max(np.abs(reference[k].astype(np.float64) - exact[k]))) for k in reference}


def compare(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    heatmap_channels: Mapping[str, int] | None = None,
    floor: Mapping[str, float] | None = None,
    noise_factor: float = NOISE_FACTOR,
) -> dict:
    """Compare outputs by name (NCHW); ``passed`` is True when every output meets every threshold.

    ``heatmap_channels`` maps an output name to how many leading channels are heatmaps (for
    peak agreement; e.g. J for LitePose's heatmaps+tags output); default: all channels.
    ``floor`` (from :func:`noise_floor`) lets ``max_abs_diff`` grow to ``noise_factor`` x PyTorch's own
    fp32 rounding noise (a runtime summing in another order adds its own rounding): a deep network
    with outputs in the hundreds (Lite-HRNet with full-strength random gates) cannot be reproduced to
    1e-4 by any fp32 runtime, PyTorch included, while a wrong graph is off by far more.
    """
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise EdgeposeError(f"the exported model lacks outputs {missing}; it has {sorted(candidate)}")
    channels = heatmap_channels or {}
    outputs, failures = {}, []
    for name, ref in reference.items():
        figures = output_figures(np.asarray(ref), np.asarray(candidate[name]), channels.get(name))
        if floor is not None:
            figures["fp32_noise_floor"] = floor[name]
        outputs[name] = figures
        failures += _failures(name, figures, thresholds, noise_factor)
    return {"outputs": outputs, "thresholds": dict(thresholds), "passed": not failures, "failures": failures}


def summary(result: dict) -> str:
    """One line of figures per comparison, for messages and the CLI."""
    parts = []
    for name, f in result["outputs"].items():
        sqnr = "exact" if f["sqnr_db"] is None else f"{f['sqnr_db']:.1f} dB"
        parts.append(
            f"{name}: max|diff| {f['max_abs_diff']:.2e}, SQNR {sqnr}, peaks {f['peak_agreement']:.3f}"
        )
    return "; ".join(parts)
