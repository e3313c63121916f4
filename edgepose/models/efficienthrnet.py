"""EfficientHRNet (Neff et al., 2020): the scaled-down HRNet baselines of the LitePose latency table.

Configuration facts from mit-han-lab/litepose (``lib/models/pose_efficient_hrnet.py`` and
``experiments/crowd_pose/efficient_hrnet/H-{1..4}.yaml``):

- Backbone: EfficientNet-B0 (MBConv with squeeze-excitation, Swish, TF "SAME" padding) scaled by
  ``WIDTH_MULT`` (channels rounded to multiples of 8) and ``DEPTH_MULT`` (repeats rounded up). Its
  1/4, 1/8, 1/16 and 1/32 outputs (the last 24-, 40-, 112- and 320-channel blocks) feed the HRNet.
- HRNet stages 2/3/4 with 2/3/4 branches of 2 basic blocks; widths 32, 64, 128, 256 and the deconv
  width 32 are scaled by ``ceil(c * 1.2455**SCALE_FACTOR)``. Each stage input passes a 3x3 conv (with
  bias) + BN + ReLU (``trans{1,2,3}_branch*``).
- HigherHRNet head: 1 deconv, ``CAT_OUTPUT``, 2 basic blocks, tag per joint.

Module names follow the official code so its state_dicts should map key for key. Drop-connect (training
only) is left out: edgepose builds inference networks.

Outputs for an H x W input: ``heatmaps_tags`` (N, 2J, H/4, W/4) and ``heatmaps`` (N, J, H/2, W/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edgepose.models.hrnet_blocks import (
    BOTTOM_UP_OUTPUTS,
    conv_bn,
    higher_head_forward,
    make_higher_head,
    make_stage,
)
from edgepose.models.registry import Family, ModelSpec, Variant, check_forward_input, register_family
from edgepose.models.widths import make_divisible

# EfficientNet-B0 stages: (expansion t, channels c, repeats n, stride s, kernel k).
B0_SETTINGS = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)
TAPPED_STAGES = (1, 2, 4, 6)  # B0 stages whose last block feeds the HRNet: strides 4, 8, 16, 32
HRNET_WIDTHS = (32, 64, 128, 256)
DECONV_WIDTH = 32
BRANCH_BLOCKS = 2  # basic blocks per branch, and in the head
SCALE_BASE = 1.2455  # EfficientHRNet's per-step width scaling of the HRNet part


@dataclass(frozen=True)
class EfficientHRNetConfig:
    """One ``experiments/crowd_pose/efficient_hrnet/H-*.yaml``: input size, scaling, module counts."""

    input_size: int
    width_mult: float  # MODEL.WIDTH_MULT (EfficientNet backbone)
    depth_mult: float  # MODEL.DEPTH_MULT (EfficientNet backbone)
    scale_factor: int  # MODEL.SCALE_FACTOR (HRNet part: widths * 1.2455**scale_factor)
    stage_modules: tuple[int, int, int]  # NUM_MODULES of STAGE2, STAGE3, STAGE4


CONFIGS = {
    "efficienthrnet-h1": EfficientHRNetConfig(480, 0.909, 0.833, -1, (1, 3, 3)),
    "efficienthrnet-h2": EfficientHRNetConfig(448, 0.826, 0.694, -2, (1, 2, 3)),
    "efficienthrnet-h3": EfficientHRNetConfig(416, 0.751, 0.578, -3, (1, 1, 3)),
    "efficienthrnet-h4": EfficientHRNetConfig(384, 0.684, 0.483, -4, (1, 1, 2)),
}


def round_filters(channels: int, width_mult: float) -> int:
    """EfficientNet width scaling (unchanged at 1.0, else rounded to a multiple of 8)."""
    return channels if width_mult == 1.0 else int(make_divisible(channels * width_mult))


def round_repeats(repeats: int, depth_mult: float) -> int:
    """EfficientNet depth scaling: repeats rounded up."""
    return repeats if depth_mult == 1.0 else int(math.ceil(depth_mult * repeats))


class ConvBNSwish(nn.Sequential):
    """TF-"SAME" padded conv + BN + Swish; index 0 is the padding (keys ``1.*``/``2.*`` as official).

    Symmetric padding goes into the conv (same numbers, one op fewer); stride-2 convs need the
    asymmetric (0/1 or 1/2) padding of the official ``ZeroPad2d``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        total = max(kernel - stride, 0)
        before, after = total // 2, total - total // 2
        symmetric = before == after
        super().__init__(
            nn.Identity() if symmetric else nn.ZeroPad2d((before, after, before, after)),
            nn.Conv2d(cin, cout, kernel, stride, before if symmetric else 0, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.SiLU(inplace=True),
        )


class SqueezeExcitation(nn.Module):
    """Channel gating: global average pool, 1x1 reduce + Swish, 1x1 expand + sigmoid, multiply."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.SiLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class MBConvBlock(nn.Module):
    """EfficientNet MBConv: [1x1 expand] -> kxk depthwise -> SE (reduce in/4) -> 1x1 linear, residual if same shape."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [ConvBNSwish(cin, hidden, 1)] if hidden != cin else []
        layers += [
            ConvBNSwish(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcitation(hidden, max(1, int(cin / 4))),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def _trans(cin: int, cout: int) -> nn.Sequential:
    # The official transition convs keep nn.Conv2d's default bias.
    return conv_bn(cin, cout, 3, bias=True)


class EfficientHRNet(nn.Module):
    """EfficientHRNet H-x: scaled EfficientNet-B0 backbone, scaled HRNet stages, HigherHRNet head."""

    def __init__(self, config: EfficientHRNetConfig, num_joints: int) -> None:
        super().__init__()
        self.config = config
        self.num_joints = num_joints
        wm, dm = config.width_mult, config.depth_mult

        cin = round_filters(32, wm)
        features: list[nn.Module] = [ConvBNSwish(3, cin, 3, 2)]
        backbone_out = []  # channels of the tapped B0 stages
        taps = []  # indices into self.features of their last blocks
        for stage, (t, c, n, s, k) in enumerate(B0_SETTINGS):
            cout = round_filters(c, wm)
            for i in range(round_repeats(n, dm)):
                features.append(MBConvBlock(cin, cout, t, k, s if i == 0 else 1))
                cin = cout
            if stage in TAPPED_STAGES:
                backbone_out.append(cout)
                taps.append(len(features) - 1)
        self.features = nn.Sequential(*features)
        self.taps = tuple(taps)

        w = [int(math.ceil(c * SCALE_BASE**config.scale_factor)) for c in HRNET_WIDTHS]
        m2, m3, m4 = config.stage_modules
        self.trans1_branch1 = _trans(backbone_out[0], w[0])
        self.trans1_branch2 = _trans(backbone_out[1], w[1])
        self.stage2 = make_stage(m2, [BRANCH_BLOCKS] * 2, w[:2])
        self.trans2_branch1 = _trans(w[0], w[0])
        self.trans2_branch2 = _trans(w[1], w[1])
        self.trans2_branch3 = _trans(backbone_out[2], w[2])
        self.stage3 = make_stage(m3, [BRANCH_BLOCKS] * 3, w[:3])
        self.trans3_branch1 = _trans(w[0], w[0])
        self.trans3_branch2 = _trans(w[1], w[1])
        self.trans3_branch3 = _trans(w[2], w[2])
        self.trans3_branch4 = _trans(backbone_out[3], w[3])
        self.stage4 = make_stage(m4, [BRANCH_BLOCKS] * 4, w, multi_scale_output=False)
        deconv = int(math.ceil(DECONV_WIDTH * SCALE_BASE**config.scale_factor))
        self.final_layers, self.deconv_layers = make_higher_head(w[0], deconv, BRANCH_BLOCKS, num_joints)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_forward_input(getattr(self, "spec", None), x)
        tapped = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                tapped.append(x)
        x1, x2, x3, x4 = tapped
        ys = self.stage2([self.trans1_branch1(x1), self.trans1_branch2(x2)])
        ys = self.stage3([self.trans2_branch1(ys[0]), self.trans2_branch2(ys[1]), self.trans2_branch3(x3)])
        ys = self.stage4(
            [
                self.trans3_branch1(ys[0]),
                self.trans3_branch2(ys[1]),
                self.trans3_branch3(ys[2]),
                self.trans3_branch4(x4),
            ]
        )
        return higher_head_forward(self.final_layers, self.deconv_layers, ys[0])


FAMILY = Family(
    name="efficienthrnet",
    kind="bottom-up",
    paper="EfficientHRNet (2020)",
    datasets=("crowdpose", "coco"),
    size_multiple=32,  # backbone down to 1/32 (SAME padding rounds up), fused back by exact upsampling
    outputs=BOTTOM_UP_OUTPUTS,
    mac_convention="ptflops-0.6",
)


def build(spec: ModelSpec, config: EfficientHRNetConfig, num_joints: int) -> EfficientHRNet:
    """EfficientHRNet of ``config`` with a ``num_joints`` head."""
    return EfficientHRNet(config, num_joints)


def _variant(name: str, config: EfficientHRNetConfig) -> Variant:
    yaml = name.rsplit("-", 1)[1].upper()  # "H1"
    label = f"{yaml[0]}-{yaml[1:]}"
    description = (
        f"EfficientHRNet {label} (mit-han-lab/litepose experiments/crowd_pose/efficient_hrnet/{label}.yaml)"
    )
    return Variant((config.input_size, config.input_size), description, config)


SPECS = register_family(FAMILY, {name: _variant(name, config) for name, config in CONFIGS.items()}, build)
