"""Transposed convs as sub-pixel convs (edgepose/export/subpixel.py): exact, only where the output is
exactly stride x input, nothing else touched; in TFLite no TRANSPOSE_CONV is left and the outputs match."""

import numpy as np
import pytest
import torch
from torch import nn

from edgepose.device.formats import TFLiteOptions
from edgepose.errors import EdgeposeError
from edgepose.export import parity, subpixel
from edgepose.export.fold import fold_batchnorm
from edgepose.export.recipe import parse_recipe
from edgepose.models import build_model

EXACT = [  # kernel, stride, padding, output_padding: every one has output = stride x input
    (4, 2, 1, 0),  # LitePose / HigherHRNet
    (3, 2, 1, 1),  # asymmetric window: explicit pad
    (2, 2, 0, 0),
    (5, 3, 1, 0),
    (8, 4, 2, 0),
    (6, 2, 2, 0),
    ((4, 3), (2, 3), (1, 0), 0),
]


@pytest.mark.parametrize("kernel, stride, padding, output_padding", EXACT)
def test_rewrite_is_exact(kernel, stride, padding, output_padding):
    torch.manual_seed(0)
    for bias in (True, False):
        deconv = nn.ConvTranspose2d(5, 7, kernel, stride, padding, output_padding, bias=bias).double().eval()
        model, record = subpixel.rewrite_deconvs(nn.Sequential(deconv))
        assert record == {"layers": 1, "skipped": {}} and isinstance(model[0], subpixel.SubPixelConv)
        x = torch.randn(2, 5, 6, 9, dtype=torch.float64)
        with torch.no_grad():
            expected, got = deconv(x), model(x)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-12, rtol=0)


def test_other_transposed_convs_are_left_alone():
    net = nn.Sequential(
        nn.ConvTranspose2d(4, 4, 4, 2, 0),  # output 2H + 2: not stride x input
        nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2),
        nn.ConvTranspose2d(4, 4, 3, 1, 1),  # stride 1
        nn.Conv2d(4, 4, 3),
    )
    model, record = subpixel.rewrite_deconvs(net)
    assert record["layers"] == 0 and set(record["skipped"]) == {"0", "1", "2"}
    assert [type(m) for m in model] == [type(m) for m in net]


def test_recipe_option():
    net = nn.Sequential(nn.ConvTranspose2d(4, 4, 4, 2, 1))
    assert subpixel.apply(net, TFLiteOptions())[1] == {"layers": 1, "skipped": {}, "enabled": True}
    same, record = subpixel.apply(net, TFLiteOptions(subpixel_deconv=False))
    assert same is net and record["enabled"] is False and record["layers"] == 0
    recipe = {"format": "tflite", "tflite": {"subpixel_deconv": False, "depthwise_split": "columns"}}
    assert parse_recipe(recipe).options[-2:] == ("columns", False)
    with pytest.raises(EdgeposeError, match="subpixel_deconv must be a bool"):
        parse_recipe({"format": "tflite", "tflite": {"subpixel_deconv": "yes"}})


def test_litepose_deconvs_rewritten_and_outputs_unchanged():
    torch.manual_seed(0)
    model = build_model("litepose-xs")
    x = torch.from_numpy(parity.sample_input(model.spec.input_size))
    folded, _ = fold_batchnorm(model, x)
    rewritten, record = subpixel.rewrite_deconvs(folded)
    assert record == {"layers": 6, "skipped": {}}
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in rewritten.modules())
    with torch.no_grad():
        for ref, got in zip(folded(x), rewritten(x)):
            assert (ref - got).abs().max().item() <= 1e-5


def test_tflite_has_no_transpose_conv_and_matches_pytorch():
    pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (export extra)")
    from ai_edge_litert.interpreter import Interpreter

    from edgepose.export import tflite as tfl

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 6, 4, 2, 1), nn.ReLU()).eval()
    model, _ = subpixel.rewrite_deconvs(net)
    data = tfl.convert_fp32(model, ["out"], (16, 16))
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "TRANSPOSE_CONV" not in names and "CONV_2D" in names
    x = parity.sample_input((16, 16))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(tfl.run_tflite(data, x)["out"] - ref).max() <= 1e-5
