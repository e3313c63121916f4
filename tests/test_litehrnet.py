"""Lite-HRNet: exact sizes, official checkpoint layout, the released fuse semantics, export friendliness."""

from __future__ import annotations

import copy
import functools
import io
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgepose.errors import EdgeposeError
from edgepose.models import build_model, get_spec, load_weights
from edgepose.models.litehrnet_blocks import CrossResolutionWeighting, LiteHRModule, channel_shuffle

VARIANTS = ("litehrnet-18", "litehrnet-30", "litehrnet-naive-18", "litehrnet-wider-naive-18")


@pytest.fixture(scope="module")
def l18() -> nn.Module:
    torch.manual_seed(0)
    return build_model("litehrnet-18")


@functools.cache
def built(name: str, dataset: str = "coco") -> nn.Module:
    """One shared instance per variant for the read-only tests (building calibrates BN: not free)."""
    torch.manual_seed(0)
    return build_model(name, dataset=dataset)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- sizes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, dataset, expected",
    [
        ("litehrnet-18", "coco", 1_130_769),
        ("litehrnet-30", "coco", 1_763_717),
        ("litehrnet-naive-18", "coco", 760_365),
        ("litehrnet-wider-naive-18", "coco", 1_318_625),
        ("litehrnet-18", "mpii", 1_130_728),
        ("litehrnet-30", "mpii", 1_763_676),
    ],
)
def test_exact_parameter_counts(name: str, dataset: str, expected: int) -> None:
    assert n_params(built(name, dataset)) == expected


def test_naive_head_takes_30_channels() -> None:
    head = built("litehrnet-naive-18").keypoint_head.final_layer
    assert tuple(head.weight.shape) == (17, 30, 1, 1)
    assert tuple(build_model("litehrnet-naive-18", num_joints=5).keypoint_head.final_layer.weight.shape) == (
        5,
        30,
        1,
        1,
    )


def test_specs_registered() -> None:
    for name in VARIANTS:
        spec = get_spec(name)
        assert (spec.family, spec.kind, spec.input_size, spec.size_multiple) == (
            "litehrnet",
            "top-down",
            (256, 192),
            32,
        )
        assert spec.datasets == ("coco", "mpii") and spec.mac_convention == "torchstat"
        assert [(o.name, o.role, o.stride, o.channels_per_joint) for o in spec.outputs] == [
            ("heatmaps", "heatmaps", 4, 1)
        ]
    assert get_spec("litehrnet-18").extra_sizes == ((384, 288),)
    assert get_spec("litehrnet-30").extra_sizes == ((384, 288),)


@pytest.mark.parametrize("size", [(256, 192), (384, 288)])
def test_output_shape(l18: nn.Module, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = l18(torch.randn(2, 3, *size))
    assert out.shape == (2, 17, size[0] // 4, size[1] // 4)
    # Random init must give O(1) heatmaps, or runtime parity tests would pass on anything.
    assert 0.1 < out.std().item() < 100


def test_mpii_output_shape() -> None:
    model = built("litehrnet-18", "mpii")
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 16, 64, 64)


def test_bad_input_sizes(l18: nn.Module) -> None:
    with pytest.raises(EdgeposeError, match="224 or 256"):
        l18(torch.randn(1, 3, 250, 192))
    with pytest.raises(EdgeposeError, match="width 200"):
        l18(torch.randn(1, 3, 256, 200))
    with pytest.raises(EdgeposeError, match=r"\(N, 3, H, W\)"):
        l18(torch.randn(1, 1, 256, 192))


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(EdgeposeError, match="crowdpose"):
        build_model("litehrnet-18", dataset="crowdpose")


def test_conv_macs_match_reference(l18: nn.Module) -> None:
    """Unique conv MACs (each conv once, no bias) at 256x192: 198.63M per the reference."""
    macs = []

    def hook(mod: nn.Conv2d, inputs: tuple, out: torch.Tensor) -> None:
        macs.append(out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in l18.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            l18(torch.randn(1, 3, 256, 192))
    finally:
        for h in handles:
            h.remove()
    assert round(sum(macs) / 1e6, 2) == 198.63
    assert len(macs) == 301  # every conv runs once: no duplicated fuse convs


# --- the official state_dict layout (reference §3.3), built here independently ----------------------


def _bn(keys: dict, prefix: str, c: int) -> None:
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{prefix}.{leaf}"] = (c,)
    keys[f"{prefix}.num_batches_tracked"] = ()


def _conv_module(
    keys: dict, prefix: str, cin: int, cout: int, k: int, dw: bool = False, norm: bool = True
) -> None:
    keys[f"{prefix}.conv.weight"] = (cout, 1 if dw else cin, k, k)
    if norm:
        _bn(keys, f"{prefix}.bn", cout)
    else:
        keys[f"{prefix}.conv.bias"] = (cout,)


def _dw_pw(keys: dict, prefix: str, cin: int, cout: int) -> None:
    keys[f"{prefix}.0.weight"] = (cin, 1, 3, 3)
    _bn(keys, f"{prefix}.1", cin)
    keys[f"{prefix}.2.weight"] = (cout, cin, 1, 1)
    _bn(keys, f"{prefix}.3", cout)


def expected_keys(modules: tuple[int, ...], naive: bool, widths: tuple[int, ...], joints: int) -> dict:
    """Key -> shape of the official checkpoint, from the reference text (not from the model code)."""
    keys: dict = {}
    b = "backbone"
    _conv_module(keys, f"{b}.stem.conv1", 3, 32, 3)
    _conv_module(keys, f"{b}.stem.branch1.0", 16, 16, 3, dw=True)
    _conv_module(keys, f"{b}.stem.branch1.1", 16, 16, 1)
    _conv_module(keys, f"{b}.stem.expand_conv", 16, 32, 1)
    _conv_module(keys, f"{b}.stem.depthwise_conv", 32, 32, 3, dw=True)
    _conv_module(keys, f"{b}.stem.linear_conv", 32, 16, 1)
    _dw_pw(keys, f"{b}.transition0.0", 32, widths[0])
    _dw_pw(keys, f"{b}.transition0.1.0", 32, widths[1])
    _dw_pw(keys, f"{b}.transition1.2.0", widths[1], widths[2])
    _dw_pw(keys, f"{b}.transition2.3.0", widths[2], widths[3])
    for s, num_modules in enumerate(modules):
        ch = widths[: s + 2]
        for m in range(num_modules):
            p = f"{b}.stage{s}.{m}"
            for blk in range(2):
                if naive:
                    for br, c in enumerate(ch):
                        q = f"{p}.layers.{br}.{blk}.branch2"
                        _conv_module(keys, f"{q}.0", c // 2, c // 2, 1)
                        _conv_module(keys, f"{q}.1", c // 2, c // 2, 3, dw=True)
                        _conv_module(keys, f"{q}.2", c // 2, c // 2, 1)
                    continue
                q = f"{p}.layers.{blk}"
                total = sum(c // 2 for c in ch)
                _conv_module(keys, f"{q}.cross_resolution_weighting.conv1", total, total // 8, 1)
                _conv_module(keys, f"{q}.cross_resolution_weighting.conv2", total // 8, total, 1)
                for i, c in enumerate(ch):
                    _conv_module(keys, f"{q}.depthwise_convs.{i}", c // 2, c // 2, 3, dw=True)
                    _conv_module(keys, f"{q}.spatial_weighting.{i}.conv1", c // 2, c // 8, 1, norm=False)
                    _conv_module(keys, f"{q}.spatial_weighting.{i}.conv2", c // 8, c // 2, 1, norm=False)
            for i, ci in enumerate(ch):
                for j, cj in enumerate(ch):
                    if j > i:
                        keys[f"{p}.fuse_layers.{i}.{j}.0.weight"] = (ci, cj, 1, 1)
                        _bn(keys, f"{p}.fuse_layers.{i}.{j}.1", ci)
                    for k in range(i - j):
                        _dw_pw(keys, f"{p}.fuse_layers.{i}.{j}.{k}", cj, ci if k == i - j - 1 else cj)
    rev = widths[::-1]
    for k, (cin, cout) in enumerate(zip(rev, rev[1:] + rev[-1:])):
        _conv_module(keys, f"{b}.head_layer.projects.{k}.depthwise_conv", cin, cin, 3, dw=True)
        _conv_module(keys, f"{b}.head_layer.projects.{k}.pointwise_conv", cin, cout, 1)
    keys["keypoint_head.final_layer.weight"] = (joints, widths[0], 1, 1)
    keys["keypoint_head.final_layer.bias"] = (joints,)
    return keys


@pytest.mark.parametrize(
    "name, modules, naive, widths, count",
    [
        ("litehrnet-18", (2, 4, 2), False, (40, 80, 160, 320), 1418),
        ("litehrnet-30", (3, 8, 3), False, (40, 80, 160, 320), 2360),
        ("litehrnet-naive-18", (2, 4, 2), True, (30, 60, 120, 240), None),
    ],
)
def test_state_dict_matches_official_layout(name, modules, naive, widths, count) -> None:
    state = built(name).state_dict()
    expected = expected_keys(modules, naive, widths, 17)
    if count is not None:
        assert len(state) == count
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    # A few literal names and shapes quoted by the reference.
    if name == "litehrnet-18":
        assert sum(k.endswith("num_batches_tracked") for k in state) == 204
        assert expected["backbone.stage0.0.layers.0.cross_resolution_weighting.conv1.conv.weight"] == (
            7,
            60,
            1,
            1,
        )
        assert "backbone.stage2.1.fuse_layers.3.0.2.3.running_var" in state
        assert "backbone.transition1.0.0.weight" not in state  # None hole for the unchanged branch


# --- fuse semantics -------------------------------------------------------------------------------------


def original_module_forward(self: LiteHRModule, x: list[torch.Tensor]) -> list[torch.Tensor]:
    """The official LiteHRModule.forward, in-place aliasing and all (only valid under no_grad)."""
    if self.module_type == "LITE":
        out = list(self.layers(x))
    else:
        out = [self.layers[i](x[i]) for i in range(len(x))]
    fused = []
    for i in range(len(self.fuse_layers)):
        y = out[0] if i == 0 else self.fuse_layers[i][0](out[0])
        for j in range(len(out)):
            if i == j:
                y += out[j]
            else:
                y += self.fuse_layers[i][j](out[j])
        fused.append(self.relu(y))
    return fused


@pytest.mark.parametrize("name", ["litehrnet-18", "litehrnet-naive-18"])
def test_fuse_matches_original_in_place_loop(l18: nn.Module, name: str) -> None:
    model = l18 if name == "litehrnet-18" else built(name)
    original = copy.deepcopy(model)
    patched = 0
    for m in original.modules():
        if isinstance(m, LiteHRModule):
            m.forward = types.MethodType(original_module_forward, m)
            patched += 1
    assert patched == 8
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, ref = model(x), original(x)
    scale = ref.abs().max().item()
    assert scale > 0.1
    assert (ours - ref).abs().max().item() <= 2e-6 * max(1.0, scale)


def test_fuse_quirk_matters(l18: nn.Module) -> None:
    """Sanity check of the test above: a clean HRNet-style fuse gives clearly different heatmaps."""
    module = l18.backbone.stage2[0]
    x = [torch.randn(1, c, 32 // 2**i, 24 // 2**i) for i, c in enumerate(module.in_channels)]
    with torch.no_grad():
        out = module.layers(x)
        clean = [
            module.relu(sum(out[j] if j == i else module.fuse_layers[i][j](out[j]) for j in range(4)))
            for i in range(4)
        ]
        ours = module.fuse(out)
    assert max((a - b).abs().max().item() for a, b in zip(ours, clean)) > 0.1


def test_cross_resolution_weighting_equals_adaptive_version() -> None:
    """Fixed-kernel pooling / fixed-scale nearest == the original adaptive pooling / resize-to-size."""
    torch.manual_seed(1)
    crw = CrossResolutionWeighting([20, 40, 80, 160], ratio=8).eval()
    for h, w in ((64, 48), (8, 8), (24, 16)):
        x = [torch.randn(2, c, h // 2**i, w // 2**i) for i, c in enumerate(crw.channels)]
        with torch.no_grad():
            mini = x[-1].shape[-2:]
            pooled = [F.adaptive_avg_pool2d(s, mini) for s in x[:-1]] + [x[-1]]
            weights = crw.conv2(crw.conv1(torch.cat(pooled, dim=1))).split(crw.channels, dim=1)
            ref = [s * F.interpolate(a, size=s.shape[-2:], mode="nearest") for s, a in zip(x, weights)]
            ours = crw(x)
        for a, b in zip(ours, ref):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_channel_shuffle_is_the_groups2_permutation() -> None:
    x = torch.randn(2, 8, 3, 2)
    perm = [0, 4, 1, 5, 2, 6, 3, 7]  # [0, C/2, 1, C/2+1, ...]
    assert torch.equal(channel_shuffle(x, 2), x[:, perm])


# --- checkpoints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["mmcv", "mmpose1"])
def test_checkpoint_round_trip(l18: nn.Module, tmp_path, layout: str) -> None:
    state = {k: v.clone() for k, v in l18.state_dict().items()}
    if layout == "mmcv":
        ckpt = {"meta": {"epoch": 210}, "state_dict": state}
    else:
        state = {
            ("head." + k[len("keypoint_head.") :] if k.startswith("keypoint_head.") else k): v
            for k, v in state.items()
        }
        state["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
        state["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
        ckpt = {"meta": {}, "state_dict": state}
    path = tmp_path / f"{layout}.pth"
    torch.save(ckpt, path)
    torch.manual_seed(123)
    fresh = build_model("litehrnet-18")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), l18(x))
        load_weights(fresh, path)
        torch.testing.assert_close(fresh(x), l18(x), rtol=0, atol=0)


def test_wrong_checkpoint_is_refused(tmp_path) -> None:
    path = tmp_path / "naive.pth"
    torch.save({"state_dict": built("litehrnet-naive-18").state_dict()}, path)
    with pytest.raises(EdgeposeError, match="does not fit litehrnet-18"):
        load_weights(built("litehrnet-18"), path)


# --- export ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_legacy_onnx_export_with_dynamic_batch(l18: nn.Module) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    buf = io.BytesIO()
    torch.onnx.export(
        l18,
        torch.randn(1, 3, 128, 96),
        buf,
        dynamo=False,
        opset_version=11,
        input_names=["input"],
        output_names=["heatmaps"],
        dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}},
    )
    graph = onnx.load_from_string(buf.getvalue()).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Conv") == 301  # BN folded, no duplicated fuse convs
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, 128, 96)
        with torch.no_grad():
            ref = l18(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (batch, 17, 32, 24)
        assert abs(got - ref).max() <= 1e-4 * max(1.0, abs(ref).max())
