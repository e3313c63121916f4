"""The papers' own MAC conventions, as per-module rules, so edgepose can print the numbers the papers print.

* ``ptflops-0.6``: LitePose (and the baselines it compares with) counted with ptflops <= 0.7.4 module hooks:
  every call of a conv, BN, activation, pooling, upsample or linear module adds to the total, and a
  ConvTranspose is priced at its *output* size (4x for stride 2), see litepose.md §5.1.
* ``torchstat``: Lite-HRNet counted with its repository's torchstat copy: leaf modules only, a module
  called twice is counted once, nn.Upsample ignores channels, printed in units of 2^20 (litehrnet.md §2.2).
* ``torchstat-seg-fit``: the Lite-HRNet paper's segmentation GFLOPs. Its rules are torchstat's, and the
  total is multiplied by one **fitted** factor (``SEGMENTATION_FIT``): no counting rules reproduce both
  printed figures (docs/segmentation.md), this factor does.

A rule gets ``(module, input, output)`` (first input tensor, first output tensor) and returns the module's
count, or ``None`` when the convention does not count that module type. Only shapes are used, so the rules
work on meta tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from edgepose.errors import EdgeposeError

Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor], int | None]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
)


def _numel(shape: torch.Size) -> int:
    return math.prod(int(s) for s in shape)


def _conv_per_output_position(m: nn.Module) -> int:
    """Multiply-adds of one output position of a conv: k_h*k_w*C_in*(C_out/groups)."""
    return math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)


def ptflops_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int | None:
    """ptflops 0.6.x module hooks (``pytorch_ops.py``), batch 1."""
    if isinstance(m, _CONVS):
        # Conv AND ConvTranspose are priced per OUTPUT position: the pre-0.7.5 deconv over-count.
        positions = y.shape[0] * _numel(y.shape[2:])
        bias = m.out_channels * positions if m.bias is not None else 0
        return _conv_per_output_position(m) * positions + bias
    if isinstance(m, (*_ACTIVATIONS, nn.GELU)):
        return y.numel()
    if isinstance(m, _POOLS):
        return x.numel()
    if isinstance(m, _NORMS):
        return x.numel() * (2 if m.affine else 1)
    if isinstance(m, nn.Linear):
        return x.numel() * m.out_features + (m.out_features if m.bias is not None else 0)
    if isinstance(m, nn.Upsample):
        return _numel(y[0].shape)  # ptflops reads output[0]: one sample's C*H*W
    return None


def _adaptive_pool_torchstat(x: torch.Tensor, y: torch.Tensor) -> int:
    """torchstat's adaptive-pool price: sum over output cells of B*C*(rows+1)*(cols+1) of its window."""
    b, c, h, w = (int(s) for s in x.shape)
    oh, ow = int(y.shape[2]), int(y.shape[3])

    def extents(size: int, out: int) -> list[int]:
        return [math.ceil((i + 1) * size / out) - math.floor(i * size / out) + 1 for i in range(out)]

    return b * c * sum(extents(h, oh)) * sum(extents(w, ow))


def torchstat_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int | None:
    """Lite-HRNet's torchstat copy (``tools/torchstat/compute_flops.py``), leaf modules."""
    if isinstance(m, nn.Conv2d):
        positions = x.shape[0] * _numel(y.shape[2:])
        per_position = m.kernel_size[0] * m.kernel_size[1] * x.shape[1] * (m.out_channels // m.groups)
        bias = m.out_channels * positions if m.bias is not None else 0
        return per_position * positions + bias
    if isinstance(m, nn.ConvTranspose2d):
        # torchstat prices a deconv at its input size (the correct MAC count), bias at the output size.
        macs = _conv_per_output_position(m) * x.shape[0] * _numel(x.shape[2:])
        return macs + (m.out_channels * x.shape[0] * _numel(y.shape[2:]) if m.bias is not None else 0)
    if isinstance(m, nn.BatchNorm2d):
        return x.numel() * (2 if m.affine else 1)
    if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
        return x.shape[0] * x.shape[1] * _numel(y.shape[2:]) * k[0] * k[1]
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive_pool_torchstat(x, y)
    if isinstance(m, _ACTIVATIONS):
        return x.numel()
    if isinstance(m, nn.Upsample):
        return x.shape[0] * _numel(y[0].shape[1:])  # B*H*W: torchstat drops the channels
    if isinstance(m, nn.Linear):
        return x.shape[0] * x.shape[1] * y.shape[1]
    return None


@dataclass(frozen=True)
class Convention:
    """How one paper counted: the per-module rule, how calls combine, and how the total is printed."""

    name: str  # "ptflops-0.6" | "torchstat"
    rule: Rule
    every_call: bool  # True: every call adds; False: the last call of a module overwrites (torchstat)
    leaf_only: bool  # torchstat hooks leaf modules only
    rules_label: str  # what the display says about the rules
    source: str  # whose numbers these are
    noun: str  # what the paper calls the figure
    base: int  # 1000 (decimal units) or 1024 (binary units)
    decimals: int  # the precision the paper prints (to our reference figures)
    # A fitted factor on every module's count; 1.0 where the rules alone reproduce the paper.
    factor: float = 1.0
    fit_note: str = ""  # where a factor is fitted: to what, and where it is explained

    @property
    def note(self) -> str:
        """What the figure is, in a few words: 'ptflops<=0.7.4 rules, LitePose paper'."""
        units = ", binary units" if self.base == 1024 else ""
        fit = f", x{self.factor} fitted" if self.fitted else ""
        return f"{self.rules_label}{units}{fit}, {self.source}"

    @property
    def fitted(self) -> bool:
        """True when the figure carries a fitted factor (not the paper's rules alone)."""
        return self.factor != 1.0

    def _power(self, raw: int) -> int:
        # The unit is chosen by magnitude, as both tools do (value // base**k > 0).
        return next((p for p in (4, 3, 2, 1) if raw // self.base**p > 0), 0)

    def scale(self, raw: int) -> tuple[float, str]:
        """The figure as the paper prints it: (1.202, "G") or (205.23, "M (binary)")."""
        power = self._power(raw)
        prefix = ("", "K", "M", "G", "T")[power]
        unit = prefix if self.base == 1000 or not prefix else f"{prefix} (binary)"
        return round(raw / self.base**power, self.decimals), unit

    def units(self, raw: int) -> str:
        """How the paper names the figure's unit at this magnitude: 'G MACs', 'M FLOPs'."""
        return ("", "K ", "M ", "G ", "T ")[self._power(raw)] + self.noun

    def display(self, raw: int, with_factor: bool = True) -> str:
        """E.g. '1.202 G MACs (ptflops<=0.7.4 rules, LitePose paper)', '205.23 M FLOPs (torchstat rules, /2^20, ...)'.

        ``raw`` is the count as the convention makes it; ``with_factor=False`` labels a count made by the
        rules alone (no fitted factor).
        """
        power = self._power(raw)
        value = round(raw / self.base**power, self.decimals)
        divisor = f", /2^{10 * power}" if self.base == 1024 and power else ""
        fit = f", x{self.factor} fitted" if self.fitted and with_factor else ""
        source = self.source if with_factor or not self.fitted else "no fitted factor"
        return f"{value:.{self.decimals}f} {self.units(raw)} ({self.rules_label}{divisor}{fit}, {source})"


# The factor between the torchstat-rule count of litehrnet-{18,30}-seg at 512x1024 (2.1386 / 3.3245 G,
# /2^30) and the paper's printed 1.95 / 3.02 GFLOPs. Fitted, not derived: any value in [0.90947, 0.90990)
# rounds both to the printed figures; 0.9097 is near its middle. docs/segmentation.md.
SEGMENTATION_FIT = 0.9097

CONVENTIONS: dict[str, Convention] = {
    "ptflops-0.6": Convention(
        name="ptflops-0.6",
        rule=ptflops_rule,
        every_call=True,
        leaf_only=False,
        rules_label="ptflops<=0.7.4 rules",
        source="LitePose paper",
        noun="MACs",
        base=1000,
        decimals=3,
    ),
    "torchstat": Convention(
        name="torchstat",
        rule=torchstat_rule,
        every_call=False,
        leaf_only=True,
        rules_label="torchstat rules",
        source="Lite-HRNet paper",
        noun="FLOPs",
        base=1024,
        decimals=2,
    ),
}
# The segmentation rows: torchstat's rules and units, times the fitted factor.
CONVENTIONS["torchstat-seg-fit"] = replace(
    CONVENTIONS["torchstat"],
    name="torchstat-seg-fit",
    source="Lite-HRNet paper, Cityscapes",
    factor=SEGMENTATION_FIT,
    fit_note="fitted to the paper's two printed Cityscapes figures, not derived (docs/segmentation.md)",
)


def get_convention(name: str) -> Convention:
    """The convention called ``name``; an unknown name is an error listing the known ones."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise EdgeposeError(f"unknown MAC convention {name!r}; known: {', '.join(CONVENTIONS)}") from None
