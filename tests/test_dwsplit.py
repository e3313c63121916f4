"""The depthwise split (edgepose/export/dwsplit.py): exact, every branch within XNNPACK's 25 taps,
nothing else touched, deterministic; and in TFLite: no wide depthwise op left, parity with PyTorch."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgepose.device.formats import TFLiteOptions
from edgepose.errors import EdgeposeError
from edgepose.export import dwsplit, parity
from edgepose.export.fold import fold_batchnorm
from edgepose.models import build_model

CASES = [  # (kernel, stride, padding, input H x W, depth multiplier)
    ((7, 7), 1, 3, (16, 16), 1),
    ((7, 7), 2, 3, (16, 16), 1),
    ((7, 7), 2, 3, (17, 15), 1),
    ((7, 7), (2, 1), (3, 2), (13, 18), 1),
    ((7, 7), 1, 0, (15, 15), 1),
    ((7, 7), 2, 1, (15, 14), 2),
    ((9, 9), 1, 4, (20, 13), 1),
    ((5, 7), 1, (2, 3), (11, 12), 1),
    ((7, 5), 2, (3, 2), (12, 11), 1),
    ((3, 11), 1, (1, 5), (9, 23), 1),
]


def conv_case(kernel, stride, padding, channels=6, multiplier=1, bias=True) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels * multiplier, kernel, stride, padding, groups=channels, bias=bias)
    return conv.double().eval()


def layouts_for(kernel):
    for layout in dwsplit.LAYOUTS:
        try:
            dwsplit.plan(kernel, layout)
        except ValueError:
            continue
        yield layout


@pytest.mark.parametrize("kernel, stride, padding, size, multiplier", CASES)
def test_every_layout_is_exact_and_within_the_tap_limit(kernel, stride, padding, size, multiplier):
    torch.manual_seed(0)
    for bias in (True, False):
        conv = conv_case(kernel, stride, padding, multiplier=multiplier, bias=bias)
        x = torch.randn(2, 6, *size, dtype=torch.float64)
        for layout in layouts_for(kernel):
            split, report = dwsplit.split_depthwise(nn.Sequential(conv), layout)
            module = split[0]
            assert isinstance(module, dwsplit.DepthwiseSum)
            taps = [b.kernel_size[0] * b.kernel_size[1] for b in module.branches]
            assert max(taps) <= dwsplit.MAX_TAPS and sum(taps) == kernel[0] * kernel[1]
            assert all(b.groups == 6 and b.out_channels == 6 * multiplier for b in module.branches)
            assert sum(b.bias is not None for b in module.branches) == int(bias)
            with torch.no_grad():
                expected, got = conv(x), split(x)
            assert got.shape == expected.shape
            assert torch.allclose(got, expected, atol=1e-12, rtol=0), (layout, (got - expected).abs().max())
            assert report.rewritten == ["0"]


def test_tiles_cover_every_tap_once():
    for kernel in [(7, 7), (9, 9), (5, 7), (7, 5), (3, 11), (6, 6)]:
        for layout in layouts_for(kernel):
            covered = np.zeros(kernel, int)
            for t in dwsplit.plan(kernel, layout):
                assert t.taps <= dwsplit.MAX_TAPS
                covered[
                    t.row : t.row + t.extent[0] : t.dil_h,
                    t.col : t.col + t.extent[1] : t.dil_w,
                ] += 1
            assert (covered == 1).all(), (kernel, layout)


def test_the_default_split_of_7x7():
    assert dwsplit.DEFAULT_LAYOUT in dwsplit.LAYOUTS
    tiles = dwsplit.plan((7, 7))
    assert len(tiles) == 3 and sum(t.taps for t in tiles) == 49


def test_everything_else_is_left_alone():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(4, 8, 7, padding=3),  # not depthwise
        nn.Conv2d(8, 8, 5, padding=2, groups=8),  # depthwise, 25 taps: fits
        nn.Conv2d(8, 8, 7, padding=6, dilation=2, groups=8),  # dilated: skipped, with the reason
        nn.Conv2d(8, 8, 7, padding=3, groups=4),  # grouped, not depthwise
        nn.ConvTranspose2d(8, 8, 7, padding=3, groups=8),
        nn.Conv2d(8, 8, 7, padding=3, groups=8, padding_mode="reflect"),  # skipped
        nn.Conv2d(8, 8, 7, padding=3, groups=8),  # the one to split
    ).eval()
    split, report = dwsplit.split_depthwise(net)
    assert report.rewritten == ["6"]
    assert set(report.skipped) == {"2", "5"} and "dilation" in report.skipped["2"]
    for i in range(6):
        assert split[i] is not net[i] and type(split[i]) is type(net[i])  # a copy, same kind
        assert all(torch.equal(a, b) for a, b in zip(split[i].parameters(), net[i].parameters()))
    assert isinstance(net[6], nn.Conv2d)  # the original is not modified
    x = torch.randn(1, 4, 12, 12)
    with torch.no_grad():
        assert torch.allclose(split(x), net(x), atol=1e-5)
    record = report.as_dict()
    assert record["layers"] == 1 and record["split"] == {
        "7x7": " + ".join(t.label() for t in dwsplit.plan((7, 7)))
    }


def test_none_changes_nothing_and_unknown_layouts_fail_clearly():
    net = nn.Sequential(nn.Conv2d(4, 4, 7, padding=3, groups=4))
    same, report = dwsplit.split_depthwise(net, "none")
    assert isinstance(same[0], nn.Conv2d) and report.as_dict()["layers"] == 0
    with pytest.raises(ValueError, match="unknown depthwise split layout"):
        dwsplit.split_depthwise(net, "diagonal")
    with pytest.raises(EdgeposeError, match="unknown depthwise_split 'diagonal'"):
        dwsplit.apply(net, TFLiteOptions(depthwise_split="diagonal"))
    model, record = dwsplit.apply(net, TFLiteOptions())
    assert record["layout"] == dwsplit.DEFAULT_LAYOUT and record["layers"] == 1


def test_split_is_deterministic():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 4, 7, padding=3, groups=4), nn.ReLU6())
    a, _ = dwsplit.split_depthwise(net)
    b, _ = dwsplit.split_depthwise(net)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["litepose-xs", "litepose-s"])
def test_litepose_split_matches_the_unsplit_model_on_the_photo(name):
    torch.manual_seed(0)
    model = build_model(name)
    size = model.spec.input_size if name == "litepose-xs" else (256, 256)  # S: every layer kind, smaller
    x = torch.from_numpy(parity.sample_input(size))
    folded, _ = fold_batchnorm(model, x)
    split, report = dwsplit.split_depthwise(folded)
    assert len(report.rewritten) == 34 and not report.skipped  # every 7x7 of LitePose
    assert not any(dwsplit.is_wide_depthwise(m) for m in split.modules())
    with torch.no_grad():
        for ref, got in zip(folded(x), split(x)):
            assert (ref - got).abs().max().item() <= 1e-5


# --- TFLite -------------------------------------------------------------------------------------


def tiny_net() -> nn.Module:
    """A 7x7 depthwise at stride 2 and at stride 1 (each + ReLU6), a 1x1 conv, a 5x5 depthwise.

    Built from torch's own modules: the conversion's child process unpickles the model by class name.
    """
    return nn.Sequential(
        nn.Conv2d(3, 8, 1),
        nn.Conv2d(8, 8, 7, 2, 3, groups=8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 7, 1, 3, groups=8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 5, 1, 2, groups=8),
    )


@pytest.fixture(scope="module")
def tiny_tflite():
    pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (export extra)")
    from edgepose.export import tflite as tfl

    torch.manual_seed(0)
    net = tiny_net().eval()
    split, _ = dwsplit.split_depthwise(net)
    # Once in the conversion's child process, once here: the same bytes (what tests/conftest.py relies on).
    return net, [tfl.convert_fp32(split, ["out"], (32, 32)), tfl._convert_fp32(split, ["out"], (32, 32), 1)]


def tflite_ops_module():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import tflite_ops

    return tflite_ops


def test_tflite_has_no_wide_depthwise_and_matches_pytorch(tiny_tflite):
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from edgepose.export import tflite as tfl

    net, (data, again) = tiny_tflite
    assert data == again  # the conversion is deterministic: same model, same bytes
    ops = tflite_ops_module()
    model = fb.read_model_from_bytearray(bytearray(data))
    kinds = [ops.describe(model, i)["kind"] for i in range(len(model.subgraphs[0].operators))]
    depthwise = [k for k in kinds if k.startswith("DEPTHWISE_CONV_2D")]
    assert len(depthwise) == 7  # 3 + 3 branches and the 5x5
    for kind in depthwise:
        h, w = map(int, kind.split()[1].split("x"))
        assert h * w <= dwsplit.MAX_TAPS
    x = parity.sample_input((32, 32))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = tfl.run_tflite(data, x)["out"]
    assert np.abs(got - ref).max() <= 1e-5


def test_op_cuts_compute_what_the_op_computes_in_the_graph(tiny_tflite):
    """Each one-op file of tflite_ops, fed the op's inputs from the whole graph, gives the op's outputs."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fb

    ops = tflite_ops_module()
    _, (data, _) = tiny_tflite
    whole = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    detail = whole.get_input_details()[0]
    whole.set_tensor(
        detail["index"], np.random.default_rng(0).standard_normal(detail["shape"]).astype(np.float32)
    )
    whole.invoke()
    graph = fb.read_model_from_bytearray(bytearray(data)).subgraphs[0]
    for index, op in enumerate(graph.operators):
        one = Interpreter(model_content=ops.cut(data, index))
        one.allocate_tensors()
        for d in one.get_input_details():
            source = next(t for t in op.inputs if graph.tensors[t].name.decode() == d["name"])
            one.set_tensor(d["index"], whole.get_tensor(source))
        one.invoke()
        out = one.get_output_details()[0]
        expected = whole.get_tensor(op.outputs[0])
        np.testing.assert_allclose(one.get_tensor(out["index"]), expected, atol=1e-6)


def test_op_profile_reports_every_op_by_kind(tiny_tflite):
    ops = tflite_ops_module()
    _, (data, _) = tiny_tflite
    result = ops.profile(data, threads=1, rounds=1, runs=2, warmup=1)
    assert len(result["ops"]) >= 9 and result["whole_model"]["median_ms"] > 0
    kinds = ops.by_kind(result["ops"])
    assert sum(r["count"] for r in kinds) == len(result["ops"])
    assert abs(sum(r["share"] for r in kinds) - 1.0) < 1e-9
    text = ops.report(result, top=3)
    assert "DEPTHWISE_CONV_2D 5x5" in text and "Slowest 3 ops" in text  # the default (ring) layout


def test_export_records_the_split_in_the_manifest(tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (export extra)")
    from edgepose.export.pipeline import export_model

    folder = export_model("litepose-xs", "rpi4", out=tmp_path / "xs")
    manifest = json.loads((folder / "manifest.json").read_text())
    record = manifest["export"]["depthwise_split"]
    assert record["layers"] == 34 and record["max_taps"] == dwsplit.MAX_TAPS
    assert record["layout"] == dwsplit.DEFAULT_LAYOUT and record["split"]["7x7"]
    assert manifest["export"]["subpixel_deconv"] == {"layers": 6, "skipped": {}, "enabled": True}
    assert manifest["parity"]["passed"]


@pytest.mark.parametrize(
    "name", ["litehrnet-18", "litehrnet-30", "litehrnet-naive-18", "litehrnet-wider-naive-18"]
)
def test_lite_hrnet_has_nothing_to_split(name):
    """Lite-HRNet's depthwise convs are 3x3: its TFLite files are the same with or without the split."""
    model = build_model(name)
    split, report = dwsplit.split_depthwise(model)
    assert report.rewritten == [] and report.skipped == {}
    assert [type(m) for m in split.modules()] == [type(m) for m in model.modules()]


def test_a_recipe_can_turn_both_rewrites_off(tmp_path):
    """``[tflite] depthwise_split = "none"``, ``subpixel_deconv = false``: the graph of the export before issue #13."""
    pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (export extra)")
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from edgepose.export.pipeline import export_model
    from edgepose.export.recipe import load_recipe

    rpi4 = load_recipe("rpi4")
    recipe = replace(rpi4, options=rpi4.options._replace(depthwise_split="none", subpixel_deconv=False))
    folder = export_model("litepose-xs", recipe, input_size=(64, 64), out=tmp_path / "plain")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["export"]["depthwise_split"]["layout"] == "none"
    assert manifest["export"]["depthwise_split"]["layers"] == 0
    assert manifest["export"]["subpixel_deconv"]["enabled"] is False
    ops = tflite_ops_module()
    model = fb.read_model_from_bytearray(bytearray((folder / "model.tflite").read_bytes()))
    kinds = [ops.describe(model, i)["kind"] for i in range(len(model.subgraphs[0].operators))]
    assert sum(k.startswith("DEPTHWISE_CONV_2D 7x7") for k in kinds) == 34
    assert sum(k.startswith("TRANSPOSE_CONV") for k in kinds) == 6
