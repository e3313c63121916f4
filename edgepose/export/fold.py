"""Fold inference BatchNorms into the convolutions that feed them, on any network, before export.

The data flow is recorded by running the model once under a ``TorchFunctionMode``: every
conv / transposed conv / batch_norm / add call is logged with the tensors it reads and writes, and
modules are recognised by their parameter objects. That is generic (no per-family code) and
sees what a module tree cannot: LitePose's BN after the SUM of two transposed convs, which is
folded into both (scale both, add the BN shift once). A BN is folded only when its producer's
output feeds nothing else and each module runs once; anything else is left as it is and counted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_CONV_FUNCS = {
    torch.conv2d: "conv",
    F.conv2d: "conv",
    torch.conv_transpose2d: "deconv",
    F.conv_transpose2d: "deconv",
}
_ADD_FUNCS = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_BN_FUNCS = {F.batch_norm, torch.batch_norm}


@dataclass
class FoldReport:
    """What folding did: BNs folded into one conv, into a sum of two convs, and BNs left in place."""

    into_conv: list[str] = field(default_factory=list)
    into_sum: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"into_conv": len(self.into_conv), "into_sum": len(self.into_sum), "kept": list(self.kept)}


@dataclass
class _Call:
    kind: str  # "conv" | "deconv" | "bn" | "add" | "other"
    inputs: list[int]  # ids of the tensors read
    output: int | None  # id of the tensor written
    param: int | None = None  # id of the weight parameter (conv / bn)


class _Recorder(TorchFunctionMode):
    """Logs every torch function call with the ids of the tensors it reads and returns."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[_Call] = []
        self.keep: list[object] = []  # holds every tensor seen, so that ids stay unique

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat = list(args) + list(kwargs.values())
        flat += [t for a in flat if isinstance(a, list | tuple) for t in a]
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        self.keep += tensors + [out]
        output = id(out) if isinstance(out, torch.Tensor) else None
        if func in _CONV_FUNCS:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.calls.append(_Call(_CONV_FUNCS[func], [id(args[0])], output, id(weight)))
        elif func in _BN_FUNCS:
            weight = args[3] if len(args) > 3 else kwargs.get("weight")
            self.calls.append(_Call("bn", [id(args[0])], output, id(weight) if weight is not None else None))
        elif func in _ADD_FUNCS and len(tensors) == 2 and kwargs.get("alpha", 1) == 1:
            self.calls.append(_Call("add", [id(t) for t in tensors], output))
        elif output is not None or isinstance(out, tuple | list):
            # Only calls that produce tensors consume data; x.dim(), x.size() ... do not count.
            self.calls.append(_Call("other", [id(t) for t in tensors], output))
            if isinstance(out, tuple | list):
                self.keep += list(out)
        return out


def _scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


def _scale_conv(conv: nn.Module, scale: torch.Tensor, shift: torch.Tensor | None) -> None:
    """w <- w * scale per output channel; b <- b * scale (+ shift)."""
    w = conv.weight
    if isinstance(conv, nn.ConvTranspose2d):  # weight (in, out/groups, kh, kw)
        g = conv.groups
        view = w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
        view.mul_(scale.view(g, 1, w.shape[1], 1, 1))
    else:  # weight (out, in/groups, kh, kw)
        w.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias * scale if conv.bias is not None else torch.zeros_like(scale)
    if shift is not None:
        bias = bias + shift
    if conv.bias is None and shift is None:
        return
    conv.bias = nn.Parameter(bias)


@torch.no_grad()
def fold_batchnorm(
    model: nn.Module, example: torch.Tensor, inplace: bool = False
) -> tuple[nn.Module, FoldReport]:
    """Return ``model`` (a deep copy unless ``inplace``) with every foldable BatchNorm2d folded.

    ``example`` is one input used to trace the data flow (a small one is enough if the model
    accepts it). The model must be in eval mode: folding uses the running statistics.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (it folds running statistics)")
    model = model if inplace else copy.deepcopy(model)
    by_param = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.BatchNorm2d) and module.weight is not None:
            by_param[id(module.weight)] = (name, module)

    recorder = _Recorder()
    with recorder:
        model(example)
    calls = recorder.calls
    producer = {c.output: c for c in calls if c.output is not None}
    consumers: dict[int, int] = {}
    runs: dict[int, int] = {}
    for c in calls:
        for t in c.inputs:
            consumers[t] = consumers.get(t, 0) + 1
        if c.param is not None:
            runs[c.param] = runs.get(c.param, 0) + 1

    def sole_conv(tensor: int) -> nn.Module | None:
        """The conv module that alone produced ``tensor``, if its output feeds only one consumer."""
        c = producer.get(tensor)
        if c is None or c.kind not in ("conv", "deconv") or consumers.get(tensor) != 1:
            return None
        if c.param not in by_param or runs[c.param] != 1:
            return None
        return by_param[c.param][1]

    report = FoldReport()
    for name, bn in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]:
        call = next(
            (c for c in calls if c.kind == "bn" and bn.weight is not None and c.param == id(bn.weight)), None
        )
        if call is None or runs.get(call.param) != 1 or not bn.track_running_stats:
            report.kept.append(name)
            continue
        scale, shift = _scale_shift(bn)
        src = call.inputs[0]
        conv = sole_conv(src)
        add = producer.get(src)
        if conv is not None:
            _scale_conv(conv, scale, shift)
            report.into_conv.append(name)
        elif add is not None and add.kind == "add" and consumers.get(src) == 1:
            pair = [sole_conv(t) for t in add.inputs]
            if None in pair or pair[0] is pair[1]:
                report.kept.append(name)
                continue
            _scale_conv(pair[0], scale, shift)  # the BN shift is added once
            _scale_conv(pair[1], scale, None)
            report.into_sum.append(name)
        else:
            report.kept.append(name)
            continue
        model.set_submodule(name, nn.Identity())
    return model, report
