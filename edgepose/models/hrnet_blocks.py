"""HRNet building blocks shared by the bottom-up baselines (HigherHRNet and EfficientHRNet).

Both baselines (as defined in the HigherHRNet code base that mit-han-lab/litepose ships) use the
same parallel multi-resolution modules and the same "higher-resolution" head: a 1x1 prediction at
1/4, then one deconvolution over [features, 1/4 predictions] followed by basic blocks and a 1x1
prediction at 1/2. Module names follow the official code (``branches``, ``fuse_layers``,
``final_layers``, ``deconv_layers``, ...) so its state_dicts map onto ours key for key.

Only ``nn`` modules are used for counted ops (``nn.Upsample``, ``nn.ReLU``, ...): the LitePose
paper's MAC counter (ptflops <= 0.7.4) hooks modules, not functional calls.
"""

from __future__ import annotations

import torch
from torch import nn

from edgepose.models.registry import OutputSpec

# Both baselines are compared in the LitePose table, so they expose LitePose's two outputs.
BOTTOM_UP_OUTPUTS = (
    OutputSpec(name="heatmaps_tags", role="heatmaps_tags", stride=4, channels_per_joint=2),
    OutputSpec(name="heatmaps", role="heatmaps", stride=2, channels_per_joint=1),
)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (the HRNet default)."""
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True, bias: bool = False
) -> nn.Sequential:
    """Conv + BN (+ ReLU) as one Sequential, indices 0/1/2 as in the official code."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a residual (projected by ``downsample`` if given)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3, 1x1 x4) used by the HRNet stem's ``layer1``."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def make_layer(block: type[nn.Module], cin: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` residual blocks; the first projects the input with a 1x1 conv + BN when needed."""
    cout = planes * block.expansion
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    layers = [block(cin, planes, stride, downsample)]
    layers += [block(cout, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """One HRNet exchange unit: residual blocks per branch, then every output sums all branches.

    Higher-resolution inputs reach a lower resolution through chains of stride-2 3x3 convs; lower
    ones reach a higher resolution through a 1x1 conv + BN + nearest ``nn.Upsample``. With
    ``multi_scale_output=False`` only the highest-resolution output is produced.
    """

    def __init__(self, num_blocks: list[int], channels: list[int], multi_scale_output: bool = True) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            make_layer(BasicBlock, channels[i], channels[i], num_blocks[i]) for i in range(n)
        )
        self.fuse_layers = None
        if n > 1:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(self._fuse(channels, src, dst) for src in range(n))
                for dst in range(n if multi_scale_output else 1)
            )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse(channels: list[int], src: int, dst: int) -> nn.Module | None:
        if src == dst:
            return None
        if src > dst:  # lower resolution -> upsample
            return nn.Sequential(
                nn.Conv2d(channels[src], channels[dst], 1, bias=False),
                nn.BatchNorm2d(channels[dst]),
                nn.Upsample(scale_factor=2 ** (src - dst), mode="nearest"),
            )
        steps = []  # higher resolution -> (dst - src) stride-2 convs; ReLU on all but the last
        for k in range(dst - src):
            last = k == dst - src - 1
            cout = channels[dst] if last else channels[src]
            steps.append(conv_bn(channels[src], cout, 3, 2, relu=not last))
        return nn.Sequential(*steps)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        outs = []
        for dst, fuse in enumerate(self.fuse_layers):
            y = xs[0] if dst == 0 else fuse[0](xs[0])
            for src in range(1, len(xs)):
                y = y + (xs[src] if src == dst else fuse[src](xs[src]))
            outs.append(self.relu(y))
        return outs


def make_stage(
    num_modules: int, num_blocks: list[int], channels: list[int], multi_scale_output: bool = True
) -> nn.Sequential:
    """``num_modules`` HighResolutionModules in a Sequential; only the last may drop the low-res outputs."""
    return nn.Sequential(
        *(
            HighResolutionModule(num_blocks, channels, multi_scale_output or i < num_modules - 1)
            for i in range(num_modules)
        )
    )


def make_higher_head(
    cin: int, deconv_channels: int, num_basic_blocks: int, num_joints: int
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The HigherHRNet head: (final_layers, deconv_layers) for one deconv with CAT_OUTPUT and tag per joint.

    final_layers[0]: 1x1 conv (bias) cin -> 2J (heatmaps + AE tags) at 1/4.
    deconv_layers[0]: ConvTranspose k4 s2 p1 over cin + 2J channels, BN, ReLU, then basic blocks.
    final_layers[1]: 1x1 conv (bias) deconv_channels -> J heatmaps at 1/2.
    """
    j = num_joints
    final_layers = nn.ModuleList([nn.Conv2d(cin, 2 * j, 1), nn.Conv2d(deconv_channels, j, 1)])
    deconv = nn.Sequential(
        nn.Sequential(
            nn.ConvTranspose2d(cin + 2 * j, deconv_channels, 4, 2, 1, output_padding=0, bias=False),
            nn.BatchNorm2d(deconv_channels),
            nn.ReLU(inplace=True),
        ),
        # Each basic block sits in its own one-element Sequential in the official code (keys ``.i.0.``).
        *(nn.Sequential(BasicBlock(deconv_channels, deconv_channels)) for _ in range(num_basic_blocks)),
    )
    return final_layers, nn.ModuleList([deconv])


def higher_head_forward(
    final_layers: nn.ModuleList, deconv_layers: nn.ModuleList, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the head on the 1/4 features: (N, 2J, H/4, W/4) and (N, J, H/2, W/2)."""
    low = final_layers[0](x)
    high = final_layers[1](deconv_layers[0](torch.cat((x, low), 1)))
    return low, high
