"""Count a network's true MACs and its paper-convention figure in one forward pass, on the meta device.

True MACs are the multiply-adds of every executed conv / conv-transpose / matmul, priced with PyTorch's
own formulas (``torch.utils.flop_counter.flop_registry``, which counts 2 flops per MAC) as the aten ops
go by; every other executed op is listed in ``uncounted``. The paper figure comes from module hooks that
apply the paper's rules (``conventions.py``). The forward runs on a meta copy of the model (shapes only,
no compute) and falls back to a CPU copy when an op has no meta kernel; the caller's model is untouched.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from edgepose.errors import EdgeposeError
from edgepose.macs.conventions import Convention, get_convention
from edgepose.models.registry import check_input_size

# aten ops that only read metadata or allocate: not work worth listing as "uncounted".
_NOT_WORK = {
    "_unsafe_view",
    "detach",
    "lift_fresh",
    "empty",
    "empty_like",
    "empty_strided",
    "zeros",
    "ones",
    "full",
    "scalar_tensor",
}
# Friendlier names for the few aten ops whose names are internal.
_OP_NAMES = {
    "_native_batch_norm_legit_no_training": "batch_norm",
    "native_batch_norm": "batch_norm",
    "_adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "clone": "clone (contiguous copy, e.g. channel shuffle)",
    "hardtanh": "hardtanh (relu6)",
}
ROOT = "(model)"  # the name under which the model's own top-level ops are listed


@dataclass
class LayerMacs:
    """One module's share: executed conv/linear MACs and its count under the paper's rules."""

    name: str
    type: str
    calls: int
    true_macs: int
    paper_macs: int  # under the paper's rules, times the convention's fitted factor if it has one


@dataclass
class MacReport:
    """Params, true MACs and the paper-convention figure of one model at one input size (batch 1)."""

    model: str
    dataset: str | None
    input_size: tuple[int, int]
    params: int
    true_macs: int
    paper_macs: int  # the paper-convention count (fitted factor applied where the convention has one)
    paper_rules_macs: int  # the same rules without a fitted factor (equal to paper_macs for most)
    paper_convention: str
    paper_value: float
    paper_unit: str
    paper_display: str
    output_shapes: list[tuple[int, ...]]
    counted_on: str  # "meta" or "cpu" (fallback)
    published_value: float | None = None  # the paper's printed figure at this size, in paper_unit
    published_source: str | None = None
    layers: list[LayerMacs] = field(default_factory=list)
    uncounted: dict[str, int] = field(default_factory=dict)  # aten op -> calls, not in true_macs

    def as_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["output_shapes"] = [list(s) for s in self.output_shapes]
        return d


class _OpRecorder(TorchDispatchMode):
    """Prices conv/matmul aten ops with PyTorch's flop formulas, charged to the innermost running module."""

    def __init__(self, scope: list[str]) -> None:
        super().__init__()
        self.scope = scope
        self.macs: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        formula = flop_registry.get(packet)
        if formula is not None:
            self.macs[self.scope[-1]] += formula(*args, **kwargs, out_val=out) // 2  # 2 flops per MAC
        elif not func.is_view:
            name = packet.__name__.rstrip("_")  # relu_ and relu are the same op
            if name not in _NOT_WORK:
                self.uncounted[_OP_NAMES.get(name, name)] += 1
        return out


def _all_tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _all_tensors(item)]
    if isinstance(value, dict):
        return _all_tensors(list(value.values()))
    return []


def _first_tensor(value) -> torch.Tensor | None:
    return next(iter(_all_tensors(value)), None)


def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers live on the meta device (no data is copied)."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


class _Run:
    """One counted forward pass over a private copy of the model."""

    def __init__(self, model: nn.Module, convention: Convention) -> None:
        self.model = model
        self.convention = convention
        self.scope = [ROOT]
        self.order: dict[str, LayerMacs] = {}
        self.paper: Counter[str] = Counter()

    def _hooks(self) -> list:
        handles = []
        for name, module in self.model.named_modules():
            name = name or ROOT
            counted = not self.convention.leaf_only or next(module.children(), None) is None
            handles.append(module.register_forward_pre_hook(self._enter(name, module)))
            handles.append(module.register_forward_hook(self._leave(name, module, counted), always_call=True))
        return handles

    def _enter(self, name: str, module: nn.Module):
        def hook(_module, _inputs):
            self.scope.append(name)
            layer = self.order.setdefault(name, LayerMacs(name, type(module).__name__, 0, 0, 0))
            layer.calls += 1

        return hook

    def _leave(self, name: str, module: nn.Module, counted: bool):
        def hook(_module, inputs, output):
            self.scope.pop()
            x, y = _first_tensor(inputs), _first_tensor(output)
            if not counted or x is None or y is None:
                return
            value = self.convention.rule(module, x, y)
            if value is None:
                return
            if self.convention.every_call:
                self.paper[name] += int(value)
            else:  # torchstat: the hook of a module called twice overwrites its first result
                self.paper[name] = int(value)

        return hook

    def forward(self, x: torch.Tensor) -> tuple[list[tuple[int, ...]], Counter[str], Counter[str]]:
        handles = self._hooks()
        try:
            with torch.no_grad(), _OpRecorder(self.scope) as recorder:
                out = self.model(x)
        finally:
            for h in handles:
                h.remove()
        shapes = [tuple(int(s) for s in t.shape) for t in _all_tensors(out)]
        return shapes, recorder.macs, recorder.uncounted


def _model_label(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    return spec.name if spec is not None else type(model).__name__


def count_macs(
    model: nn.Module,
    input_size: tuple[int, int] | None = None,
    convention: str | None = None,
) -> MacReport:
    """Count ``model`` at a batch-1 ``(H, W)`` RGB input: params, true MACs, the paper's figure, per layer.

    ``input_size`` defaults to the spec's paper size; ``convention`` to ``model.spec.mac_convention``
    ("ptflops-0.6" for a model without a spec). Sizes are checked against the spec. The model's device,
    mode and hooks are left as they were: the counting runs on a copy.
    """
    spec = getattr(model, "spec", None)
    if input_size is None:
        if spec is None:
            raise EdgeposeError(f"{type(model).__name__} has no spec: pass input_size=(H, W)")
        input_size = spec.input_size
    height, width = (int(v) for v in input_size)
    if spec is not None:
        check_input_size(spec, height, width)
    elif height <= 0 or width <= 0:
        raise EdgeposeError(f"bad input size {height}x{width}")
    conv = get_convention(convention or (spec.mac_convention if spec is not None else "ptflops-0.6"))
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    try:
        device, run = "meta", _Run(_meta_copy(model).eval(), conv)
        shapes, true_by_module, uncounted = run.forward(
            torch.zeros(1, 3, height, width, dtype=dtype, device="meta")
        )
    except (NotImplementedError, RuntimeError):
        # An op without a meta kernel (or a tensor the model keeps outside its parameters): count for real.
        device, run = "cpu", _Run(copy.deepcopy(model).to("cpu").eval(), conv)
        shapes, true_by_module, uncounted = run.forward(torch.zeros(1, 3, height, width, dtype=dtype))

    layers = []
    for layer in run.order.values():
        layer.true_macs = true_by_module.get(layer.name, 0)
        layer.paper_macs = round(run.paper.get(layer.name, 0) * conv.factor)
        if layer.true_macs or layer.paper_macs:
            layers.append(layer)
    paper = sum(layer.paper_macs for layer in layers)
    value, unit = conv.scale(paper)
    # A printed figure is comparable only in the convention it was printed in (the spec's own).
    published = spec.published_figure((height, width)) if spec is not None else None
    if published is not None and conv.name != spec.mac_convention:
        published = None
    return MacReport(
        model=_model_label(model),
        dataset=getattr(model, "dataset", None),
        input_size=(height, width),
        params=sum(p.numel() for p in model.parameters()),
        true_macs=sum(true_by_module.values()),
        paper_macs=paper,
        paper_rules_macs=sum(run.paper.values()),
        paper_convention=conv.name,
        paper_value=value,
        paper_unit=unit,
        paper_display=conv.display(paper),
        output_shapes=shapes,
        counted_on=device,
        published_value=published.value if published else None,
        published_source=published.source if published else None,
        layers=layers,
        uncounted=dict(sorted(uncounted.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
