"""Parity gates: an exported model and PyTorch on the same real photo, compared against limits.

The input is scikit-image's ``astronaut`` (bundled with the package, nothing to download), brought to
the model's input exactly as the device pipeline brings a frame (``edgepose.device.preprocess``), so
that the heatmaps have real peaks and peak agreement means something.

Each output is judged by the agreement figure of its role (:data:`AGREEMENTS`): heatmaps by where their
peaks are, segmentation logits by the class each pixel gets (argmax over the channels). A recipe's
``min_<figure>`` threshold applies to the outputs that have that figure, so one parity table per
precision serves pose and segmentation models alike.

:func:`gate` is a pure function: reference and candidate outputs, the recipe's limits and what is
known about the network's own noise in; the verdict, the effective limits and the figures out. The
figures go into the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgepose.device.preprocess import INPUT_NORMALIZATION, Normalizer, letterbox_matrix, warp
from edgepose.errors import EdgeposeError
from edgepose.export.recipe import PARITY_THRESHOLDS

SAMPLE_NAME = "astronaut (skimage), letterboxed"
NOISE_FACTOR = 2.0  # candidate vs fp32 may be off by fp32's error plus its own, each <= the floor


@dataclass(frozen=True)
class Floor:
    """What a network loses before this converter is involved, and how far below it a file may go.

    ``outputs``: figures per output (:func:`output_figures`) of e.g. the BN-folded model with fp16-rounded
    weights in PyTorch, or onnxruntime's int8 of the same network.
    """

    outputs: Mapping[str, dict]
    margin: Mapping[str, float]  # {"sqnr_db": dB, "peak_agreement": fraction, "pixel_agreement": fraction}


def sample_input(input_size: tuple[int, int], layout: str = "NCHW", batch: int = 1) -> np.ndarray:
    """The parity input: the astronaut photo at ``input_size`` (H, W), float32, batch first.

    A batch alternates the photo and its mirror image, so that mixing up images in a batch shows.
    """
    from skimage import data  # dev/export dependency; imported late so the module loads without it

    if layout not in ("NCHW", "NHWC"):
        raise EdgeposeError(f"unknown layout {layout!r}; expected NCHW or NHWC")
    bgr = np.ascontiguousarray(data.astronaut()[..., ::-1])
    crop = warp(bgr, letterbox_matrix(bgr.shape[:2], input_size), input_size)
    images = Normalizer(INPUT_NORMALIZATION)([crop if i % 2 == 0 else crop[:, ::-1] for i in range(batch)])
    return np.ascontiguousarray(images if layout == "NCHW" else images.transpose(0, 2, 3, 1))


def peak_agreement(reference: np.ndarray, candidate: np.ndarray, channels: int | None = None) -> float:
    """Fraction of (image, joint) heatmaps whose argmax location is the same; NCHW arrays."""
    n, c = reference.shape[:2]
    c = c if channels is None else min(channels, c)
    ref = reference[:, :c].reshape(n * c, -1).argmax(axis=1)
    cand = candidate[:, :c].reshape(n * c, -1).argmax(axis=1)
    return float(np.mean(ref == cand))


def pixel_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction of (image, pixel) positions whose class (argmax over the channels) is the same; NCHW logits."""
    return float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))


class Agreement(NamedTuple):
    """An agreement figure: its key in the figures (``min_<key>`` is its threshold), short name, digits."""

    figure: str
    short: str
    digits: int  # pixel agreement is gated near 1 (99.9 %), so it is printed with more digits


PEAKS = Agreement("peak_agreement", "peaks", 3)
PIXELS = Agreement("pixel_agreement", "pixels", 5)
# The agreement figure that means something for each output role (the manifest's ``role``).
AGREEMENTS = {"heatmaps": PEAKS, "heatmaps_tags": PEAKS, "logits": PIXELS}


def output_figures(
    reference: np.ndarray, candidate: np.ndarray, heatmap_channels: int | None = None, role: str = "heatmaps"
) -> dict:
    """max/mean abs diff, SQNR (dB; None when the two are identical) and the agreement figure of ``role``."""
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
    agreement = AGREEMENTS.get(role)
    if agreement is None:
        raise EdgeposeError(f"no agreement figure for output role {role!r}; known: {', '.join(AGREEMENTS)}")
    figures = {
        "max_abs_diff": float(np.max(np.abs(err))) if err.size else 0.0,
        "mean_abs_diff": float(np.mean(np.abs(err))) if err.size else 0.0,
        "sqnr_db": sqnr,
    }
    if agreement is PIXELS:
        figures[PIXELS.figure] = pixel_agreement(reference, candidate)
    else:
        figures[PEAKS.figure] = peak_agreement(reference, candidate, heatmap_channels)
    return figures


def relative_limits(
    limits: Mapping[str, float], floor: Mapping[str, dict], margin: Mapping[str, float]
) -> dict[str, float]:
    """The bars, lowered to (floor - margin) where the floor itself is below them.

    ``floor``: figures per output of what the network costs before this converter is involved.
    """
    out = dict(limits)
    worst_sqnr = min((f["sqnr_db"] for f in floor.values() if f["sqnr_db"] is not None), default=None)
    if "min_sqnr_db" in out and worst_sqnr is not None:
        out["min_sqnr_db"] = min(out["min_sqnr_db"], worst_sqnr - margin["sqnr_db"])
    for figure in (PEAKS.figure, PIXELS.figure):
        key = f"min_{figure}"
        worst = min((f[figure] for f in floor.values() if figure in f), default=None)
        if key in out and worst is not None and worst < out[key]:  # the floor itself moves peaks / classes
            out[key] = worst - margin[figure]
    return out


def effective_limits(
    limits: Mapping[str, float], noise: Mapping[str, float] | None = None, floor: Floor | None = None
) -> dict[str, float]:
    """The thresholds a gate checks: the recipe's, adjusted for the network's own noise.

    Where PyTorch's fp32 is itself further than ``max_abs_diff`` from fp64 on the photo (``noise``) and
    the limits name a ``noisy_min_sqnr_db``, an absolute bar says nothing: the gate becomes that SQNR.
    A ``floor`` lowers the SQNR / peak bars to what the network loses anyway (:func:`relative_limits`).
    """
    out = {k: float(v) for k, v in limits.items() if k in PARITY_THRESHOLDS}
    noisy_sqnr = limits.get("noisy_min_sqnr_db")
    if (
        noise
        and noisy_sqnr is not None
        and "max_abs_diff" in out
        and max(noise.values()) > out["max_abs_diff"]
    ):
        del out["max_abs_diff"]
        out["min_sqnr_db"] = max(float(noisy_sqnr), out.get("min_sqnr_db", -math.inf))
    if floor is not None:
        out = relative_limits(out, floor.outputs, floor.margin)
    return out


def _failures(name: str, figures: dict, thresholds: Mapping[str, float]) -> list[str]:
    out = []
    for key in ("max_abs_diff", "mean_abs_diff"):
        limit = figures.get(f"{key}_limit", thresholds.get(key))
        if limit is not None and not figures[key] <= limit:
            out.append(f"{name}: {key} {figures[key]:.3g} > {limit:.3g}")
    sqnr = figures["sqnr_db"]
    if "min_sqnr_db" in thresholds and sqnr is not None and not sqnr >= thresholds["min_sqnr_db"]:
        out.append(f"{name}: SQNR {sqnr:.1f} dB < {thresholds['min_sqnr_db']:.1f} dB")
    for a in (PEAKS, PIXELS):
        bar = thresholds.get(f"min_{a.figure}")
        if bar is not None and a.figure in figures and figures[a.figure] < bar:
            what = a.figure.replace("_", " ")
            out.append(f"{name}: {what} {figures[a.figure]:.{a.digits}f} < {bar:.{a.digits}f}")
    return out


def _applicable(thresholds: dict[str, float], roles: list[str]) -> dict[str, float]:
    """The thresholds without the agreement bars of figures no output has (a pose model under a table
    that also gates segmentation pixels, and the reverse)."""
    unused = {f"min_{a.figure}" for a in (PEAKS, PIXELS)} - {f"min_{AGREEMENTS[r].figure}" for r in roles}
    return {k: v for k, v in thresholds.items() if k not in unused}


def noise_floor(reference: Mapping[str, np.ndarray], exact: Mapping[str, np.ndarray]) -> dict[str, float]:
    """max |fp32 - fp64| per output: the rounding noise PyTorch fp32 itself has on this input."""
    return {k: float(np.max(np.abs(reference[k].astype(np.float64) - exact[k]))) for k in reference}


def gate(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    limits: Mapping[str, float],
    heatmap_channels: Mapping[str, int] | None = None,
    noise: Mapping[str, float] | None = None,
    floor: Floor | None = None,
    roles: Mapping[str, str] | None = None,
) -> dict:
    """Compare outputs by name (NCHW) under ``limits``; ``passed`` when every output meets every threshold.

    ``limits``: a recipe's parity table (thresholds and the fp32 noise settings). ``heatmap_channels``
    maps an output to how many leading channels are heatmaps (for peak agreement; e.g. J for LitePose's
    heatmaps+tags output); default: all. ``noise`` (from :func:`noise_floor`) lets ``max_abs_diff`` grow
    to ``noise_factor`` x PyTorch's own fp32 rounding noise per output (a runtime summing in another
    order adds its own rounding), and may switch the bar to SQNR (:func:`effective_limits`); a wrong
    graph is off by far more. ``floor`` lowers the bars to what the network loses anyway. ``roles`` maps
    an output to its role (default "heatmaps"), which picks its agreement figure (:data:`AGREEMENTS`); an
    agreement threshold that no output has a figure for is left out. Returns
    ``{"outputs", "thresholds" (the effective ones), "passed", "failures"}``.
    """
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise EdgeposeError(f"the exported model lacks outputs {missing}; it has {sorted(candidate)}")
    factor = float(limits.get("noise_factor", NOISE_FACTOR))
    channels = heatmap_channels or {}
    role = {name: (roles or {}).get(name, "heatmaps") for name in reference}
    thresholds = _applicable(effective_limits(limits, noise, floor), list(role.values()))
    outputs, failures = {}, []
    for name, ref in reference.items():
        figures = output_figures(np.asarray(ref), np.asarray(candidate[name]), channels.get(name), role[name])
        if noise is not None:
            figures["fp32_noise_floor"] = noise[name]
            if "max_abs_diff" in thresholds:
                figures["max_abs_diff_limit"] = max(thresholds["max_abs_diff"], factor * noise[name])
        outputs[name] = figures
        failures += _failures(name, figures, thresholds)
    return {"outputs": outputs, "thresholds": thresholds, "passed": not failures, "failures": failures}


def summary(result: dict) -> str:
    """One line of figures per comparison, for messages and the CLI."""
    parts = []
    for name, f in result["outputs"].items():
        sqnr = "exact" if f["sqnr_db"] is None else f"{f['sqnr_db']:.1f} dB"
        agree = [f"{a.short} {f[a.figure]:.{a.digits}f}" for a in (PEAKS, PIXELS) if a.figure in f]
        parts.append(", ".join([f"{name}: max|diff| {f['max_abs_diff']:.2e}", f"SQNR {sqnr}", *agree]))
    return "; ".join(parts)
