"""ONNX export: BN folding, parity checks, the artifact folder and manifest, determinism, failures leave nothing."""

import copy
import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgepose.cli import main
from edgepose.errors import EdgeposeError
from edgepose.export import onnx as onnx_export
from edgepose.export import parity
from edgepose.export.fold import fold_batchnorm
from edgepose.export.pipeline import export_model
from edgepose.models import build_model

SIZE = "64x64"  # LitePose needs multiples of 16; small keeps the exports fast


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights and BN statistics, so that folding has something to get wrong."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


class SumHead(nn.Module):
    """The patterns fold.py must handle: conv->BN, BN after a sum of two deconvs, and two it must leave alone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.up_a = nn.ConvTranspose2d(8, 6, 4, 2, 1, bias=False)
        self.up_b = nn.ConvTranspose2d(3, 6, 4, 2, 1, groups=3, bias=False)
        self.bn_sum = nn.BatchNorm2d(6)
        self.shared = nn.Conv2d(6, 6, 1)  # runs twice: its BN cannot be folded into it
        self.bn_shared = nn.BatchNorm2d(6)
        self.tap = nn.Conv2d(6, 6, 1)  # its output also feeds a second consumer
        self.bn_tap = nn.BatchNorm2d(6)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        z = torch.relu(self.bn_sum(self.up_a(y) + self.up_b(x)))
        s = self.bn_shared(self.shared(z)) + self.shared(z)
        t = self.tap(s)
        return self.bn_tap(t) + t


def test_fold_handles_sum_of_deconvs_and_leaves_unsafe_bns():
    model = randomize(SumHead())
    x = torch.randn(2, 3, 16, 16)
    folded, report = fold_batchnorm(model, x)
    assert report.into_conv == ["bn"] and report.into_sum == ["bn_sum"]
    assert sorted(report.kept) == ["bn_shared", "bn_tap"]
    assert isinstance(folded.bn, nn.Identity) and isinstance(
        model.bn, nn.BatchNorm2d
    )  # the input is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_fold_litepose_folds_every_bn_exactly():
    model = randomize(build_model("litepose-xs"))
    x = torch.randn(1, 3, 64, 64)
    folded, report = fold_batchnorm(model, x)
    assert not report.kept and len(report.into_sum) == 3  # deconv_bnrelu.{0,1,2}: BN after the deconv sum
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        for ref, got in zip(model.double()(x.double()), fold_batchnorm(model, x.double())[0](x.double())):
            assert (ref - got).abs().max().item() < 1e-9


def test_fold_refuses_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(SumHead().train(), torch.randn(1, 3, 8, 8))


def test_sample_input_is_the_normalised_photo():
    x = parity.sample_input((64, 48))
    assert x.shape == (1, 3, 64, 48) and x.dtype == np.float32
    assert parity.sample_input((64, 48), layout="NHWC").shape == (1, 64, 48, 3)
    assert -2.2 < x.min() < -1.0 and 1.0 < x.max() < 2.7  # ImageNet-normalised, real content
    assert parity.sample_input((64, 48), batch=2).shape[0] == 2


def test_gate_figures_and_thresholds():
    rng = np.random.default_rng(0)
    ref = {"heatmaps": rng.random((1, 4, 8, 8), dtype=np.float32)}
    same = parity.gate(ref, {"heatmaps": ref["heatmaps"].copy()}, {"max_abs_diff": 1e-4})
    assert same["passed"] and same["outputs"]["heatmaps"]["sqnr_db"] is None
    assert same["outputs"]["heatmaps"]["peak_agreement"] == 1.0
    moved = ref["heatmaps"].copy()
    moved[0, 0] = np.roll(moved[0, 0], 3)  # joint 0's peak moves
    moved[0, 3] += 0.01
    result = parity.gate(ref, {"heatmaps": moved}, {"max_abs_diff": 1e-4, "min_peak_agreement": 1.0})
    figures = result["outputs"]["heatmaps"]
    assert not result["passed"] and figures["peak_agreement"] == 0.75
    assert figures["max_abs_diff"] > 0.01 and figures["sqnr_db"] < 60
    assert any("max_abs_diff" in f for f in result["failures"]) and any(
        "peak" in f for f in result["failures"]
    )
    # Only the first channel counts as a heatmap: the moved peak is the only one checked.
    assert (
        parity.gate(ref, {"heatmaps": moved}, {}, {"heatmaps": 1})["outputs"]["heatmaps"]["peak_agreement"]
        == 0
    )
    # The fp32 noise floor widens max_abs_diff (2 x floor by default), nothing else.
    worst = figures["max_abs_diff"]
    wide = parity.gate(ref, {"heatmaps": moved}, {"max_abs_diff": 1e-4}, noise={"heatmaps": worst / 2})
    assert wide["passed"] and wide["outputs"]["heatmaps"]["max_abs_diff_limit"] == pytest.approx(worst)
    narrow = parity.gate(ref, {"heatmaps": moved}, {"max_abs_diff": 1e-4}, noise={"heatmaps": worst / 2.01})
    assert not narrow["passed"]
    with pytest.raises(EdgeposeError, match="lacks outputs"):
        parity.gate(ref, {}, {})


def test_gate_is_pure_and_returns_its_effective_limits():
    ref = {"h": np.ones((1, 1, 2, 2), np.float32)}
    limits = {"max_abs_diff": 1e-4, "noise_factor": 3.0, "noisy_min_sqnr_db": 50.0}
    kept = dict(limits)
    verdict = parity.gate(ref, {"h": ref["h"] + 1e-3}, limits, noise={"h": 1e-2})  # noisier than the bar
    assert verdict["thresholds"] == {"min_sqnr_db": 50.0} and verdict["passed"]  # 60 dB >= 50 dB
    assert limits == kept  # nothing handed in is rewritten


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """LitePose-XS exported through the CLI at 64x64 with the onnx recipe."""
    out = tmp_path_factory.mktemp("onnx") / "xs"
    assert main(["export", "litepose-xs", "--target", "onnx", "--input", SIZE, "--out", str(out)]) == 0
    return out


def test_folder_and_manifest(exported):
    m = json.loads((exported / "manifest.json").read_text())
    assert m["schema"] == "edgepose.manifest/1" and m["format"] == "onnx" and m["target"] == "onnx"
    assert m["precision"] == "fp32" and m["runtime"] == {"backend": "onnxruntime", "threads": 2}
    model = m["model"]
    assert (model["name"], model["family"], model["kind"], model["dataset"]) == (
        "litepose-xs",
        "litepose",
        "bottom-up",
        "crowdpose",
    )
    assert model["num_joints"] == 14 and len(model["joints"]) == 14 and model["joints"][12] == "head"
    assert model["flip_index"][:2] == [1, 0] and model["params"] == 1_675_552
    assert model["weights"]["kind"] == "random" and model["weights"]["seed"] == 0
    assert m["input"] == {
        "name": "input",
        "shape": [1, 3, 64, 64],
        "layout": "NCHW",
        "dtype": "float32",
        "color": "RGB",
        "scale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "quantization": None,
    }
    outs = {o["name"]: o for o in m["outputs"]}
    assert outs["heatmaps_tags"]["shape"] == [1, 28, 16, 16] and outs["heatmaps_tags"]["stride"] == 4
    assert outs["heatmaps"]["shape"] == [1, 14, 32, 32] and outs["heatmaps"]["role"] == "heatmaps"
    export = m["export"]
    assert export["opset"] == 17 and export["bn_folded"] and export["dynamic_batch"] is False
    assert export["simplifier"].startswith("onnxslim ") and export["recipe"]["name"] == "onnx"
    assert "BatchNormalization" not in export["nodes"] and export["nodes"]["ConvTranspose"] == 6
    assert {"torch", "onnx", "onnxruntime", "onnxslim", "python"} <= set(m["tools"])
    p = m["parity"]
    assert p["passed"] and p["thresholds"] == {"max_abs_diff": 1e-4}
    assert set(p["outputs"]) == {"heatmaps_tags", "heatmaps"}
    assert all(o["max_abs_diff"] <= 1e-4 and o["peak_agreement"] == 1.0 for o in p["outputs"].values())
    # Every file but the manifest is listed with its real hash and size; no caches were copied.
    files = {f.relative_to(exported).as_posix() for f in exported.rglob("*") if f.is_file()} - {
        "manifest.json"
    }
    assert set(m["artifacts"]) == files
    assert {"model.onnx", "run.py", "edgepose_device/__init__.py", "edgepose_device/skeletons.py"} <= files
    assert not any("__pycache__" in f for f in files)
    for name, entry in m["artifacts"].items():
        assert entry == {"sha256": sha(exported / name), "bytes": (exported / name).stat().st_size}
    assert "from edgepose_device.cli import main" in (exported / "run.py").read_text()


def test_onnx_is_clean_and_matches_pytorch(exported):
    model = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["heatmaps_tags", "heatmaps"]
    # An independent check of the same claim: a differently seeded photo crop vs the seeded PyTorch model.
    torch.manual_seed(0)
    reference = build_model("litepose-xs")
    x = parity.sample_input((64, 64))[:, :, ::-1].copy()  # upside down: not the export's own input
    with torch.no_grad():
        expected = [t.numpy() for t in reference(torch.from_numpy(x))]
    got = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-4, rtol=0)


def test_same_command_gives_identical_onnx(exported, tmp_path):
    again = tmp_path / "again"
    export_model("litepose-xs", "onnx", input_size=SIZE, out=again)
    assert (again / "model.onnx").read_bytes() == (exported / "model.onnx").read_bytes()


def test_failed_parity_leaves_no_folder(tmp_path, monkeypatch, capsys):
    real = onnx_export.run_onnxruntime

    def perturbed(model_bytes, x, threads=1):
        return {k: v + 1e-3 for k, v in real(model_bytes, x, threads).items()}

    monkeypatch.setattr(onnx_export, "run_onnxruntime", perturbed)
    out = tmp_path / "bad"
    assert main(["export", "litepose-xs", "--target", "onnx", "--input", SIZE, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgepose: error: parity check failed") and "max_abs_diff 0.001 > 0.0001" in err
    assert err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no folder, no staging leftovers


def test_impossible_user_threshold_fails(tmp_path):
    recipe = tmp_path / "strict.toml"
    recipe.write_text('format = "onnx"\nopset = 13\n[parity]\nmin_peak_agreement = 1.01\n')
    out = tmp_path / "strict"
    with pytest.raises(EdgeposeError, match=r"peak agreement 1.000 < 1.010"):
        export_model("litepose-xs", recipe, input_size=SIZE, out=out)
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["litepose-xx", "--target", "onnx"], "unknown model 'litepose-xx' (did you mean 'litepose-xs'?)"),
        (["litepose-xs", "--target", "onx"], "unknown export target 'onx' (did you mean 'onnx'?)"),
        (["litepose-xs", "--target", "onnx", "--input", "100x100"], "multiples of 16"),
        (["litepose-xs", "--target", "onnx", "--opset", "21"], "opset must be an integer from 11 to 17"),
        (["litepose-xs", "--target", "onnx", "--precision", "fp16"], "precision 'fp16' is not allowed"),
        (["litepose-xs", "--target", "onnx", "--weights", "nope.pth"], "checkpoint not found"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys, tmp_path):
    assert main(["export", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_weights_are_loaded_and_recorded(tmp_path):
    model = randomize(build_model("litepose-xs"), seed=3)
    ckpt = tmp_path / "xs.pth"
    torch.save(copy.deepcopy(model.state_dict()), ckpt)
    out = export_model("litepose-xs", "onnx", input_size=SIZE, weights=ckpt, out=tmp_path / "w")
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["weights"] == {"kind": "file", "file": "xs.pth", "sha256": sha(ckpt)}
    x = parity.sample_input((64, 64))
    with torch.no_grad():
        expected = model(torch.from_numpy(x))[1].numpy()
    got = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        ["heatmaps"], {"input": x}
    )
    np.testing.assert_allclose(got[0], expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_litehrnet_18_dynamic_batch_no_duplicated_fuse_convs(tmp_path):
    out = export_model("litehrnet-18", "onnx", input_size="128x96", dynamic_batch=True, out=tmp_path / "hr")
    model = onnx.load(str(out / "model.onnx"))
    convs = sum(n.op_type == "Conv" for n in model.graph.node)
    assert convs <= 301
    m = json.loads((out / "manifest.json").read_text())
    assert m["export"]["dynamic_batch"] and m["parity"]["passed"] and m["export"]["bn_folded"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": parity.sample_input((128, 96), batch=3)})
    assert y.shape == (3, 17, 32, 24)
