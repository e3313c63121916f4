"""Lite-HRNet building blocks, named like the official mmcv modules so released checkpoints load strictly.

Every attribute name and nesting here (``ConvModule.conv`` / ``.bn``, ``nn.Sequential`` indices, ``None``
holes in ``nn.ModuleList``) mirrors the official ``HRNet/Lite-HRNet`` code, because the state_dict keys of the
released weights are built from them (see /work/shared/reference/litehrnet.md §1.2-1.4 and §3.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle (mmpose's 5-D reshape -> transpose -> reshape); swap it here, in one place."""
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(n, c, h, w)


class ConvModule(nn.Module):
    """mmcv ``ConvModule``: conv -> ``bn`` -> ``activate``; the conv has a bias only when there is no norm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        norm: bool = True,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=not norm
        )
        if norm:
            self.bn = nn.BatchNorm2d(out_channels)
        if act is not None:
            self.activate = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        if hasattr(self, "activate"):
            x = self.activate(x)
        return x


def depthwise(channels: int, stride: int = 1, act: type[nn.Module] | None = None) -> ConvModule:
    """A 3x3 depthwise ConvModule (BN, no activation unless asked)."""
    return ConvModule(channels, channels, 3, stride, 1, groups=channels, act=act)


class DepthwiseSeparableConvModule(nn.Module):
    """mmcv ``DepthwiseSeparableConvModule`` as Lite-HRNet uses it: dw3x3 + BN, then 1x1 + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise_conv = depthwise(in_channels)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


def dw_pw_sequential(c_in: int, c_out: int, stride: int, relu: bool, inplace: bool = False) -> nn.Sequential:
    """Plain Sequential dw3x3 + BN + 1x1 + BN (+ ReLU): keys ``.0 .1 .2 .3`` as in transitions and fuse layers."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=inplace))
    return nn.Sequential(*layers)


class Stem(nn.Module):
    """3x3 s2 conv, then a ShuffleNet-v2 style stride-2 unit: 3 -> out_channels at 1/4 resolution."""

    def __init__(self, in_channels: int, stem_channels: int, out_channels: int, expand_ratio: float) -> None:
        super().__init__()
        mid = int(round(stem_channels * expand_ratio))
        half = stem_channels // 2
        same = stem_channels == out_channels
        inc = out_channels - (half if same else stem_channels)
        self.out_channels = out_channels
        self.conv1 = ConvModule(in_channels, stem_channels, 3, 2, 1)
        self.branch1 = nn.Sequential(depthwise(half, 2), ConvModule(half, inc, 1))
        self.expand_conv = ConvModule(half, mid, 1)
        self.depthwise_conv = depthwise(mid, 2)
        self.linear_conv = ConvModule(mid, half if same else stem_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x1, x2 = x.chunk(2, dim=1)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return channel_shuffle(torch.cat((self.branch1(x1), x2), dim=1), 2)


class CrossResolutionWeighting(nn.Module):
    """H: channel weights computed from all branches pooled to the smallest one, then broadcast back.

    The official code uses ``adaptive_avg_pool2d`` / ``interpolate(size=...)``; with H, W multiples of 32
    branch i is exactly 2^(n-1-i) times the last branch, so fixed-kernel average pooling and fixed-scale
    nearest upsampling give identical values and export with a dynamic batch.
    """

    def __init__(self, channels: Sequence[int], ratio: int) -> None:
        super().__init__()
        self.channels = list(channels)
        total = sum(self.channels)
        self.conv1 = ConvModule(total, int(total / ratio), 1)
        self.conv2 = ConvModule(int(total / ratio), total, 1, act=nn.Sigmoid)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(x)
        pooled = [F.avg_pool2d(s, 2 ** (n - 1 - i)) for i, s in enumerate(x[:-1])] + [x[-1]]
        weights = self.conv2(self.conv1(torch.cat(pooled, dim=1)))
        out = []
        for i, (s, a) in enumerate(zip(x, torch.split(weights, self.channels, dim=1))):
            scale = 2 ** (n - 1 - i)
            out.append(s * (F.interpolate(a, scale_factor=scale, mode="nearest") if scale > 1 else a))
        return out


class SpatialWeighting(nn.Module):
    """F: squeeze-and-excitation per branch (ratio fixed at 4, biased convs, no BN)."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        # A module, not F.adaptive_avg_pool2d: torchstat (the paper's FLOP counter) counts it.
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, int(channels / ratio), 1, norm=False)
        self.conv2 = ConvModule(int(channels / ratio), channels, 1, norm=False, act=nn.Sigmoid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(self.global_avgpool(x)))


class ConditionalChannelWeighting(nn.Module):
    """The Lite-HRNet block: split each branch, weight one half (H, dw3x3, F), concat, shuffle."""

    def __init__(self, in_channels: Sequence[int], reduce_ratio: int) -> None:
        super().__init__()
        half = [c // 2 for c in in_channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(half, reduce_ratio)
        self.depthwise_convs = nn.ModuleList([depthwise(c) for c in half])
        self.spatial_weighting = nn.ModuleList([SpatialWeighting(c) for c in half])

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        parts = [s.chunk(2, dim=1) for s in x]
        x2 = self.cross_resolution_weighting([p[1] for p in parts])
        x2 = [sw(dw(s)) for s, dw, sw in zip(x2, self.depthwise_convs, self.spatial_weighting)]
        return [channel_shuffle(torch.cat((p[0], s), dim=1), 2) for p, s in zip(parts, x2)]


class ShuffleUnit(nn.Module):
    """Naive Lite-HRNet block: a stride-1 ShuffleNet-v2 unit (1x1, dw3x3, 1x1 on half the channels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels // 2
        self.branch2 = nn.Sequential(ConvModule(c, c, 1), depthwise(c), ConvModule(c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1), 2)


class LiteHRModule(nn.Module):
    """One high-resolution module: per-branch blocks, then the (quirky) multi-resolution fuse."""

    def __init__(
        self, in_channels: Sequence[int], num_blocks: int, module_type: str, reduce_ratio: int
    ) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.module_type = module_type
        if module_type == "LITE":
            self.layers = nn.Sequential(
                *[ConditionalChannelWeighting(self.in_channels, reduce_ratio) for _ in range(num_blocks)]
            )
        elif module_type == "NAIVE":
            self.layers = nn.ModuleList(
                [nn.Sequential(*[ShuffleUnit(c) for _ in range(num_blocks)]) for c in self.in_channels]
            )
        else:
            raise ValueError(f"unknown Lite-HRNet module type {module_type!r}")
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU()  # one shared module, as in the original (torchstat counts it once)

    def _make_fuse_layers(self) -> nn.ModuleList:
        ch = self.in_channels
        fuse_layers = []
        for i in range(len(ch)):
            row: list[nn.Module | None] = []
            for j in range(len(ch)):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(ch[j], ch[i], 1, bias=False),
                            nn.BatchNorm2d(ch[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    steps = [
                        dw_pw_sequential(ch[j], ch[j], 2, relu=True, inplace=True) for _ in range(i - j - 1)
                    ]
                    steps.append(dw_pw_sequential(ch[j], ch[i], 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        return nn.ModuleList(fuse_layers)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.module_type == "LITE":
            x = self.layers(x)
        else:
            x = [branch(s) for branch, s in zip(self.layers, x)]
        return self.fuse(x)

    def fuse(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """The released weights' fuse, without the original's in-place aliasing.

        The original accumulates in place into ``out[0]``, so branch 0 counts twice and every other branch
        sees F_i0 of the already-fused z0, twice. Exactly: z0 = 2*x0 + sum_{j>=1} F_0j(x_j), out0 = ReLU(z0);
        y_i = 2*F_i0(z0) + x_i + sum_{j>=1, j!=i} F_ij(x_j), out_i = ReLU(y_i). F_i0(z0) is computed once.
        """
        rows = self.fuse_layers
        z0 = 2 * x[0]
        for j in range(1, len(x)):
            z0 = z0 + rows[0][j](x[j])
        out = [self.relu(z0)]
        for i in range(1, len(rows)):
            y = 2 * rows[i][0](z0)
            for j in range(1, len(x)):
                y = y + (x[j] if j == i else rows[i][j](x[j]))
            out.append(self.relu(y))
        return out


class IterativeHead(nn.Module):
    """Top-down aggregation from the lowest resolution: y = proj_k(x_k + resize(y)); returns branch 0."""

    def __init__(self, in_channels: Sequence[int]) -> None:
        super().__init__()
        rev = list(in_channels)[::-1]
        outs = rev[1:] + rev[-1:]
        self.projects = nn.ModuleList([DepthwiseSeparableConvModule(a, b) for a, b in zip(rev, outs)])

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        y = None
        for project, s in zip(self.projects, x[::-1]):
            if y is not None:
                # Resize to the higher-resolution branch's own size (what the original does); under ONNX
                # tracing the size follows the input, so a dynamic batch exports and a fixed input folds.
                s = s + F.interpolate(y, size=s.shape[-2:], mode="bilinear", align_corners=True)
            y = project(s)
        return y
