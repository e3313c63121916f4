"""Model registry: every network is registered by name with a decorator and built by one factory.

A family module (``litepose.py``, ``litehrnet.py``, ...) registers one builder per variant::

    @register_model(ModelSpec(name="litepose-s", family="litepose", kind="bottom-up", ...))
    def litepose_s(dataset: str = "crowdpose") -> nn.Module: ...

``build_model(name, **options)`` looks the name up (with a did-you-mean on typos), checks the
options against the spec, and returns the ``nn.Module`` in eval mode.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from edgepose.errors import EdgeposeError


@dataclass(frozen=True)
class OutputSpec:
    """One model output: what it holds and at which stride of the input it lives."""

    name: str  # graph output name used by every exporter, e.g. "heatmaps_tags"
    role: str  # "heatmaps_tags" (J heatmaps then J AE tags) or "heatmaps"
    stride: int  # input size / output size
    channels_per_joint: int  # 2 for heatmaps+tags, 1 for heatmaps


@dataclass(frozen=True)
class ModelSpec:
    """What the toolkit needs to know about a variant without building it."""

    name: str
    family: str  # "litepose", "litehrnet", "higherhrnet", "efficienthrnet"
    kind: str  # "bottom-up" or "top-down"
    input_size: tuple[int, int]  # default (H, W): the paper's input size
    datasets: tuple[str, ...]  # accepted `dataset=` values, the first is the default
    size_multiple: int  # H and W must be multiples of this
    outputs: tuple[OutputSpec, ...]
    paper: str  # short citation, e.g. "LitePose (CVPR 2022)"
    mac_convention: str  # the paper's own MAC convention: "ptflops-0.6" or "torchstat"
    description: str = ""
    extra_sizes: tuple[tuple[int, int], ...] = field(default=())  # other published input sizes

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]


_REGISTRY: dict[str, tuple[ModelSpec, Callable[..., nn.Module]]] = {}


def register_model(spec: ModelSpec) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder`` under ``spec.name``. Builders take ``dataset=`` at least."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name!r} registered twice")
        _REGISTRY[spec.name] = (spec, builder)
        return builder

    return wrap


def _ensure_families_loaded() -> None:
    # Importing the family modules runs their @register_model decorators.
    from edgepose.models import families  # noqa: F401


def list_models(family: str | None = None) -> list[ModelSpec]:
    """All registered specs, in registration order (optionally one family)."""
    _ensure_families_loaded()
    return [spec for spec, _ in _REGISTRY.values() if family is None or spec.family == family]


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name is an error listing the known ones."""
    _ensure_families_loaded()
    try:
        return _REGISTRY[name][0]
    except KeyError:
        known = list(_REGISTRY)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EdgeposeError(f"unknown model {name!r}{hint}; known models: {', '.join(known)}") from None


def build_model(name: str, **options) -> nn.Module:
    """Build the registered network ``name`` in eval mode.

    Common options: ``dataset`` (one of ``spec.datasets``) and ``num_joints`` where the family
    allows it. The returned module carries its spec as ``model.spec`` and the chosen dataset as
    ``model.dataset``.
    """
    spec = get_spec(name)
    dataset = options.get("dataset") or spec.default_dataset
    if dataset not in spec.datasets:
        raise EdgeposeError(f"{name} has no {dataset!r} head; choose one of: {', '.join(spec.datasets)}")
    options["dataset"] = dataset
    builder = _REGISTRY[name][1]
    try:
        model = builder(**options)
    except TypeError as exc:  # an option this family does not take
        raise EdgeposeError(f"bad option for {name}: {exc}") from None
    model.spec = spec
    model.dataset = dataset
    return model.eval()


def check_input_size(spec: ModelSpec, height: int, width: int) -> None:
    """Raise a clear error unless (height, width) is valid for ``spec``, naming the nearest valid sizes."""
    m = spec.size_multiple
    bad = [(axis, v) for axis, v in (("height", height), ("width", width)) if v <= 0 or v % m]
    if not bad:
        return

    def nearest(v: int) -> str:
        lo = max(m, (v // m) * m)
        hi = lo + m if lo < v else lo
        return f"{lo}" if lo == hi else f"{lo} or {hi}"

    what = "; ".join(f"{axis} {v} (nearest valid: {nearest(v)})" for axis, v in bad)
    raise EdgeposeError(
        f"{spec.name} needs an input whose height and width are multiples of {m}: got {height}x{width}: {what}"
    )


def parse_size(text: str) -> tuple[int, int]:
    """Parse '448', '448x448' or '256x192' (H x W) into (H, W)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise EdgeposeError(f"bad input size {text!r}: expected HxW such as 256x192, or one number") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise EdgeposeError(f"bad input size {text!r}: expected HxW such as 256x192, or one number")
    return values[0], values[1]


def check_forward_input(spec: ModelSpec | None, x: torch.Tensor) -> None:
    """Eager-mode check of a forward input: (N, 3, H, W) with H, W valid for ``spec``.

    Skipped while tracing, scripting or compiling (shapes are static there and the checks would
    be baked into the graph); ``spec`` is None for a model built outside the registry.
    """
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return
    if spec is None:
        return
    if x.dim() != 4 or x.shape[1] != 3:
        raise EdgeposeError(f"{spec.name} expects an (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
    check_input_size(spec, int(x.shape[2]), int(x.shape[3]))
