"""HigherHRNet (Cheng et al., CVPR 2020): the bottom-up HRNet baseline of the LitePose latency table.

The architecture is the official ``pose_higher_hrnet`` config (HRNet/HigherHRNet-Human-Pose-Estimation,
also shipped in mit-han-lab/litepose): an HRNet-W backbone (stem of two stride-2 3x3 convs and four
bottlenecks, then stages of 1/4/3 exchange modules with 2/3/4 branches of 4 basic blocks, widths
W, 2W, 4W, 8W) and the higher-resolution head with ``NUM_DECONVS: 1``, ``CAT_OUTPUT: [True]``,
``NUM_BASIC_BLOCKS: 4``, deconv width W and one tag per joint. Module names match the official
code, so its checkpoints should load with ``strict=True`` (not tried: none is stored here).

``higherhrnet-w24`` and ``higherhrnet-w16`` (the LitePose slides' W16 baseline) have no public
configuration: edgepose defines them as the same network with base width 24 / 16 and a 26-plane stem
(``STEM_INPLANES``), fitted to the LitePose paper's MAC figures (see docs/baselines.md).

Outputs for an H x W input: ``heatmaps_tags`` (N, 2J, H/4, W/4) and ``heatmaps`` (N, J, H/2, W/2).
"""

from __future__ import annotations

import torch
from torch import nn

from edgepose.models.hrnet_blocks import (
    BOTTOM_UP_OUTPUTS,
    Bottleneck,
    conv_bn,
    higher_head_forward,
    make_higher_head,
    make_layer,
    make_stage,
)
from edgepose.models.registry import Family, ModelSpec, Variant, check_forward_input, register_family

# (modules, blocks per branch) of stages 2, 3, 4 in every official HigherHRNet config.
STAGES = ((1, 4), (4, 4), (3, 4))
STEM_PLANES = 64  # official STEM_INPLANES: layer1 = 4 bottlenecks of 64 planes -> 256 channels
HEAD_BASIC_BLOCKS = 4


def make_transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    """Adapt the previous stage's branches to the next: 3x3 conv where a width changes, None where not,
    and a stride-2 3x3 conv from the lowest-resolution branch for each new branch."""
    layers: list[nn.Module | None] = []
    for i, cout in enumerate(cur):
        if i < len(pre):
            layers.append(conv_bn(pre[i], cout, 3) if pre[i] != cout else None)
        else:
            steps = []
            for k in range(i + 1 - len(pre)):
                out = cout if k == i - len(pre) else pre[-1]
                steps.append(conv_bn(pre[-1], out, 3, 2))
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HigherHRNet(nn.Module):
    """HigherHRNet-W``width`` with a ``num_joints`` head (2J channels at 1/4, J at 1/2).

    ``stem_planes`` is the official ``STEM_INPLANES`` (64 in every public config).
    """

    def __init__(self, width: int, num_joints: int, stem_planes: int = STEM_PLANES) -> None:
        super().__init__()
        self.width = width
        self.num_joints = num_joints
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, 64, stem_planes, 4)

        pre = [stem_planes * Bottleneck.expansion]
        for s, (modules, blocks) in enumerate(STAGES, start=2):
            channels = [width * 2**b for b in range(s)]
            setattr(self, f"transition{s - 1}", make_transition(pre, channels))
            setattr(self, f"stage{s}", make_stage(modules, [blocks] * s, channels, multi_scale_output=s < 4))
            pre = channels
        self.final_layers, self.deconv_layers = make_higher_head(width, width, HEAD_BASIC_BLOCKS, num_joints)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_forward_input(getattr(self, "spec", None), x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for transition, stage in (
            (self.transition1, self.stage2),
            (self.transition2, self.stage3),
            (self.transition3, self.stage4),
        ):
            # A new branch grows from the lowest-resolution output of the previous stage.
            xs = []
            for i, t in enumerate(transition):
                src = ys[min(i, len(ys) - 1)]
                xs.append(src if t is None else t(src))
            ys = stage(xs)
        return higher_head_forward(self.final_layers, self.deconv_layers, ys[0])


FAMILY = Family(
    name="higherhrnet",
    kind="bottom-up",
    paper="HigherHRNet (CVPR 2020)",
    datasets=("crowdpose", "coco"),
    size_multiple=32,  # four branches down to 1/32, fused back up by exact x2^k upsampling
    outputs=BOTTOM_UP_OUTPUTS,
    mac_convention="ptflops-0.6",
)


def build(spec: ModelSpec, config: tuple[int, int], num_joints: int) -> HigherHRNet:
    """HigherHRNet of ``config`` = (base width, STEM_INPLANES) with a ``num_joints`` head."""
    width, stem_planes = config
    return HigherHRNet(width, num_joints, stem_planes)


VARIANTS = {
    "higherhrnet-w32": Variant((512, 512), "HigherHRNet-W32 (official w32_512 config)", (32, 64)),
    "higherhrnet-w48": Variant((640, 640), "HigherHRNet-W48 (official w48_640 config)", (48, 64)),
    # No public config: STEM_INPLANES 26 is fitted so that this family reproduces both published
    # figures, W24 25.3 G (LitePose README) and W16 12.50 G (LitePose slides); docs/baselines.md.
    "higherhrnet-w24": Variant(
        (512, 512), "HigherHRNet-W24: edgepose's fitted definition (width 24, stem 26)", (24, 26)
    ),
    "higherhrnet-w16": Variant(
        (512, 512), "HigherHRNet-W16: edgepose's fitted definition (width 16, stem 26)", (16, 26)
    ),
}
SPECS = register_family(FAMILY, VARIANTS, build)
