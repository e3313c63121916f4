"""Lite-HRNet (CVPR 2021) top-down pose networks: Lite-HRNet-18/30 and the naive ShuffleNet variants.

The stage tables are data (``ARCHS``); the blocks live in ``litehrnet_blocks.py``. Module names mirror the
official mmcv/mmpose state_dict (``backbone.…``, ``keypoint_head.final_layer.…``) so released checkpoints
load with ``strict=True``; mmpose-1.x files are mapped by :meth:`LiteHRNetPose.remap_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgepose.models.litehrnet_blocks import (
    CrossResolutionWeighting,
    IterativeHead,
    LiteHRModule,
    SpatialWeighting,
    Stem,
    dw_pw_sequential,
)
from edgepose.models.registry import (
    Family,
    ModelSpec,
    OutputSpec,
    Variant,
    check_forward_input,
    register_family,
)

# Official configs (configs/top_down/{lite_hrnet,naive_litehrnet}/...). All: stem (32, 32, expand 1),
# 2 blocks per module, 2/3/4 branches, fuse and IterativeHead on.
_LITE_CHANNELS = ((40, 80), (40, 80, 160), (40, 80, 160, 320))
ARCHS: dict[str, dict] = {
    "litehrnet-18": {"num_modules": (2, 4, 2), "module_type": "LITE", "num_channels": _LITE_CHANNELS},
    "litehrnet-30": {"num_modules": (3, 8, 3), "module_type": "LITE", "num_channels": _LITE_CHANNELS},
    "litehrnet-naive-18": {
        "num_modules": (2, 4, 2),
        "module_type": "NAIVE",
        "num_channels": ((30, 60), (30, 60, 120), (30, 60, 120, 240)),
    },
    "litehrnet-wider-naive-18": {
        "num_modules": (2, 4, 2),
        "module_type": "NAIVE",
        "num_channels": _LITE_CHANNELS,
    },
}
STEM = {"stem_channels": 32, "out_channels": 32, "expand_ratio": 1.0}
NUM_BLOCKS = 2
REDUCE_RATIO = 8


class LiteHRNet(nn.Module):
    """The backbone: stem, three transition+stage pairs, IterativeHead; returns branch 0 (stride 4)."""

    def __init__(
        self, num_modules: Sequence[int], module_type: str, num_channels: Sequence[Sequence[int]]
    ) -> None:
        super().__init__()
        self.stem = Stem(3, **STEM)
        prev = [self.stem.out_channels]
        self.num_stages = len(num_modules)
        for s, (modules, channels) in enumerate(zip(num_modules, num_channels)):
            setattr(self, f"transition{s}", _make_transition(prev, list(channels)))
            stage = [LiteHRModule(channels, NUM_BLOCKS, module_type, REDUCE_RATIO) for _ in range(modules)]
            setattr(self, f"stage{s}", nn.Sequential(*stage))
            prev = list(channels)
        self.head_layer = IterativeHead(prev)
        self.out_channels = prev[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.stem(x)]
        for s in range(self.num_stages):
            transition = getattr(self, f"transition{s}")
            inputs = []
            for j, t in enumerate(transition):
                # A new branch grows from the last existing (lowest-resolution) one.
                src = branches[j] if j < len(branches) else branches[-1]
                inputs.append(src if t is None else t(src))
            branches = getattr(self, f"stage{s}")(inputs)
        return self.head_layer(branches)


def _make_transition(prev: list[int], cur: list[int]) -> nn.ModuleList:
    """Official transition: re-width changed branches (dw s1), grow new ones from the last (dw s2 steps)."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(prev):
            layers.append(None if c == prev[i] else dw_pw_sequential(prev[i], c, 1, relu=True))
        else:
            n_steps = i + 1 - len(prev)
            steps = [
                dw_pw_sequential(prev[-1], c if k == n_steps - 1 else prev[-1], 2, relu=True)
                for k in range(n_steps)
            ]
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class TopdownHeatmapHead(nn.Module):
    """mmpose ``TopdownHeatmapSimpleHead`` with no deconvs: one biased 1x1 conv to K heatmaps."""

    def __init__(self, in_channels: int, num_joints: int) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)


class LiteHRNetPose(nn.Module):
    """Backbone + keypoint head: (N, 3, H, W) -> heatmaps (N, K, H/4, W/4); H, W multiples of 32.

    ``input_size`` is the (H, W) the random init calibrates its BN statistics at.
    """

    def __init__(self, arch: dict, num_joints: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.backbone = LiteHRNet(**arch)
        self.keypoint_head = TopdownHeatmapHead(self.backbone.out_channels, num_joints)
        init_weights(self, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_forward_input(getattr(self, "spec", None), x)
        return self.keypoint_head(self.backbone(x))

    def remap_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """mmpose-1.x layout -> ours: ``head.`` becomes ``keypoint_head.``, ``data_preprocessor.*`` is dropped."""
        out = {}
        for key, value in state_dict.items():
            if key.startswith("data_preprocessor."):
                continue
            if key.startswith("head."):
                key = "keypoint_head." + key[len("head.") :]
            out[key] = value
        return out


# Untrained attention gates start near-neutral (sigmoid ~0.5): the SE logits' conv and the
# cross-resolution logits' BN get these gains. Measured on the astronaut photo: gate logits have RMS
# ~0.15 (max 0.4), and Lite-HRNet-18 is then 116 dB from float64 instead of 80 dB, 30 dB instead of
# 8 dB under 1e-2 input noise, with heatmaps ~20 instead of ~250 (docs/tflite.md).
SE_LOGIT_GAIN = 0.1
CROSS_RESOLUTION_LOGIT_GAIN = 0.03
CALIBRATION_IMAGES = 4


def init_weights(model: nn.Module, input_size: tuple[int, int]) -> None:
    """Random init with O(1) outputs that is as well-conditioned as an untrained Lite-HRNet can be.

    Kaiming-normal convs; the two sigmoid gates of every block start near-neutral (their logit layers
    scaled down: ``SE_LOGIT_GAIN``, ``CROSS_RESOLUTION_LOGIT_GAIN``); then every BN's statistics are
    calibrated on a batch of noise images. The official init (conv std 0.001) makes untrained heatmaps
    ~1e-10 and plain Kaiming ~1e6 (the fuse sums grow every module): either would let cross-runtime
    parity tests pass or fail for the wrong reason. Full-strength random gates are the other trap:
    a gate on a random logit of scale ~3-10 flips with tiny input changes, so the network amplifies
    rounding noise by 30+ dB and fp32, fp16 and int8 parity would measure chaos, not the converter.
    Calibrated BN keeps activations O(1) and gives non-trivial running stats, so BN folding is
    exercised too. The noise images are ``input_size`` (H, W). Uses torch's global RNG (seed it for
    reproducible models); checkpoints overwrite all.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if next(model.parameters()).is_meta:  # shape-only model (MAC counting): nothing to calibrate
        return
    for bn in norms:
        bn.reset_parameters()
        bn.momentum = None  # cumulative average: running stats become this one batch's stats
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SpatialWeighting):
                m.conv2.conv.weight.mul_(SE_LOGIT_GAIN)
            elif isinstance(m, CrossResolutionWeighting):
                m.conv2.bn.weight.fill_(CROSS_RESOLUTION_LOGIT_GAIN)
    model.train()
    with torch.no_grad():
        model(torch.randn(CALIBRATION_IMAGES, 3, *input_size))
    for bn in norms:
        bn.momentum = 0.1
        bn.num_batches_tracked.zero_()
    model.eval()


FAMILY = Family(
    name="litehrnet",
    kind="top-down",
    paper="Lite-HRNet (CVPR 2021)",
    datasets=("coco", "mpii"),  # MPII models use 256x256 inputs
    size_multiple=32,
    outputs=(OutputSpec(name="heatmaps", role="heatmaps", stride=4, channels_per_joint=1),),
    mac_convention="torchstat",
)


def build(spec: ModelSpec, arch: dict, num_joints: int) -> LiteHRNetPose:
    """Lite-HRNet of stage table ``arch`` with a ``num_joints``-heatmap head."""
    return LiteHRNetPose(arch, num_joints, spec.input_size)


_PAPER_SIZES = ((384, 288),)
VARIANTS = {
    "litehrnet-18": Variant(
        (256, 192), "Lite-HRNet-18 (conditional channel weighting)", ARCHS["litehrnet-18"], _PAPER_SIZES
    ),
    "litehrnet-30": Variant(
        (256, 192), "Lite-HRNet-30 (conditional channel weighting)", ARCHS["litehrnet-30"], _PAPER_SIZES
    ),
    "litehrnet-naive-18": Variant(
        (256, 192), "Naive Lite-HRNet-18 (shuffle blocks)", ARCHS["litehrnet-naive-18"]
    ),
    "litehrnet-wider-naive-18": Variant(
        (256, 192),
        "Wider Naive Lite-HRNet-18 (shuffle blocks, Lite-18 widths)",
        ARCHS["litehrnet-wider-naive-18"],
    ),
}
SPECS = register_family(FAMILY, VARIANTS, build)
