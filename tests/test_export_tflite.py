"""TFLite export (rpi4, snapdragon855): NHWC layout, fp32/fp16/int8 parity gates, calibration, manifest.

Each network is converted by litert-torch once (module fixture, a real ``export_model``); the other
precisions and targets reuse those fp32 bytes through a patched ``convert_fp32`` so that the rest of
the pipeline (quantisation, parity gate, manifest, staging) runs for real without re-converting.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (export extra)")
pytest.importorskip("ai_edge_litert", reason="TFLite export needs ai-edge-litert")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from skimage import data  # noqa: E402

from edgepose.device.runtime import open_runtime  # noqa: E402
from edgepose.errors import EdgeposeError  # noqa: E402
from edgepose.export import calibration, parity  # noqa: E402
from edgepose.export import tflite as tfl  # noqa: E402
from edgepose.export.pipeline import export_model  # noqa: E402
from edgepose.export.recipe import load_recipe  # noqa: E402
from edgepose.models import build_model  # noqa: E402


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    return calibration.write_sample_images(tmp_path_factory.mktemp("calib"), count=8)


@pytest.fixture(scope="module")
def xs_fp32(tmp_path_factory) -> Path:
    """LitePose-XS at 256, rpi4 default (fp32): the one real litert-torch conversion of LitePose."""
    return export_model("litepose-xs", "rpi4", out=tmp_path_factory.mktemp("xs") / "fp32")


@pytest.fixture()
def reuse_conversion(monkeypatch):
    """Patch convert_fp32 to return an fp32 .tflite already made from the same (seeded) model."""

    def use(folder: Path) -> None:
        fp32 = (folder / tfl.MODEL_FILE).read_bytes()
        monkeypatch.setattr(tfl, "convert_fp32", lambda model, names, size: fp32)

    return use


def run_device(folder: Path) -> dict:
    """The artifact through the device-side runtime (what run.py uses), on the parity photo."""
    m = manifest(folder)
    h, w = m["input"]["shape"][1:3]
    return open_runtime(str(folder), m).run(parity.sample_input((h, w)))


def torch_outputs(name: str, size: tuple[int, int]) -> dict:
    torch.manual_seed(0)  # export_model builds the random-weight model under the same seed
    model = build_model(name)
    with torch.no_grad():
        out = model(torch.from_numpy(parity.sample_input(size)))
    out = out if isinstance(out, tuple) else (out,)
    return {o.name: t.numpy() for o, t in zip(model.spec.outputs, out)}


# ---------------------------------------------------------------- recipes and calibration (fast)


def test_recipes_encode_the_targets():
    rpi4, sd855 = load_recipe("rpi4"), load_recipe("snapdragon855")
    assert (rpi4.format, rpi4.precision, rpi4.runtime["threads"]) == ("tflite", "fp32", 4)
    assert set(rpi4.precisions) == {"fp32", "fp16", "int8"}
    assert (sd855.format, sd855.precision, set(sd855.precisions)) == ("tflite", "fp16", {"fp16", "int8"})
    for recipe in (rpi4, sd855):
        assert recipe.options["parity"]["int8"]["min_sqnr_db"] > 0
        assert (
            recipe.options["parity"]["fp16"]["min_sqnr_db"] > recipe.options["parity"]["int8"]["min_sqnr_db"]
        )


def test_snapdragon_refuses_fp32(tmp_path):
    with pytest.raises(EdgeposeError, match="not allowed"):
        export_model("litepose-xs", "snapdragon855", precision="fp32", out=tmp_path / "x")


def test_int8_without_calibration_is_an_error(tmp_path):
    with pytest.raises(EdgeposeError, match="--calib"):
        export_model("litepose-xs", "rpi4", precision="int8", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_calibration_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(EdgeposeError, match="no calibration images"):
        calibration.find_images(tmp_path / "empty")
    with pytest.raises(EdgeposeError, match="must be a folder"):
        calibration.find_images(tmp_path / "notes.txt")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EdgeposeError, match="broken.jpg"):
        calibration.load_calibration(bad, (64, 64), "bottom-up")


def test_calibration_preprocessing_matches_inference(tmp_path):
    # An image already at the input size passes the letterbox unchanged: the result must be the
    # inference normalisation (BGR file -> RGB, /255, ImageNet mean/std) in NCHW.
    rgb = cv2.resize(data.astronaut(), (64, 48))
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    batch = calibration.load_calibration(tmp_path, (48, 64), "bottom-up")
    assert batch.shape == (1, 3, 48, 64) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], parity.normalize(rgb).transpose(2, 0, 1), atol=1e-5)
    # Top-down: the image is one person box, padded by 1.25 -> the photo shrinks inside the input.
    top = calibration.load_calibration(tmp_path, (48, 64), "top-down")
    assert top.shape == batch.shape and not np.allclose(top, batch)


def test_calibration_keeps_at_most_max_images(tmp_path):
    calibration.write_sample_images(tmp_path, count=5)
    assert len(calibration.load_calibration(tmp_path, (32, 32), "bottom-up", max_images=3)) == 3


# ---------------------------------------------------------------- LitePose-XS at 256 (paper size)


def test_fp32_is_nhwc_and_matches_pytorch(xs_fp32):
    m = manifest(xs_fp32)
    assert (m["format"], m["precision"], m["target"]) == ("tflite", "fp32", "rpi4")
    assert m["input"]["layout"] == "NHWC" and m["input"]["shape"] == [1, 256, 256, 3]
    assert [(o["name"], o["layout"], o["shape"]) for o in m["outputs"]] == [
        ("heatmaps_tags", "NHWC", [1, 64, 64, 28]),
        ("heatmaps", "NHWC", [1, 128, 128, 14]),
    ]
    assert m["parity"]["passed"] and m["parity"]["thresholds"] == {"max_abs_diff": 1e-4}
    assert all(f["max_abs_diff"] <= 1e-4 for f in m["parity"]["outputs"].values())
    assert m["export"]["bn_folded"] and m["runtime"]["threads"] == 4
    assert "benchmark_model" in m["runtime"]["benchmark_model"]
    # The file itself: NHWC float input, outputs named by the signature.
    interpreter = Interpreter(model_path=str(xs_fp32 / "model.tflite"))
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature == {"inputs": ["input"], "outputs": sorted(["heatmaps_tags", "heatmaps"])}
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 256, 256, 3]


def test_fp32_runs_through_the_device_runtime(xs_fp32):
    reference = torch_outputs("litepose-xs", (256, 256))
    got = run_device(xs_fp32)
    for name, ref in reference.items():
        assert got[name].shape == ref.shape  # the runtime turned NHWC back into NCHW
        np.testing.assert_allclose(got[name], ref, atol=1e-4)


def test_int8_is_full_integer_with_recorded_parameters(xs_fp32, calib_dir, reuse_conversion, tmp_path):
    reuse_conversion(xs_fp32)
    folder = export_model(
        "litepose-xs", "snapdragon855", precision="int8", calib=calib_dir, out=tmp_path / "i8"
    )
    m = manifest(folder)
    assert m["precision"] == "int8" and m["export"]["calibration"]["images"] == 8
    interpreter = Interpreter(model_path=str(folder / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    tensors = {**runner.get_input_details(), **runner.get_output_details()}
    for entry in [m["input"], *m["outputs"]]:
        assert entry["dtype"] == "int8" and entry["layout"] == "NHWC"
        scale, zero_point = tensors[entry["name"]]["quantization"]
        assert entry["quantization"] == {"scale": pytest.approx(scale), "zero_point": zero_point}
    # No float ops left: every conv is int8 (the Hexagon delegate's requirement).
    float_weights = [
        t for t in interpreter.get_tensor_details() if t["dtype"] == np.float32 and len(t["shape"]) == 4
    ]
    assert not float_weights
    limits = m["parity"]["thresholds"]
    for figures in m["parity"]["outputs"].values():
        assert figures["sqnr_db"] >= limits["min_sqnr_db"]
    assert "--use_hexagon=true" in m["runtime"]["benchmark_model"]
    got = run_device(folder)
    for name, ref in torch_outputs("litepose-xs", (256, 256)).items():
        assert 10 * np.log10(np.sum(ref**2) / np.sum((got[name] - ref) ** 2)) >= limits["min_sqnr_db"]


def test_fp16_halves_the_file_and_reports_sqnr(xs_fp32, reuse_conversion, tmp_path):
    reuse_conversion(xs_fp32)
    folder = export_model("litepose-xs", "snapdragon855", out=tmp_path / "f16")  # fp16 is the default
    m = manifest(folder)
    assert m["precision"] == "fp16" and m["input"]["dtype"] == "float32"
    size16, size32 = (f.stat().st_size for f in (folder / "model.tflite", xs_fp32 / "model.tflite"))
    assert size16 < 0.6 * size32
    for figures in m["parity"]["outputs"].values():
        assert figures["sqnr_db"] >= m["parity"]["thresholds"]["min_sqnr_db"]
        assert figures["peak_agreement"] >= m["parity"]["thresholds"]["min_peak_agreement"]
    assert "--use_gpu=true" in m["runtime"]["benchmark_model"]


def test_failed_parity_gate_leaves_no_folder(xs_fp32, calib_dir, reuse_conversion, tmp_path):
    reuse_conversion(xs_fp32)
    text = Path(load_recipe("snapdragon855").source).read_text()
    strict = tmp_path / "strict.toml"
    strict.write_text(
        text.replace('name = "snapdragon855"', 'name = "strict"').replace(
            "min_sqnr_db = 15.0", "min_sqnr_db = 200.0"
        )
    )
    with pytest.raises(EdgeposeError, match=r"parity check failed .* int8 .* SQNR .* < 200\.0 dB"):
        export_model("litepose-xs", strict, precision="int8", calib=calib_dir, out=tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if "never" in p.name]  # no staging folder left either


def test_fp16_gate_follows_the_pytorch_floor():
    floor = {"a": {"sqnr_db": 21.0, "peak_agreement": 0.8}, "b": {"sqnr_db": 60.0, "peak_agreement": 1.0}}
    limits = tfl.fp16_limits({"min_sqnr_db": 40.0, "min_peak_agreement": 0.9}, floor)
    assert limits == {"min_sqnr_db": 15.0, "min_peak_agreement": pytest.approx(0.65)}
    well_conditioned = {"a": {"sqnr_db": 70.0, "peak_agreement": 1.0}}
    assert tfl.fp16_limits({"min_sqnr_db": 40.0, "min_peak_agreement": 0.9}, well_conditioned) == {
        "min_sqnr_db": 40.0,
        "min_peak_agreement": 0.9,
    }


# ---------------------------------------------------------------- Lite-HRNet-18 at 256x192


@pytest.fixture(scope="module")
def hrnet_fp32(tmp_path_factory) -> Path:
    return export_model("litehrnet-18", "rpi4", out=tmp_path_factory.mktemp("hrnet") / "fp32")


@pytest.mark.slow
def test_litehrnet_fp32_matches_pytorch(hrnet_fp32):
    m = manifest(hrnet_fp32)
    assert m["input"]["shape"] == [1, 256, 192, 3] and m["input"]["layout"] == "NHWC"
    assert [(o["name"], o["layout"], o["shape"]) for o in m["outputs"]] == [
        ("heatmaps", "NHWC", [1, 64, 48, 17])
    ]
    assert m["parity"]["passed"]
    # Random-weight Lite-HRNet is ill-conditioned (outputs in the hundreds, PyTorch fp32 itself far
    # more than 1e-4 from fp64): the gate switched to SQNR, and the device runtime meets it too.
    limits = m["parity"]["thresholds"]
    assert "max_abs_diff" not in limits and limits["min_sqnr_db"] == 60.0
    assert m["parity"]["outputs"]["heatmaps"]["fp32_noise_floor"] > 1e-4
    got = run_device(hrnet_fp32)["heatmaps"]
    ref = torch_outputs("litehrnet-18", (256, 192))["heatmaps"]
    assert 10 * np.log10(np.sum(ref**2) / np.sum((got - ref) ** 2)) >= 60.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision",
    [
        "fp16",
        pytest.param(
            "int8",
            marks=pytest.mark.xfail(
                raises=EdgeposeError,
                strict=True,
                reason="random-weight Lite-HRNet-18 amplifies int8 rounding noise ~37 dB (PyTorch alone: int8 "
                "weights give 7 dB), so int8 parity is ~3 dB, below the 15 dB gate; judge with the released "
                "checkpoint",
            ),
        ),
    ],
)
def test_litehrnet_quantised(hrnet_fp32, calib_dir, reuse_conversion, tmp_path, precision):
    reuse_conversion(hrnet_fp32)
    folder = export_model(
        "litehrnet-18", "rpi4", precision=precision, calib=calib_dir, out=tmp_path / precision
    )
    m = manifest(folder)
    assert m["precision"] == precision and m["parity"]["passed"]
    assert m["input"]["dtype"] == ("int8" if precision == "int8" else "float32")
    assert m["outputs"][0]["layout"] == "NHWC"
    if precision == "fp16":  # the gate followed PyTorch's own fp16-weight floor, and says so
        assert m["parity"]["fp16_weights_in_pytorch"]["heatmaps"]["sqnr_db"] < 40.0


def test_constant_calibration_ranges_are_widened_without_moving_their_value():
    from edgepose.export.tflite import widen_constant_ranges

    ranges = {
        "dead_relu": {"min": np.zeros(1, np.float32), "max": np.zeros(1, np.float32)},
        "sigmoid_of_dead": {"min": np.full(1, 0.5, np.float32), "max": np.full(1, 0.5, np.float32)},
        "normal": {"min": np.array([-2.0], np.float32), "max": np.array([3.0], np.float32)},
    }
    out = widen_constant_ranges(ranges)
    assert out["dead_relu"]["min"][0] == 0.0 and out["dead_relu"]["max"][0] == 1.0
    assert out["sigmoid_of_dead"]["min"][0] == 0.0 and out["sigmoid_of_dead"]["max"][0] == 1.0
    assert out["normal"]["min"][0] == -2.0 and out["normal"]["max"][0] == 3.0
