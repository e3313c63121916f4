"""Rewrite upsampling transposed convs as one conv + depth-to-space ("sub-pixel"), exactly, for XNNPACK int8.

XNNPACK (ai-edge-litert 2.3.0) runs an int8 TRANSPOSE_CONV far slower than fp32 (LitePose's 4x4 stride-2
deconv, 24 -> 24 channels at 64x64: 21 ms int8 against 2.7 ms fp32, one thread); the same arithmetic as a
plain 3x3 CONV_2D followed by a depth-to-space reshuffle takes 0.4 ms in int8 (docs/tflite.md).

A ConvTranspose2d with stride ``s`` whose output is exactly ``s`` times its input (``k - 2p + output_padding
== s``) computes output pixel ``s*i + a`` (phase ``a`` per axis) from a fixed window of input pixels around
``i`` with the kernel taps ``t = (a + p) mod s + s*j``. All phases share one window, so one conv with
``s*s*C_out`` output channels (phase-major) holds every phase, and interleaving the phases (a reshape and a
transpose in NHWC: TFLite's depth-to-space) gives the transposed conv's output. Same products, same sums.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from edgepose.device.formats import TFLiteOptions


def _phases(kernel: int, stride: int, padding: int) -> tuple[int, int, list[list[tuple[int, int]]]]:
    """(lo, hi, taps) along one axis: the input window is ``i + lo .. i + hi``; ``taps[a]`` lists
    (window position, kernel tap) pairs of output phase ``a``."""
    per_phase = []
    for a in range(stride):
        first = (a + padding) % stride
        offset = (a + padding - first) // stride  # input index of tap ``first`` is i + offset
        per_phase.append(
            [(offset - j, first + stride * j) for j in range((kernel - first + stride - 1) // stride)]
        )
    offsets = [d for phase in per_phase for d, _ in phase]
    lo, hi = min(offsets), max(offsets)
    return lo, hi, [[(d - lo, t) for d, t in phase] for phase in per_phase]


def why_not(deconv: nn.Module) -> str | None:
    """Why ``deconv`` cannot be rewritten (None: it can)."""
    if type(deconv) is not nn.ConvTranspose2d:
        return "not a ConvTranspose2d"
    if deconv.groups != 1 or deconv.dilation != (1, 1) or deconv.padding_mode != "zeros":
        return "grouped, dilated or non-zero padding mode"
    for k, s, p, op in zip(deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding):
        if s < 2 or k - 2 * p + op != s:
            return f"output not exactly stride x input (kernel {k}, stride {s}, padding {p})"
    return None


class SubPixelConv(nn.Module):
    """A transposed conv computed as conv (all output phases as channels) + depth-to-space (exact)."""

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        (kh, kw), (sh, sw), (ph, pw) = deconv.kernel_size, deconv.stride, deconv.padding
        lo_h, hi_h, taps_h = _phases(kh, sh, ph)
        lo_w, hi_w, taps_w = _phases(kw, sw, pw)
        cin, cout = deconv.in_channels, deconv.out_channels
        self.stride, self.out_channels = (sh, sw), cout
        self.pad = (-lo_w, hi_w, -lo_h, hi_h)  # F.pad order: left, right, top, bottom
        symmetric = -lo_h == hi_h and -lo_w == hi_w and min(self.pad) >= 0
        self.conv = nn.Conv2d(
            cin,
            sh * sw * cout,
            (hi_h - lo_h + 1, hi_w - lo_w + 1),
            padding=(hi_h, hi_w) if symmetric else 0,
            bias=deconv.bias is not None,
        )
        self.explicit_pad = not symmetric
        source = deconv.weight.detach()  # (cin, cout, kh, kw)
        weight = torch.zeros(sh, sw, cout, cin, *self.conv.kernel_size, dtype=source.dtype)
        for a_h in range(sh):
            for a_w in range(sw):
                for u_h, t_h in taps_h[a_h]:
                    for u_w, t_w in taps_w[a_w]:
                        weight[a_h, a_w, :, :, u_h, u_w] = source[:, :, t_h, t_w].t()
        self.conv.weight = nn.Parameter(weight.reshape(sh * sw * cout, cin, *self.conv.kernel_size))
        if deconv.bias is not None:
            self.conv.bias = nn.Parameter(deconv.bias.detach().repeat(sh * sw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_pad:
            x = F.pad(x, self.pad)
        # Channels are (phase_h, phase_w, C); written in NHWC so that the converter emits one
        # reshape-transpose-reshape (depth-to-space) between its own layout transposes.
        y = self.conv(x).permute(0, 2, 3, 1)
        n, h, w, _ = y.shape
        (sh, sw), c = self.stride, self.out_channels
        y = y.reshape(n, h, w, sh, sw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h * sh, w * sw, c)
        return y.permute(0, 3, 1, 2)


@torch.no_grad()
def rewrite_deconvs(model: nn.Module, inplace: bool = False) -> tuple[nn.Module, dict]:
    """``model`` (a deep copy unless ``inplace``) with every rewritable ConvTranspose2d replaced by a
    :class:`SubPixelConv`; returns it and a record ``{"layers", "skipped"}`` for the manifest."""
    model = model if inplace else copy.deepcopy(model)
    rewritten, skipped = [], {}
    for name, module in [(n, m) for n, m in model.named_modules() if type(m) is nn.ConvTranspose2d]:
        reason = why_not(module)
        if reason is not None:
            skipped[name] = reason
            continue
        model.set_submodule(name, SubPixelConv(module).train(module.training))
        rewritten.append(name)
    return model, {"layers": len(rewritten), "skipped": skipped}


def apply(model: nn.Module, options: TFLiteOptions) -> tuple[nn.Module, dict]:
    """The recipe's ``[tflite] subpixel_deconv`` applied (a bool, checked when the recipe is read);
    returns the model and the manifest record."""
    if not options.subpixel_deconv:
        return model, {"layers": 0, "skipped": {}, "enabled": False}
    model, record = rewrite_deconvs(model)
    return model, {**record, "enabled": True}
