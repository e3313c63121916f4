"""MAC counting: the papers' printed figures, true MACs, independent cross-checks, per-layer sums, no side effects."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgepose.errors import EdgeposeError
from edgepose.macs import CONVENTIONS, count_macs, count_registered, get_convention
from edgepose.models import build_model

# LitePose (litepose.md §5.1): paper convention (G, as printed to 3 decimals) and true conv MACs (CrowdPose).
LITEPOSE_PAPER = {
    ("litepose-xs", "crowdpose"): 1.202,
    ("litepose-s", "crowdpose"): 4.981,
    ("litepose-m", "crowdpose"): 7.842,
    ("litepose-l", "crowdpose"): 13.713,
    ("litepose-xs", "coco"): 1.205,
    ("litepose-s", "coco"): 4.992,
    ("litepose-m", "coco"): 7.854,
    ("litepose-l", "coco"): 13.730,
}
LITEPOSE_TRUE = {"litepose-xs": 0.883, "litepose-s": 3.614, "litepose-m": 5.264, "litepose-l": 9.962}
# Lite-HRNet (litehrnet.md §2.1-2.2): README "M FLOPs" (torchstat, /2^20) and unique conv MACs (decimal M).
LITEHRNET = {
    ("litehrnet-18", (256, 192)): (205.23, 198.63),
    ("litehrnet-18", (384, 288)): (461.56, 446.78),
    ("litehrnet-30", (256, 192)): (319.20, 309.45),
    ("litehrnet-30", (384, 288)): (717.84, 696.05),
}


@functools.cache
def built(name: str, dataset: str | None = None) -> nn.Module:
    """One CPU instance per variant, shared by the read-only tests (Lite-HRNet's init runs a forward)."""
    torch.manual_seed(0)
    return build_model(name, dataset=dataset)


# --- the papers' figures -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "dataset"), list(LITEPOSE_PAPER))
def test_litepose_paper_and_true_macs(name: str, dataset: str) -> None:
    r = count_registered(name, dataset)
    assert r.paper_convention == "ptflops-0.6"
    assert (r.paper_value, r.paper_unit) == (LITEPOSE_PAPER[name, dataset], "G")
    assert round(r.paper_macs / 1e9, 3) == LITEPOSE_PAPER[name, dataset]
    assert (
        r.paper_display
        == f"{LITEPOSE_PAPER[name, dataset]:.3f} G MACs (ptflops<=0.7.4 rules, LitePose paper)"
    )
    if dataset == "crowdpose":
        assert round(r.true_macs / 1e9, 3) == LITEPOSE_TRUE[name]
    assert r.true_macs < r.paper_macs
    assert r.counted_on == "meta"


@pytest.mark.parametrize(("name", "size"), list(LITEHRNET))
def test_litehrnet_paper_and_true_macs(name: str, size: tuple[int, int]) -> None:
    paper, true = LITEHRNET[name, size]
    r = count_macs(built(name), input_size=size)
    assert r.paper_convention == "torchstat"
    assert (r.paper_value, r.paper_unit) == (paper, "M (binary)")
    assert r.paper_display == f"{paper:.2f} M FLOPs (torchstat rules, /2^20, Lite-HRNet paper)"
    assert round(r.true_macs / 1e6, 2) == true
    assert r.output_shapes == [(1, 17, size[0] // 4, size[1] // 4)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dataset", "paper"),
    [
        ("litehrnet-naive-18", "coco", 194.76),
        ("litehrnet-wider-naive-18", "coco", 311.05),
        ("litehrnet-18", "mpii", 273.43),  # 256x256, the README's MPII row
        ("litehrnet-30", "mpii", 425.34),
    ],
)
def test_litehrnet_other_readme_rows(name: str, dataset: str, paper: float) -> None:
    assert count_registered(name, dataset).paper_value == paper


# --- independent cross-checks --------------------------------------------------------------------------


def hook_true_macs(model: nn.Module, x: torch.Tensor) -> int:
    """True MACs from module hooks and textbook formulas (independent of edgepose.macs and flop_registry)."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):  # every output element: C_in/groups * k_h * k_w MACs
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):  # every INPUT element scatters C_out/groups * k_h * k_w
            total += inputs[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += inputs[0].numel() * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name", ["litepose-s", "litehrnet-18"])
def test_true_macs_match_hooks_and_flop_counter_mode(name: str) -> None:
    model = copy.deepcopy(built(name)).to("meta")  # both cross-checks run on shapes only
    r = count_macs(model)
    x = torch.zeros(1, 3, *model.spec.input_size, device="meta")
    assert r.true_macs == hook_true_macs(model, x)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    assert fc.get_total_flops() == 2 * r.true_macs  # torch counts 2 flops per MAC


class Toy(nn.Module):
    """Every rule in one small net: grouped conv, stride-2 deconv, BN, activations, pools, upsample, a module
    called twice, a functional conv (true MACs only), sigmoid and linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU6()
        self.grouped = nn.Conv2d(8, 8, 3, 1, 1, groups=4, bias=False)
        self.deconv = nn.ConvTranspose2d(8, 4, 4, 2, 1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)
        self.register_buffer("kernel", torch.ones(4, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        y = self.act(self.grouped(y))  # self.act runs twice
        y = self.up(self.pool(self.deconv(y)))
        y = F.conv2d(y, self.kernel, padding=1, groups=4)  # functional: true MACs only
        y = y * torch.sigmoid(y)
        return self.fc(self.gap(y).flatten(1))


def test_toy_true_macs_by_hand() -> None:
    r = count_macs(Toy(), input_size=(16, 16))
    conv = 8 * 8 * 8 * 3 * 3 * 3  # 8x8 outputs, 8 filters, 3*3*3 each
    grouped = 8 * 8 * 8 * 2 * 3 * 3  # 2 input channels per group
    deconv = 8 * 8 * 8 * 4 * 4 * 4  # per input position: C_in * C_out * k*k
    functional = 16 * 16 * 4 * 3 * 3
    fc = 4 * 5
    assert r.true_macs == conv + grouped + deconv + functional + fc
    by_name = {layer.name: layer for layer in r.layers}
    assert by_name["(model)"].true_macs == functional  # charged to the module that ran it
    assert by_name["act"].calls == 2
    assert {"sigmoid", "mul", "max_pool2d_with_indices", "upsample_nearest2d"} <= set(r.uncounted)


def test_toy_paper_conventions_by_hand() -> None:
    model = Toy()
    ptflops = count_macs(model, input_size=(16, 16), convention="ptflops-0.6").paper_macs
    conv = 8 * 8 * 8 * 3 * 3 * 3 + 8 * 8 * 8  # + bias adds
    grouped = 8 * 8 * 8 * 2 * 3 * 3
    bn, act = 2 * 512, 512 + 512  # act: both calls
    deconv_ptflops = 16 * 16 * 4 * 4 * 4 * 8  # priced at the 16x16 OUTPUT: 4x the true 1/4
    pool_in, up_out = 4 * 16 * 16, 4 * 16 * 16
    gap_in, fc = 4 * 16 * 16, 4 * 5 + 5
    assert ptflops == conv + grouped + bn + act + deconv_ptflops + pool_in + up_out + gap_in + fc

    torchstat = count_macs(model, input_size=(16, 16), convention="torchstat").paper_macs
    deconv_true = 8 * 8 * 8 * 4 * 4 * 4
    pool = 4 * 8 * 8 * 2 * 2  # outputs * kernel
    up = 16 * 16  # B*H*W: channels dropped
    gap = 4 * 17 * 17  # C*(H+1)*(W+1)
    act_once = 512  # the second call overwrites the first (same size here)
    assert torchstat == conv + grouped + bn + act_once + deconv_true + pool + up + gap + 4 * 5


def test_torchstat_counts_a_module_called_twice_once() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1, bias=False)

        def forward(self, x):
            return self.conv(self.conv(x))

    once = 3 * 3 * 4 * 4
    assert count_macs(Twice(), (4, 4), "torchstat").paper_macs == once
    assert count_macs(Twice(), (4, 4), "ptflops-0.6").paper_macs == 2 * once
    assert count_macs(Twice(), (4, 4)).true_macs == 2 * once


def test_paper_convention_matches_real_ptflops() -> None:
    ptflops = pytest.importorskip(
        "ptflops", reason="ptflops==0.6.9 (dev dependency) cross-checks the LitePose rules"
    )
    for model, size in ((Toy(), (16, 16)), (built("litepose-xs"), (256, 256))):
        macs, params = ptflops.get_model_complexity_info(
            model, (3, *size), as_strings=False, print_per_layer_stat=False
        )
        r = count_macs(model, size, "ptflops-0.6")
        assert (r.paper_macs, r.params) == (int(macs), params)


# --- per layer, reporting -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["litepose-xs", "litehrnet-18"])
def test_per_layer_sums_to_totals(name: str) -> None:
    r = count_macs(built(name))
    assert sum(x.true_macs for x in r.layers) == r.true_macs
    assert sum(x.paper_macs for x in r.layers) == r.paper_macs
    assert len({x.name for x in r.layers}) == len(r.layers)
    d = r.as_dict()
    assert d["input_size"] == list(r.input_size) and len(d["layers"]) == len(r.layers)


def test_uncounted_lists_litehrnet_elementwise_ops() -> None:
    r = count_macs(built("litehrnet-18"))
    for op in (
        "sigmoid",
        "mul",
        "avg_pool2d",
        "upsample_nearest2d",
        "clone (contiguous copy, e.g. channel shuffle)",
    ):
        assert r.uncounted.get(op, 0) > 0, op


def test_scale_and_display() -> None:
    ptflops, torchstat = CONVENTIONS["ptflops-0.6"], CONVENTIONS["torchstat"]
    assert ptflops.scale(1_202_266_112) == (1.202, "G")
    assert ptflops.scale(218_968_512) == (218.969, "M")
    assert torchstat.scale(215_202_112) == (205.23, "M (binary)")
    assert torchstat.display(3 * 2**30) == "3.00 G FLOPs (torchstat rules, /2^30, Lite-HRNet paper)"
    assert ptflops.scale(12) == (12, "")
    assert (torchstat.units(3 * 2**30), ptflops.units(1_202_266_112)) == ("G FLOPs", "G MACs")


def test_fitted_convention_labels_its_factor() -> None:
    fit = CONVENTIONS["torchstat-seg-fit"]
    assert fit.fitted and fit.factor == 0.9097 and "docs/segmentation.md" in fit.fit_note
    assert fit.display(2 * 2**30) == (
        "2.00 G FLOPs (torchstat rules, /2^30, x0.9097 fitted, Lite-HRNet paper, Cityscapes)"
    )
    assert (
        fit.display(2 * 2**30, with_factor=False) == "2.00 G FLOPs (torchstat rules, /2^30, no fitted factor)"
    )
    assert "x0.9097 fitted" in fit.note
    assert not any(c.fitted for name, c in CONVENTIONS.items() if name != "torchstat-seg-fit")


def test_fitted_factor_scales_every_layer_and_keeps_the_rules_count() -> None:
    plain = count_macs(Toy(), (16, 16), "torchstat")
    fitted = count_macs(Toy(), (16, 16), "torchstat-seg-fit")
    assert fitted.paper_rules_macs == plain.paper_rules_macs == plain.paper_macs
    assert fitted.true_macs == plain.true_macs
    assert [x.paper_macs for x in fitted.layers] == [round(x.paper_macs * 0.9097) for x in plain.layers]
    assert fitted.paper_macs == sum(x.paper_macs for x in fitted.layers)
    assert fitted.published_value is None  # a model without a spec has no printed figure


def test_cli_names_every_convention() -> None:
    from edgepose.cli.macs_cmd import SHOW

    assert set(SHOW) == {"true", "paper", "both", *CONVENTIONS}


# --- no side effects, fallback, errors ------------------------------------------------------------------


def test_counting_leaves_the_model_alone() -> None:
    model = Toy().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (16, 16))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched too


def test_falls_back_to_cpu_without_meta_support() -> None:
    class PlainTensor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1, bias=False)
            self.offset = torch.ones(1, 4, 1, 1)  # not a buffer: stays on the CPU in the meta copy

        def forward(self, x):
            return self.conv(x) + self.offset

    r = count_macs(PlainTensor(), (8, 8))
    assert r.counted_on == "cpu" and r.true_macs == 8 * 8 * 4 * 3


def test_errors() -> None:
    with pytest.raises(EdgeposeError, match="multiples of 16"):
        count_registered("litepose-xs", input_size=(250, 256))
    with pytest.raises(EdgeposeError, match="unknown MAC convention"):
        get_convention("flops")
    with pytest.raises(EdgeposeError, match="input_size"):
        count_macs(Toy())
    with pytest.raises(EdgeposeError, match="has no 'mpii' head"):
        count_registered("litepose-xs", "mpii")


def test_the_rules_on_odd_shapes_by_hand() -> None:
    """Each rule called directly on batch-2 inputs with non-square kernels, groups, biases and affine-free
    norms: the figures worked out in the comments, so a swapped axis or a dropped term shows."""
    from edgepose.macs.conventions import ptflops_rule, torchstat_rule

    def run(m, *shape):
        x = torch.zeros(*shape)
        return m, x, m(x)

    conv = run(nn.Conv2d(3, 6, (3, 5), padding=(1, 2), groups=3), 2, 3, 4, 7)
    # 2*4*7 = 56 output positions, 3*5 kernel * 3 in * 6/3 out = 90 each, + 6 bias adds per position
    assert torchstat_rule(*conv) == ptflops_rule(*conv) == 90 * 56 + 6 * 56
    assert isinstance(torchstat_rule(*conv), int) and isinstance(ptflops_rule(*conv), int)
    deconv = run(nn.ConvTranspose2d(6, 4, 2, stride=2), 2, 6, 3, 5)
    # torchstat: 2*2*6*4 = 96 per INPUT position, 2*3*5 = 30 of them; bias 4 at each of 2*6*10 outputs
    assert torchstat_rule(*deconv) == 96 * 30 + 4 * 120
    # ptflops 0.6 prices the deconv per OUTPUT position (its over-count): 96 * 120 + 4 * 120
    assert ptflops_rule(*deconv) == 96 * 120 + 4 * 120
    bn = run(nn.BatchNorm2d(4, affine=False).eval(), 2, 4, 3, 3)
    assert torchstat_rule(*bn) == ptflops_rule(*bn) == 72  # no scale and shift: 1 per element
    fc = run(nn.Linear(5, 3, bias=False), 2, 5)
    assert ptflops_rule(*fc) == 10 * 3 and torchstat_rule(*fc) == 2 * 5 * 3
    fc_bias = run(nn.Linear(5, 3), 2, 5)
    assert ptflops_rule(*fc_bias) == 10 * 3 + 3
    pool = run(nn.AvgPool2d((2, 3)), 2, 4, 6, 9)  # 3x3 outputs, a 2x3 window each
    assert torchstat_rule(*pool) == 2 * 4 * 9 * 2 * 3
    square = run(nn.MaxPool2d(2), 1, 4, 6, 8)
    assert torchstat_rule(*square) == 4 * 12 * 2 * 2
    adaptive = run(nn.AdaptiveAvgPool2d((3, 2)), 1, 2, 7, 5)
    # rows 7 -> 3 windows [0,3) [2,5) [4,7): (3+1)+(3+1)+(3+1) = 12; cols 5 -> 2: [0,3) [2,5): 4 + 4 = 8
    assert torchstat_rule(*adaptive) == 2 * 12 * 8


def test_units_at_every_magnitude() -> None:
    ptflops, torchstat = CONVENTIONS["ptflops-0.6"], CONVENTIONS["torchstat"]
    assert [ptflops.scale(v) for v in (5_000, 2 * 1000**4)] == [(5.0, "K"), (2.0, "T")]
    assert [ptflops.units(v) for v in (7, 5_000, 5 * 1000**2, 2 * 1000**4)] == [
        "MACs",
        "K MACs",
        "M MACs",
        "T MACs",
    ]
    assert torchstat.scale(3 * 1024) == (3.0, "K (binary)") and torchstat.units(5 * 1024**4) == "T FLOPs"


def test_an_unknown_convention_lists_the_known_ones() -> None:
    with pytest.raises(EdgeposeError) as err:
        get_convention("flops")
    assert (
        str(err.value) == "unknown MAC convention 'flops'; known: ptflops-0.6, torchstat, torchstat-seg-fit"
    )
