"""LitePose (Wang et al., CVPR 2022): bottom-up pose estimation with a single-branch MobileNetV2 backbone.

The architectures are the released ``mobile_configs/search-*.json`` dicts of mit-han-lab/litepose,
kept as data in ``configs/litepose/``. Module names mirror the official ``LitePose`` module
(``first``, ``stage.S.I.{inv,depth_conv,point_conv}``, ``deconv_{refined,raw}``,
``deconv_bnrelu``, ``final_{refined,raw}``) so the released state_dicts (679 entries) load with
``strict=True``.

Outputs for an H x W input: ``heatmaps_tags`` (N, 2J, H/4, W/4) and ``heatmaps`` (N, J, H/2, W/2).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
from torch import nn

from edgepose.models.registry import (
    Family,
    ModelSpec,
    OutputSpec,
    Variant,
    check_forward_input,
    register_family,
)
from edgepose.models.widths import make_divisible

CONFIG_DIR = Path(__file__).parent / "configs" / "litepose"
OUTPUTS = (
    OutputSpec(name="heatmaps_tags", role="heatmaps_tags", stride=4, channels_per_joint=2),
    OutputSpec(name="heatmaps", role="heatmaps", stride=2, channels_per_joint=1),
)


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU6; Sequential indices 0/1/2 match the official keys."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvBottleneck(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand, kxk depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, expansion: int) -> None:
        super().__init__()
        hidden = make_divisible(round(cin * expansion))
        self.inv = conv_bn_act(cin, hidden, 1)
        self.depth_conv = conv_bn_act(hidden, hidden, kernel, stride, groups=hidden)
        self.point_conv = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.point_conv(self.depth_conv(self.inv(x)))
        return x + y if self.use_residual else y


class SepConv2d(nn.Module):
    """Prediction layer: depthwise 5x5 + BN + ReLU, then a 1x1 conv without bias (keys ``conv.{0,1,3}``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cin, kernel, 1, kernel // 2, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class LitePose(nn.Module):
    """LitePose network built from an arch dict (the released JSON format) and a joint count."""

    def __init__(self, arch: dict, num_joints: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_joints = num_joints
        stem_out = make_divisible(arch["input_channel"])
        self.first = nn.Sequential(
            conv_bn_act(3, 32, 3, 2),
            conv_bn_act(32, 32, 3, 1, groups=32),
            nn.Conv2d(32, stem_out, 1, bias=False),
            nn.BatchNorm2d(stem_out),
        )

        widths = [stem_out]  # widths of [stem, stage0..3]
        stages = []
        for stage_cfg in arch["backbone_setting"]:
            cout = make_divisible(stage_cfg["channel"])
            blocks = []
            for i, (expansion, kernel) in enumerate(stage_cfg["block_setting"]):
                stride = stage_cfg["stride"] if i == 0 else 1
                cin = widths[-1] if i == 0 else cout
                blocks.append(InvBottleneck(cin, cout, stride, kernel, expansion))
            stages.append(nn.Sequential(*blocks))
            widths.append(cout)
        self.stage = nn.ModuleList(stages)

        # Fusion deconv head: each step sums a deconv of the refined path and one of a backbone skip.
        deconv = arch["deconv_setting"]
        refined_in = [widths[-1], deconv[0], deconv[1]]
        raw_in = [widths[-2], widths[-3], widths[-4]]  # stage2, stage1, stage0

        def up(cin: int, cout: int) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(cin, cout, 4, 2, 1, output_padding=0, bias=False)

        self.deconv_refined = nn.ModuleList(up(refined_in[i], deconv[i]) for i in range(3))
        self.deconv_raw = nn.ModuleList(up(raw_in[i], deconv[i]) for i in range(3))
        self.deconv_bnrelu = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(d), nn.ReLU(inplace=True)) for d in deconv
        )
        # Head 0 at 1/4: J heatmaps + J tags; head 1 at 1/2: J heatmaps.
        j = num_joints
        self.final_refined = nn.ModuleList([SepConv2d(deconv[1], 2 * j), SepConv2d(deconv[2], j)])
        self.final_raw = nn.ModuleList([SepConv2d(widths[1], 2 * j), SepConv2d(widths[0], j)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_forward_input(getattr(self, "spec", None), x)
        features = [self.first(x)]
        for stage in self.stage:
            features.append(stage(features[-1]))
        refined, raw = features[-1], features[-2]
        outputs = []
        for i in range(3):
            refined = self.deconv_bnrelu[i](self.deconv_refined[i](refined) + self.deconv_raw[i](raw))
            raw = features[-i - 3]
            if i >= 1:
                outputs.append(self.final_refined[i - 1](refined) + self.final_raw[i - 1](raw))
        return outputs[0], outputs[1]


@cache
def load_arch(config: str) -> dict:
    """Read one of the released arch JSONs shipped in ``configs/litepose/``."""
    return json.loads((CONFIG_DIR / f"{config}.json").read_text())


FAMILY = Family(
    name="litepose",
    kind="bottom-up",
    paper="LitePose (CVPR 2022)",
    datasets=("crowdpose", "coco"),
    size_multiple=16,
    outputs=OUTPUTS,
    mac_convention="ptflops-0.6",
)


def build(spec: ModelSpec, config: str, num_joints: int) -> LitePose:
    """The LitePose network of released config ``config`` with a ``num_joints`` head."""
    return LitePose(load_arch(config), num_joints)


def _variant(config: str, description: str) -> Variant:
    """A released config: its input size is the config's own ``img_size``."""
    size = load_arch(config)["img_size"]
    return Variant((size, size), f"{description} (mobile_configs/{config}.json)", config)


VARIANTS = {
    "litepose-xs": _variant("search-XS", "LitePose-Auto-XS"),
    "litepose-s": _variant("search-S", "LitePose-Auto-S"),
    "litepose-m": _variant("search-M", "LitePose-Auto-M"),
    "litepose-l": _variant("search-L", "LitePose-Auto-L"),
}
SPECS = register_family(FAMILY, VARIANTS, build)
