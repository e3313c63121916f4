"""The parity gate's arithmetic (export/parity.py) and the per-precision verdict (export/precision_gates.py).

Every expected figure here is computed by hand in the comment beside it (or from the published ImageNet
normalisation), never by the functions under test; each threshold is checked just at and just past its
limit, so that a limit that moves or an inequality that flips fails a test.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from edgepose.errors import EdgeposeError
from edgepose.export import parity, precision_gates


def nchw(*values: float, joints: int = 1) -> np.ndarray:
    """A (1, joints, 1, n/joints) float32 array holding ``values``."""
    return np.asarray(values, np.float32).reshape(1, joints, 1, -1)


# ---- figures ----


def test_output_figures_by_hand():
    # err = [0, 1, -2, 0]: max 2, mean 3/4; signal 9+16+4+1 = 30, noise 0+1+4+0 = 5 -> 10 log10(6) dB
    ref, cand = nchw(3, 4, 2, 1), nchw(3, 5, 0, 1)
    f = parity.output_figures(ref, cand)
    assert f["max_abs_diff"] == 2.0 and f["mean_abs_diff"] == 0.75
    assert f["sqnr_db"] == pytest.approx(10 * math.log10(6.0), abs=1e-12)  # 7.7815 dB
    assert f["peak_agreement"] == 1.0  # both peak at index 1
    assert set(f) == {"max_abs_diff", "mean_abs_diff", "sqnr_db", "peak_agreement"}
    # Identical: no noise, SQNR None (exact); an all-zero reference with noise: -inf.
    assert parity.output_figures(ref, ref.copy())["sqnr_db"] is None
    assert parity.output_figures(nchw(0, 0), nchw(0, 1))["sqnr_db"] == -math.inf
    # A weak signal is still a signal: 0.25 / 0.0625 -> 10 log10(4) = 6.02 dB.
    assert parity.output_figures(nchw(0.5), nchw(0.25))["sqnr_db"] == pytest.approx(10 * math.log10(4.0))
    # Squares of float32 values near 3e20 overflow float32: the figures are taken in float64.
    huge = nchw(3e20, 3e20)
    assert parity.output_figures(huge, huge * np.float32(1.5))["sqnr_db"] == pytest.approx(
        10 * math.log10(4.0)
    )
    # In float64: 1e-8 differences on 1e4 values survive (float32 would round them to 0).
    big = np.full((1, 1, 1, 2), 1e4)
    assert parity.output_figures(big, big + 1e-8)["sqnr_db"] == pytest.approx(240.0, abs=0.01)
    with pytest.raises(
        EdgeposeError, match=r"output shapes differ: reference \(1, 1, 1, 4\), candidate \(1, 1, 1, 3\)"
    ):
        parity.output_figures(ref, nchw(1, 2, 3))


def test_peak_agreement_counts_channels_and_images():
    ref = np.zeros((2, 3, 2, 2), np.float32)
    ref[:, :, 0, 0] = 1.0  # every peak top-left
    cand = ref.copy()
    cand[0, 2, 1, 1] = 2.0  # image 0, joint 2 peaks elsewhere
    cand[1, 0, 0, 1] = 5.0  # image 1, joint 0 too
    assert parity.peak_agreement(ref, cand) == pytest.approx(4 / 6)
    assert parity.peak_agreement(ref, cand, channels=2) == pytest.approx(3 / 4)  # joint 2 not a heatmap
    assert parity.peak_agreement(ref, cand, channels=1) == 0.5
    assert parity.peak_agreement(ref, cand, channels=9) == pytest.approx(4 / 6)  # capped at the 3 channels
    assert parity.output_figures(ref, cand, heatmap_channels=1)["peak_agreement"] == 0.5


def test_noise_floor_is_the_largest_fp32_error_per_output():
    fp32 = {"a": nchw(1.0, 2.0), "b": nchw(5.0)}
    exact = {"a": np.array([1.0, 2.5]).reshape(1, 1, 1, 2), "b": np.array([4.75]).reshape(1, 1, 1, 1)}
    assert parity.noise_floor(fp32, exact) == {"a": 0.5, "b": 0.25}


# ---- limits ----


def test_relative_limits_lower_the_bars_to_the_floor_minus_the_margin():
    bar = {"min_sqnr_db": 40.0, "min_peak_agreement": 0.9, "max_abs_diff": 1.0}
    margin = {"sqnr_db": 5.0, "peak_agreement": 0.1}
    floor = {"a": {"sqnr_db": 30.0, "peak_agreement": 0.8}, "b": {"sqnr_db": None, "peak_agreement": 1.0}}
    # the worst SQNR 30 (None = exact is ignored) - 5 = 25; the worst peaks 0.8 - 0.1 = 0.7; the rest kept
    assert parity.relative_limits(bar, floor, margin) == {
        "min_sqnr_db": 25.0,
        "min_peak_agreement": pytest.approx(0.7),
        "max_abs_diff": 1.0,
    }
    # A floor above the bar never raises it; a floor whose peaks meet the bar exactly leaves that bar.
    high = {"a": {"sqnr_db": 90.0, "peak_agreement": 0.9}}
    assert parity.relative_limits(bar, high, margin) == bar
    # Exact floors (no SQNR) leave the SQNR bar; bars the recipe does not set are not invented.
    exact = {"a": {"sqnr_db": None, "peak_agreement": 1.0}}
    assert parity.relative_limits(bar, exact, margin) == bar
    assert parity.relative_limits({}, floor, margin) == {}
    assert bar == {"min_sqnr_db": 40.0, "min_peak_agreement": 0.9, "max_abs_diff": 1.0}  # not rewritten


def test_effective_limits_switch_to_sqnr_only_above_the_absolute_bar():
    limits = {"max_abs_diff": 1e-4, "mean_abs_diff": 1e-5, "noisy_min_sqnr_db": 50, "noise_factor": 3}
    # Settings are not thresholds; no noise: the recipe's bars as floats.
    assert parity.effective_limits(limits) == {"max_abs_diff": 1e-4, "mean_abs_diff": 1e-5}
    assert parity.effective_limits(limits, {"h": 1e-4}) == {"max_abs_diff": 1e-4, "mean_abs_diff": 1e-5}  # at
    switched = parity.effective_limits(limits, {"h": 1e-6, "o": 2e-4})  # the noisiest output decides
    assert switched == {"mean_abs_diff": 1e-5, "min_sqnr_db": 50.0}
    assert isinstance(switched["min_sqnr_db"], float)
    # A recipe SQNR bar above the noisy one stays; one below it is raised to it.
    assert parity.effective_limits({**limits, "min_sqnr_db": 70}, {"h": 1.0})["min_sqnr_db"] == 70.0
    assert parity.effective_limits({**limits, "min_sqnr_db": 30}, {"h": 1.0})["min_sqnr_db"] == 50.0
    # Without a noisy bar, or without an absolute bar, nothing switches.
    no_switch = {"max_abs_diff": 1e-4}
    assert parity.effective_limits(no_switch, {"h": 1.0}) == no_switch
    assert parity.effective_limits({"noisy_min_sqnr_db": 50}, {"h": 1.0}) == {}
    assert parity.effective_limits(limits, {}) == {"max_abs_diff": 1e-4, "mean_abs_diff": 1e-5}
    # A floor lowers the bars after the switch.
    floor = parity.Floor(
        {"h": {"sqnr_db": 45.0, "peak_agreement": 1.0}}, {"sqnr_db": 5.0, "peak_agreement": 0}
    )
    assert parity.effective_limits(limits, {"h": 1.0}, floor)["min_sqnr_db"] == 40.0


# ---- the gate: each threshold at its limit passes, just past it fails ----


def test_every_bar_passes_at_its_limit_and_fails_past_it():
    ref = {"h": nchw(0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 3.0, joints=4)}
    moved = ref["h"].copy()
    moved[0, 0, 0] = [1.0, 0.0]  # joint 0 peaks at 0, the reference's at 1: err 1 and -1
    # err = [1, -1, 0, 0, 0, 0, 0, 0]: max 1, mean 0.25; signal 14, noise 2: 10 log10(7) = 8.45 dB; peaks 3/4
    cand = {"h": moved}
    sqnr = 10 * math.log10(7.0)
    at = {"max_abs_diff": 1.0, "mean_abs_diff": 0.25, "min_sqnr_db": sqnr, "min_peak_agreement": 0.75}
    verdict = parity.gate(ref, cand, at)
    assert verdict["passed"] and verdict["failures"] == [] and verdict["thresholds"] == at
    assert verdict["outputs"]["h"]["peak_agreement"] == 0.75
    past = {
        "max_abs_diff": 0.999,
        "mean_abs_diff": 0.249,
        "min_sqnr_db": sqnr + 0.01,
        "min_peak_agreement": 0.76,
    }
    for key, limit in past.items():
        result = parity.gate(ref, cand, {**at, key: limit})
        assert not result["passed"] and len(result["failures"]) == 1, key
    failures = parity.gate(ref, cand, past)["failures"]
    assert failures == [
        "h: max_abs_diff 1 > 0.999",
        "h: mean_abs_diff 0.25 > 0.249",
        "h: SQNR 8.5 dB < 8.5 dB",
        "h: peak agreement 0.750 < 0.760",
    ]
    # An exact match has no SQNR and passes any SQNR bar.
    assert parity.gate(ref, {"h": ref["h"].copy()}, {"min_sqnr_db": 500.0})["passed"]


def test_noise_allowance_is_the_factor_times_the_noise_and_no_more():
    ref = {"h": nchw(0.0, 1.0)}
    cand = {"h": nchw(0.0, 1.5)}  # max |diff| 0.5
    bar = {"max_abs_diff": 0.1}
    # Default factor 2: noise 0.25 allows exactly 0.5 (passes); noise 0.24 allows 0.48 (fails).
    at = parity.gate(ref, cand, bar, noise={"h": 0.25})
    assert at["passed"] and at["outputs"]["h"]["max_abs_diff_limit"] == 0.5
    assert at["outputs"]["h"]["fp32_noise_floor"] == 0.25
    below = parity.gate(ref, cand, bar, noise={"h": 0.24})
    assert not below["passed"] and below["failures"] == ["h: max_abs_diff 0.5 > 0.48"]
    # The recipe's factor replaces the default: 5 x 0.1 = 0.5 passes, 5 x 0.099 fails.
    assert parity.gate(ref, cand, {**bar, "noise_factor": 5}, noise={"h": 0.1})["passed"]
    assert not parity.gate(ref, cand, {**bar, "noise_factor": 5}, noise={"h": 0.099})["passed"]
    # A quiet network keeps the recipe's bar (the larger of the two).
    assert (
        parity.gate(ref, cand, {"max_abs_diff": 0.5}, noise={"h": 1e-9})["outputs"]["h"]["max_abs_diff_limit"]
        == 0.5
    )
    # No absolute bar: no limit recorded, the noise still is.
    only_sqnr = parity.gate(ref, cand, {"min_sqnr_db": 0.0}, noise={"h": 0.25})["outputs"]["h"]
    assert "max_abs_diff_limit" not in only_sqnr and only_sqnr["fp32_noise_floor"] == 0.25
    # Without noise figures nothing is widened.
    plain = parity.gate(ref, cand, {"max_abs_diff": 0.5})["outputs"]["h"]
    assert "max_abs_diff_limit" not in plain and "fp32_noise_floor" not in plain
    assert parity.NOISE_FACTOR == 2.0


def test_gate_compares_outputs_by_name_and_counts_heatmap_channels():
    ref = {"a": nchw(0, 1, 1, 0, joints=2), "b": nchw(2.0)}
    cand = {"b": nchw(2.0), "a": nchw(0, 1, 0, 1, joints=2), "extra": nchw(9.0)}  # order and extras ignored
    result = parity.gate(ref, cand, {"min_peak_agreement": 1.0}, {"a": 1})
    assert result["passed"] and list(result["outputs"]) == ["a", "b"]
    assert not parity.gate(ref, cand, {"min_peak_agreement": 1.0})["passed"]  # joint 1 of "a" moved
    with pytest.raises(EdgeposeError, match=r"the exported model lacks outputs \['a'\]; it has \['b'\]"):
        parity.gate(ref, {"b": nchw(2.0)}, {})


def test_logits_are_judged_by_pixel_agreement_by_hand():
    # Two images of 3 classes on 2x3 pixels. Image 0's classes [[0, 1, 2], [2, 1, 0]]; the candidate moves
    # two of its pixels to another class; image 1 is the same in both: 10 of 12 pixels agree.
    ref = np.zeros((2, 3, 2, 3))
    for i, classes in enumerate([[0, 1, 2], [2, 1, 0]]):
        for j, c in enumerate(classes):
            ref[:, c, i, j] = 1.0
    cand = ref.copy()
    cand[0, :, 0, 0] = [0.0, 2.0, 0.0]  # class 0 -> 1
    cand[0, :, 1, 2] = [0.0, 0.0, 3.0]  # class 0 -> 2
    assert parity.pixel_agreement(ref, cand) == pytest.approx(10 / 12)
    figures = parity.output_figures(ref, cand, role="logits")
    assert figures["pixel_agreement"] == pytest.approx(10 / 12) and "peak_agreement" not in figures
    limits = {"min_pixel_agreement": 0.9, "min_peak_agreement": 1.0}
    result = parity.gate({"seg": ref}, {"seg": cand}, limits, roles={"seg": "logits"})
    assert result["failures"] == ["seg: pixel agreement 0.83333 < 0.90000"]
    assert result["thresholds"] == {"min_pixel_agreement": 0.9}  # no output has peaks: that bar is left out
    # Without a role the same output is heatmaps: peak agreement over all 6 (image, channel) maps.
    plain = parity.gate({"seg": ref}, {"seg": cand}, limits)
    assert "pixel_agreement" not in plain["outputs"]["seg"] and plain["thresholds"] == {
        "min_peak_agreement": 1.0
    }
    with pytest.raises(EdgeposeError) as err:
        parity.output_figures(ref, cand, role="boxes")
    assert (
        str(err.value)
        == "no agreement figure for output role 'boxes'; known: heatmaps, heatmaps_tags, logits"
    )


def test_summary_line():
    result = {
        "outputs": {
            "h": {"max_abs_diff": 1.5e-3, "sqnr_db": 41.26, "peak_agreement": 0.5},
            "t": {"max_abs_diff": 0.0, "sqnr_db": None, "peak_agreement": 1.0},
        }
    }
    assert parity.summary(result) == (
        "h: max|diff| 1.50e-03, SQNR 41.3 dB, peaks 0.500; t: max|diff| 0.00e+00, SQNR exact, peaks 1.000"
    )


def test_sample_input_layouts_and_mirrored_batch():
    x = parity.sample_input((32, 48), batch=3)
    assert x.shape == (3, 3, 32, 48) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(x[1], x[0][:, :, ::-1])  # the mirror image
    np.testing.assert_array_equal(x[2], x[0])
    nhwc = parity.sample_input((32, 48), layout="NHWC", batch=2)
    assert nhwc.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(nhwc, x[:2].transpose(0, 2, 3, 1))
    # ImageNet normalisation of 0..255 pixels: [(0 - .485) / .229, (1 - .406) / .225] = [-2.118, 2.640]
    assert x.min() >= -2.1180 and x.max() <= 2.6401
    # The first image is the photo itself, in RGB: against an independent 64x64 OpenCV area resize of the
    # (square) astronaut, normalised by hand, it is close (mean 0.31), its mirror image and BGR far (1.45, 0.68).
    import cv2
    from skimage import data

    square = parity.sample_input((64, 64), batch=2)
    rgb = cv2.resize(data.astronaut(), (64, 64), interpolation=cv2.INTER_AREA) / 255.0
    hand = ((rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    assert np.abs(square[0] - hand).mean() < 0.4
    assert np.abs(square[0][:, :, ::-1] - hand).mean() > 1.0 and np.abs(square[0][::-1] - hand).mean() > 0.6
    with pytest.raises(EdgeposeError, match="unknown layout 'CHW'; expected NCHW or NHWC"):
        parity.sample_input((32, 48), layout="CHW")


# ---- precision_gates: the verdict per precision, on a stand-in job ----


def fake_job(precision: str, parity_limits: dict, reference: dict, weights=None) -> SimpleNamespace:
    """What verdict() reads of an ExportJob; check() is the pure gate (no float64 rerun)."""
    job = SimpleNamespace(
        precision=precision,
        model_name="m",
        weights=weights,
        output_names=list(reference),
        heatmap_channels={k: None for k in reference},
        recipe=SimpleNamespace(parity=parity_limits),
        photo=None,  # the x the verdict must pass on (None: not checked)
    )

    def run_torch(x):
        assert job.photo is None or x is job.photo
        return reference

    def check(candidate, x, ref, floor=None):
        assert job.photo is None or x is job.photo
        return parity.gate(ref, candidate, parity_limits, job.heatmap_channels, floor=floor)

    def figures(ref, candidate):
        return {
            k: parity.output_figures(ref[k], candidate[k], job.heatmap_channels[k]) for k in job.output_names
        }

    job.run_torch, job.check, job.figures = run_torch, check, figures
    return job


class Scale(nn.Module):
    """out = w * x: one weight, so that its fp16 rounding is known by hand."""

    def __init__(self, w: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))

    def forward(self, x):
        return self.w * x


def test_fp16_floor_rounds_the_weights_to_fp16():
    # 1 + 2^-12 is not an fp16 number (10 mantissa bits): it rounds to 1, so out = x instead of x(1 + 2^-12)
    w = 1.0 + 2.0**-12
    x = np.full((1, 1, 1, 2), 4.0, np.float32)
    reference = {"h": x * np.float32(w)}
    model = Scale(w)
    job = fake_job("fp16", {}, reference)
    figures = precision_gates.fp16_floor(job, model, x, reference)
    assert figures["h"]["max_abs_diff"] == 4.0 * 2.0**-12
    assert model.w.item() == np.float32(w)  # the model handed in keeps its fp32 weight
    # An fp16 number (1 + 2^-10) survives the rounding: exact.
    exact = 1.0 + 2.0**-10
    assert (
        precision_gates.fp16_floor(job, Scale(exact), x, {"h": x * np.float32(exact)})["h"]["sqnr_db"] is None
    )


def test_fp16_verdict_lowers_the_bar_to_the_fp16_floor_minus_its_margin():
    # Weight 1 + 2^-12 -> fp16 floor: SQNR = 10 log10(w^2 / (w - 1)^2) = 20 log10(4097) = 72.25 dB.
    w = 1.0 + 2.0**-12
    x = np.full((1, 1, 1, 2), 4.0, np.float32)
    reference = {"h": x * np.float32(w)}
    floor_db = 20 * math.log10(4097.0)
    job = fake_job("fp16", {"min_sqnr_db": 100.0}, reference)
    # A candidate 6 dB (FP16_MARGIN) below the floor passes; one 7 dB below fails.
    for below, passes in ((5.9, True), (6.1, False)):
        rel = 10 ** (-(floor_db - below) / 20)  # |err| / |ref| for that SQNR
        cand = {"h": reference["h"] * np.float32(1 + rel)}
        if passes:
            out = precision_gates.verdict(job, cand, x, Scale(w), None, "f.tflite", "litert")
            assert out["thresholds"]["min_sqnr_db"] == pytest.approx(floor_db - 6.0, abs=1e-3)
            assert out["fp16_weights_in_pytorch"]["h"]["sqnr_db"] == pytest.approx(floor_db, abs=1e-3)
            assert out["reference"] == "pytorch fp32" and out["runtime"] == "litert"
            assert out["input"] == parity.SAMPLE_NAME and out["recipe_thresholds"] == {"min_sqnr_db": 100.0}
        else:
            with pytest.raises(
                EdgeposeError, match=r"parity check failed for m fp16 \(f.tflite vs PyTorch\): h: SQNR"
            ):
                precision_gates.verdict(job, cand, x, Scale(w), None, "f.tflite", "litert")
    assert precision_gates.FP16_MARGIN == {"sqnr_db": 6.0, "peak_agreement": 0.15, "pixel_agreement": 0.05}


def test_fp32_verdict_has_no_floor():
    x = np.ones((1, 1, 1, 2), np.float32)
    reference = {"h": x.copy()}
    job = fake_job("fp32", {"max_abs_diff": 0.125, "mean_abs_diff": 0.2}, reference)
    out = precision_gates.verdict(job, {"h": x + 0.125}, x, Scale(1.0), x, "model.onnx", "onnxruntime")
    assert out["passed"] and "fp16_weights_in_pytorch" not in out and "warnings" not in out
    job.photo = x
    with pytest.raises(EdgeposeError, match=r"max_abs_diff 0.25 > 0.125; h: mean_abs_diff 0.25 > 0.2$"):
        precision_gates.verdict(job, {"h": x + 0.25}, x, Scale(1.0), x, "model.onnx", "onnxruntime")


@pytest.fixture
def ort_int8(monkeypatch):
    """onnxruntime's int8 of the network, replaced by outputs the test chooses (or an exception)."""
    from edgepose.export import int8_reference

    chosen = {}

    def fake(job, calib, x, threads):
        assert threads == precision_gates.PARITY_THREADS == 2
        assert job.recipe and calib is chosen["calib"] and x is chosen["x"]  # what the verdict was given
        if isinstance(chosen["outputs"], Exception):
            raise chosen["outputs"]
        return chosen["outputs"]

    monkeypatch.setattr(int8_reference, "onnxruntime_int8", fake)
    monkeypatch.setattr(int8_reference, "describe", lambda: "onnxruntime 9.9 (QDQ)")
    return chosen


def int8_case(err: float, other_err: float, ort_int8, weights=None):
    """A reference of ones; the file off by ``err``, onnxruntime's int8 by ``other_err`` (relative)."""
    x = np.ones((1, 1, 1, 4), np.float32)
    reference = {"h": np.ones((1, 1, 1, 4), np.float32)}
    calib_images = np.zeros((2, 1, 1, 4), np.float32)
    ort_int8.update(outputs={"h": reference["h"] * np.float32(1 + other_err)}, x=x, calib=calib_images)
    job = fake_job("int8", {"min_sqnr_db": 30.0}, reference, weights)
    job.photo = x
    cand = {"h": reference["h"] * np.float32(1 + err)}
    return lambda calib=calib_images: precision_gates.verdict(
        job, cand, x, Scale(1.0), calib, "model.tflite", "litert"
    )


def test_int8_that_meets_the_bar_needs_no_second_opinion(ort_int8):
    ort_int8["outputs"] = RuntimeError("must not be asked")
    x = np.ones((1, 1, 1, 4), np.float32)
    job = fake_job("int8", {"min_sqnr_db": 30.0}, {"h": x.copy()})
    out = precision_gates.verdict(job, {"h": x * np.float32(1.01)}, x, Scale(1.0), x, "f", "r")  # 40 dB
    assert out["passed"] and "int8_reference" not in out and "warnings" not in out


def test_int8_below_the_bar_passes_only_within_the_margin_of_onnxruntimes_int8(ort_int8):
    # SQNR of a uniform relative error e is -20 log10(e): 0.1 -> 20 dB, well below the 30 dB bar.
    # onnxruntime's int8 at 20 dB: the file may be INT8_MARGIN (3 dB) worse, so 17.1 dB passes, 16.9 fails.
    ok = int8_case(10 ** (-17.1 / 20), 0.1, ort_int8)()
    assert ok["passed"] and ok["thresholds"]["min_sqnr_db"] == pytest.approx(17.0)
    assert ok["int8_reference"]["runtime"] == "onnxruntime 9.9 (QDQ)"
    assert ok["int8_reference"]["outputs"]["h"]["sqnr_db"] == pytest.approx(20.0, abs=1e-4)
    (warning,) = ok["warnings"]
    assert warning.startswith("int8 loses much of this network's signal: SQNR 17.1 dB here, 20.0 dB in ")
    assert "below the recipe's bar (min_sqnr_db 30)" in warning and "(by 3 dB)" in warning
    assert warning.endswith(
        "these are random weights: judge int8 with your trained checkpoint (--weights) on your own data"
    )
    trained = int8_case(10 ** (-17.1 / 20), 0.1, ort_int8, weights="w.pth")()
    assert trained["warnings"][0].endswith(
        "check int8 accuracy on your own data before deploying it, or deploy fp16"
    )
    with pytest.raises(EdgeposeError) as failed:
        int8_case(10 ** (-16.9 / 20), 0.1, ort_int8)()
    assert str(failed.value) == (
        "parity check failed for m int8 (model.tflite vs PyTorch): h: SQNR 16.9 dB < 17.0 dB"
        " (onnxruntime's int8 of the same network: 20.0 dB)"
    )
    assert precision_gates.INT8_MARGIN == {"sqnr_db": 3.0, "peak_agreement": 0.15, "pixel_agreement": 0.05}


def test_int8_below_a_bar_that_onnxruntime_meets_fails_against_the_bar(ort_int8):
    # onnxruntime at 40 dB: the floor is above the bar, so the bar (30 dB) stands and 20 dB fails.
    with pytest.raises(
        EdgeposeError, match=r"SQNR 20.0 dB < 30.0 dB \(onnxruntime's int8 of the same network: 40.0 dB\)"
    ):
        int8_case(0.1, 0.01, ort_int8)()


def test_int8_without_a_second_opinion_says_why(ort_int8):
    check = int8_case(0.1, 0.0, ort_int8)
    ort_int8["outputs"] = ValueError("no QDQ support\nsecond line")
    with pytest.raises(EdgeposeError) as failed:
        check()
    assert str(failed.value).endswith(
        "SQNR 20.0 dB < 30.0 dB (onnxruntime could not quantise the same network for comparison: "
        "ValueError: no QDQ support)"
    )
    ort_int8["outputs"] = KeyError()
    with pytest.raises(EdgeposeError, match=r"comparison: KeyError: KeyError\)$"):
        check()
    # No calibration images: no second opinion is sought at all.
    with pytest.raises(EdgeposeError, match=r"< 30.0 dB$"):
        check(calib=None)


def test_worst_sqnr_text():
    assert (
        precision_gates._worst({"outputs": {"a": {"sqnr_db": 31.26}, "b": {"sqnr_db": 12.04}}}) == "12.0 dB"
    )
    assert precision_gates._worst({"outputs": {"a": {"sqnr_db": None}}}) == "exact"
    assert (
        precision_gates._bar({"min_sqnr_db": 30.0, "max_abs_diff": 1e-4})
        == "max_abs_diff 0.0001, min_sqnr_db 30"
    )


def test_second_opinion_counts_only_heatmap_channels(ort_int8):
    # Channel 0 is a heatmap (same peak), channel 1 a tag map whose argmax moves: peaks 1.0, not 0.5.
    reference = {"h": nchw(0, 1, 1, 0, joints=2)}
    x, calib = np.ones((1, 3, 1, 1), np.float32), np.zeros((2, 3, 1, 1), np.float32)
    ort_int8.update(outputs={"h": nchw(0, 1, 0, 1, joints=2)}, x=x, calib=calib)
    job = fake_job("int8", {}, reference)
    job.heatmap_channels = {"h": 1}
    seen = precision_gates.int8_second_opinion(job, reference, x, calib)
    assert seen["outputs"]["h"]["peak_agreement"] == 1.0 and seen["runtime"] == "onnxruntime 9.9 (QDQ)"
