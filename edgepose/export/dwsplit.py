"""Split every depthwise conv with more taps than XNNPACK's depthwise kernels take into ones that fit.

XNNPACK (TFLite's CPU delegate, on x86 and ARM alike) runs a depthwise conv with its depthwise
micro-kernels only up to ``MAX_TAPS`` = 25 taps (kernel height x width); a larger one, such as
LitePose's 7x7 (49 taps), falls through to the general matrix-multiply path with one channel per
group, 10-30x slower (docs/tflite.md has the measurements and the XNNPACK source references).

The rewrite is exact: a KxK depthwise conv is the sum of depthwise convs over disjoint groups of its
taps, each reading the input at that group's offset. A group ("tile") is a rectangle of taps, possibly
strided (a dilated conv), so every tile is itself a plain depthwise conv of at most ``MAX_TAPS`` taps.
A tile centred on the kernel keeps the original symmetric padding shrunk by its offset and reads the
input directly; any other tile reads a slice of the explicitly padded input. The bias goes to the
first tile only. Layouts (all exact; ``benchmarks/dwsplit_candidates.py`` times them):

- ``columns``: full-height strips as wide as fit, from the left (7x7 -> 7x3 + 7x3 + 7x1);
- ``rows``: the same with full-width strips (7x7 -> 3x7 + 3x7 + 1x7);
- ``centred``: the widest centred full-height strip, then the remaining columns in mirrored pairs
  as dilated two-column convs (7x7 -> 7x3 + 7x2 dilated 4 + 7x2 dilated 6): no tile needs a slice;
- ``ring``: the centred (K-2)x(K-2) block plus the border as two dilated convs
  (7x7 -> 5x5 + 2x7 dilated 6 + 5x2 dilated 6).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgepose.device.formats import TFLiteOptions
from edgepose.errors import EdgeposeError

# The largest depthwise micro-kernel XNNPACK has (the "25p" unipass kernels; fp32, fp16 and int8,
# every architecture): select_microkernel_type() in src/operators/convolution-nhwc.c sends a
# depthwise conv with more taps to the IGEMM path.
MAX_TAPS = 25
LAYOUTS = ("columns", "rows", "centred", "ring")
# The recipes' default (its one home is TFLiteOptions), chosen by measurement (docs/tflite.md,
# benchmarks/results/dwsplit_layouts.md).
DEFAULT_LAYOUT = TFLiteOptions().depthwise_split


@dataclass(frozen=True)
class Tile:
    """Kernel taps ``(row + i * dil_h, col + j * dil_w)`` for ``i < height``, ``j < width``."""

    row: int
    col: int
    height: int
    width: int
    dil_h: int = 1
    dil_w: int = 1

    @property
    def taps(self) -> int:
        return self.height * self.width

    @property
    def extent(self) -> tuple[int, int]:
        """Rows and columns of the kernel the tile spans (first to last tap)."""
        return (self.height - 1) * self.dil_h + 1, (self.width - 1) * self.dil_w + 1

    def label(self) -> str:
        dilation = f" dilated {self.dil_h}x{self.dil_w}" if (self.dil_h, self.dil_w) != (1, 1) else ""
        return f"{self.height}x{self.width}{dilation}"


def _strips(length: int, width: int) -> list[tuple[int, int]]:
    """(start, size) strips of at most ``width`` covering ``range(length)`` from 0."""
    return [(start, min(width, length - start)) for start in range(0, length, width)]


def plan(kernel: tuple[int, int], layout: str = DEFAULT_LAYOUT, max_taps: int = MAX_TAPS) -> list[Tile]:
    """The tiles of a ``kernel`` = (kh, kw) depthwise conv for ``layout``; each has at most ``max_taps`` taps.

    Raises ValueError where the layout cannot split this kernel within ``max_taps``.
    """
    kh, kw = kernel
    if layout == "columns":
        if kh > max_taps:
            raise ValueError(f"a {kh}x{kw} kernel has columns longer than {max_taps} taps")
        return [Tile(0, c, kh, w) for c, w in _strips(kw, max_taps // kh)]
    if layout == "rows":
        if kw > max_taps:
            raise ValueError(f"a {kh}x{kw} kernel has rows longer than {max_taps} taps")
        return [Tile(r, 0, h, kw) for r, h in _strips(kh, max_taps // kw)]
    if layout == "centred":
        return _centred(kh, kw, max_taps)
    if layout == "ring":
        return _ring(kh, kw, max_taps)
    raise ValueError(f"unknown depthwise split layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")


def _centred(kh: int, kw: int, max_taps: int) -> list[Tile]:
    width = max_taps // kh
    if width < 1 or kw % 2 == 0 or 2 * kh > max_taps:
        raise ValueError(f"the centred layout needs an odd width and 2 x {kh} <= {max_taps} taps")
    width = min(kw, width if width % 2 else width - 1)  # odd, so that the strip is centred
    first = (kw - width) // 2
    tiles = [Tile(0, first, kh, width)]
    tiles += [Tile(0, c, kh, 2, 1, kw - 1 - 2 * c) for c in range(first)]
    return tiles


def _ring(kh: int, kw: int, max_taps: int) -> list[Tile]:
    if kh < 3 or kw < 3 or (kh - 2) * (kw - 2) > max_taps or 2 * max(kh, kw) > max_taps:
        raise ValueError(f"the ring layout cannot split a {kh}x{kw} kernel within {max_taps} taps")
    return [
        Tile(1, 1, kh - 2, kw - 2),
        Tile(0, 0, 2, kw, kh - 1, 1),  # first and last row
        Tile(1, 0, kh - 2, 2, 1, kw - 1),  # first and last column between them
    ]


def is_wide_depthwise(conv: nn.Module, max_taps: int = MAX_TAPS) -> bool:
    """A depthwise Conv2d (one input channel per group) with more than ``max_taps`` taps."""
    return (
        type(conv) is nn.Conv2d
        and conv.groups == conv.in_channels
        and conv.groups > 1
        and conv.kernel_size[0] * conv.kernel_size[1] > max_taps
    )


def _why_not(conv: nn.Conv2d) -> str | None:
    """Why this conv cannot be split (None: it can)."""
    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r}"
    if conv.dilation != (1, 1):
        return f"dilation {conv.dilation}"
    if isinstance(conv.padding, str):
        return f"padding {conv.padding!r}"
    return None


class DepthwiseSum(nn.Module):
    """A depthwise conv computed as the sum of depthwise convs over tiles of its taps (exact)."""

    def __init__(self, conv: nn.Conv2d, tiles: list[Tile]) -> None:
        super().__init__()
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride)
        self.padding = tuple(conv.padding)
        self.tiles = list(tiles)
        self.branches = nn.ModuleList()
        weight = conv.weight.detach()
        for i, tile in enumerate(self.tiles):
            rows = slice(tile.row, tile.row + (tile.height - 1) * tile.dil_h + 1, tile.dil_h)
            cols = slice(tile.col, tile.col + (tile.width - 1) * tile.dil_w + 1, tile.dil_w)
            branch = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                (tile.height, tile.width),
                self.stride,
                self._own_padding(tile) or (0, 0),
                dilation=(tile.dil_h, tile.dil_w),
                groups=conv.groups,
                bias=conv.bias is not None and i == 0,
            )
            branch.weight = nn.Parameter(weight[:, :, rows, cols].clone())
            if branch.bias is not None:
                branch.bias = nn.Parameter(conv.bias.detach().clone())
            self.branches.append(branch)
        # True: the tile reads the input itself (its conv pads); False: a slice of the padded input.
        self.direct = [self._own_padding(t) is not None for t in self.tiles]
        self.needs_pad = not all(self.direct)
        # Summation order, fewest taps first: int8 requantises every partial sum, and the smallest
        # intermediate sum has the finest int8 step (measured in docs/tflite.md).
        self.order = sorted(range(len(self.tiles)), key=lambda i: self.tiles[i].taps)

    def _own_padding(self, tile: Tile) -> tuple[int, int] | None:
        """The symmetric padding that makes ``tile`` read the input directly, or None (not centred)."""
        (kh, kw), (eh, ew) = self.kernel_size, tile.extent
        centred = 2 * tile.row + eh == kh and 2 * tile.col + ew == kw
        pad = (self.padding[0] - tile.row, self.padding[1] - tile.col)
        return pad if centred and min(pad) >= 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        out_h = (x.shape[2] + 2 * ph - kh) // sh + 1
        out_w = (x.shape[3] + 2 * pw - kw) // sw + 1
        padded = F.pad(x, (pw, pw, ph, ph)) if self.needs_pad else x
        total = None
        for i in self.order:
            tile, branch, direct = self.tiles[i], self.branches[i], self.direct[i]
            if direct:
                y = branch(x)
            else:
                eh, ew = tile.extent
                rows = slice(tile.row, tile.row + (out_h - 1) * sh + eh)
                cols = slice(tile.col, tile.col + (out_w - 1) * sw + ew)
                y = branch(padded[:, :, rows, cols])
            total = y if total is None else total + y
        return total


@dataclass
class SplitReport:
    """What the rewrite did: layers split (by kernel, with the tiles used) and wide ones left alone."""

    layout: str
    max_taps: int
    rewritten: list[str] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)  # "7x7" -> "7x3 + 7x3 + 7x1"
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why

    def as_dict(self) -> dict:
        return {
            "max_taps": self.max_taps,
            "layout": self.layout,
            "layers": len(self.rewritten),
            "split": dict(sorted(self.splits.items())),
            "skipped": dict(self.skipped),
        }


@torch.no_grad()
def split_depthwise(
    model: nn.Module, layout: str = DEFAULT_LAYOUT, max_taps: int = MAX_TAPS, inplace: bool = False
) -> tuple[nn.Module, SplitReport]:
    """Return ``model`` (a deep copy unless ``inplace``) with every depthwise Conv2d of more than
    ``max_taps`` taps replaced by a :class:`DepthwiseSum` of the same output; everything else untouched.

    Meant for a BN-folded model (``fold.fold_batchnorm`` first: folding looks for plain convs).
    A wide depthwise conv that cannot be split (dilated, non-zero padding mode, string padding) is
    left as it is and listed in ``report.skipped``. ``layout="none"`` changes nothing (the report says so).
    """
    if layout != "none":
        plan((7, 7), layout, max_taps)  # an unknown layout fails before the copy
    model = model if inplace else copy.deepcopy(model)
    report = SplitReport(layout, max_taps)
    if layout == "none":
        return model, report
    for name, conv in [(n, m) for n, m in model.named_modules() if is_wide_depthwise(m, max_taps)]:
        reason = _why_not(conv)
        tiles = None
        if reason is None:
            try:
                tiles = plan(tuple(conv.kernel_size), layout, max_taps)
            except ValueError as exc:
                reason = str(exc)
        if tiles is None:
            report.skipped[name] = reason
            continue
        model.set_submodule(name, DepthwiseSum(conv, tiles).train(conv.training))
        report.rewritten.append(name)
        kh, kw = conv.kernel_size
        report.splits[f"{kh}x{kw}"] = " + ".join(t.label() for t in tiles)
    return model, report


def apply(model: nn.Module, options: TFLiteOptions) -> tuple[nn.Module, dict]:
    """Split ``model`` as the recipe's ``[tflite] depthwise_split`` says (``"none"`` turns it off);
    returns the model and the manifest's record of what was done."""
    layout = options.depthwise_split
    if layout != "none" and layout not in LAYOUTS:
        raise EdgeposeError(
            f"unknown depthwise_split {layout!r} in the recipe; choose one of: none, {', '.join(LAYOUTS)}"
        )
    model, report = split_depthwise(model, layout)
    return model, report.as_dict()
