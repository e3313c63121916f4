"""Model registry: every network is registered by name and built by one factory.

A family module (``litepose.py``, ``litehrnet.py``, ...) declares data and one build function::

    LITEPOSE = Family(name="litepose", kind="bottom-up", datasets=("crowdpose", "coco"), ...)
    register_family(LITEPOSE, {"litepose-s": Variant((448, 448), "LitePose-Auto-S", "search-S"), ...}, build)

``register_family`` makes one spec and one named builder per variant (timm's ``register_model`` +
``build_model_with_cfg``): the builder picks the dataset, sizes the head (``num_joints`` for pose,
``num_classes`` for segmentation; validated here and nowhere else), calls ``build(spec, config,
head_size)`` and attaches ``model.spec`` and ``model.dataset``. ``build_model(name, **options)`` looks
the name up (with a did-you-mean on typos) and returns the builder's module in eval mode.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgepose.device.segmentation_classes import get_classes
from edgepose.device.skeletons import get_skeleton
from edgepose.errors import EdgeposeError


@dataclass(frozen=True)
class OutputSpec:
    """One model output: what it holds and at which stride of the input it lives."""

    name: str  # graph output name used by every exporter, e.g. "heatmaps_tags"
    role: str  # "heatmaps_tags" (J heatmaps then J AE tags), "heatmaps", or "logits" (one per class)
    stride: int  # input size / output size
    channels_per_joint: int  # per head unit (joint or class): 2 for heatmaps+tags, 1 for heatmaps/logits


@dataclass(frozen=True)
class PaperFigure:
    """A MAC figure as the paper prints it for one input size, in the units of the spec's convention."""

    input_size: tuple[int, int]
    value: float  # e.g. 1.95 (GFLOPs)
    source: str  # where it is printed, e.g. "Lite-HRNet paper, Cityscapes table"


@dataclass(frozen=True)
class ModelSpec:
    """What the toolkit needs to know about a variant without building it."""

    name: str
    family: str  # "litepose", "litehrnet" (pose and segmentation), "higherhrnet", "efficienthrnet"
    kind: str  # "bottom-up" or "top-down" (pose), "segmentation"
    input_size: tuple[int, int]  # default (H, W): the paper's input size
    datasets: tuple[str, ...]  # accepted `dataset=` values, the first is the default
    size_multiple: int  # H and W must be multiples of this
    outputs: tuple[OutputSpec, ...]
    paper: str  # short citation, e.g. "LitePose (CVPR 2022)"
    mac_convention: str  # the paper's own MAC convention: "ptflops-0.6", "torchstat", "torchstat-seg-fit"
    description: str = ""
    extra_sizes: tuple[tuple[int, int], ...] = field(default=())  # other published input sizes
    published: tuple[PaperFigure, ...] = field(default=())  # printed figures shown beside the count
    head_option: str = "num_joints"  # the build option that sizes the head: "num_joints" or "num_classes"

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]

    def published_figure(self, input_size: tuple[int, int]) -> PaperFigure | None:
        """The paper's printed MAC figure at ``input_size``, where the spec records one."""
        return next((f for f in self.published if tuple(f.input_size) == tuple(input_size)), None)


_REGISTRY: dict[str, tuple[ModelSpec, Callable[..., nn.Module]]] = {}


def register_model(spec: ModelSpec) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder`` under ``spec.name`` (the primitive under :func:`register_family`).

    A builder takes ``dataset=`` (and head options) and returns a model carrying ``.spec`` and ``.dataset``.
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name!r} registered twice")
        _REGISTRY[spec.name] = (spec, builder)
        return builder

    return wrap


@dataclass(frozen=True)
class Family:
    """What every variant of a family shares: the spec fields that do not change between variants."""

    name: str  # ModelSpec.family
    kind: str
    paper: str
    datasets: tuple[str, ...]  # the first is the default
    size_multiple: int
    outputs: tuple[OutputSpec, ...]
    mac_convention: str
    head_option: str = "num_joints"  # the build option that sizes the output head ("num_classes")


@dataclass(frozen=True)
class Variant:
    """One member of a family: its paper input size, a description, and the family's config for it."""

    input_size: tuple[int, int]
    description: str
    config: Any = None  # handed to the family's build function as is (an arch dict, a config name, ...)
    extra_sizes: tuple[tuple[int, int], ...] = ()
    published: tuple[PaperFigure, ...] = ()


# Build function of a family: (spec, variant config, head size) -> module.
BuildFn = Callable[[ModelSpec, Any, int], nn.Module]

# Default head size per head option: the number of labels the dataset defines.
_HEAD_LABELS: dict[str, Callable[[str], Sequence[str]]] = {
    "num_joints": lambda dataset: get_skeleton(dataset)["joints"],
    "num_classes": lambda dataset: get_classes(dataset)["classes"],
}


def head_size(spec: ModelSpec, dataset: str, value: object = None) -> int:
    """The head size (joints or classes) for ``dataset``: ``value`` if given (a positive int), else the
    number of labels the dataset defines."""
    if value is None:
        return len(_HEAD_LABELS[spec.head_option](dataset))
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise EdgeposeError(f"{spec.name}: {spec.head_option} must be a positive integer, got {value!r}")
    return value


def register_family(family: Family, variants: Mapping[str, Variant], build: BuildFn) -> dict[str, ModelSpec]:
    """Register every variant of ``family``: one spec and one named builder each; returns the specs by name."""
    specs = {}
    for name, variant in variants.items():
        spec = ModelSpec(
            name=name,
            family=family.name,
            kind=family.kind,
            input_size=variant.input_size,
            datasets=family.datasets,
            size_multiple=family.size_multiple,
            outputs=family.outputs,
            paper=family.paper,
            mac_convention=family.mac_convention,
            description=variant.description,
            extra_sizes=variant.extra_sizes,
            published=variant.published,
            head_option=family.head_option,
        )
        register_model(spec)(_named_builder(spec, variant.config, build))
        specs[name] = spec
    return specs


def _named_builder(spec: ModelSpec, config: Any, build: BuildFn) -> Callable[..., nn.Module]:
    """The builder registered for ``spec``: dataset check, head size, build, then ``.spec`` / ``.dataset``."""
    function_name = spec.name.replace("-", "_")

    def builder(dataset: str | None = None, **options: Any) -> nn.Module:
        dataset = dataset or spec.default_dataset
        if dataset not in spec.datasets:
            raise EdgeposeError(
                f"{spec.name} has no {dataset!r} head; choose one of: {', '.join(spec.datasets)}"
            )
        size = head_size(spec, dataset, options.pop(spec.head_option, None))
        if options:
            raise TypeError(f"{function_name}() got an unexpected keyword argument {next(iter(options))!r}")
        model = build(spec, config, size)
        model.spec = spec
        model.dataset = dataset
        return model

    builder.__name__ = builder.__qualname__ = function_name
    builder.__doc__ = f"Build {spec.description} for ``dataset`` (or ``{spec.head_option}`` outputs)."
    return builder


def _ensure_families_loaded() -> None:
    # Importing the family modules runs their register_family calls.
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

    Common options: ``dataset`` (one of ``spec.datasets``) and the head size (``spec.head_option``:
    ``num_joints``, or ``num_classes`` for segmentation). The returned module carries its spec as ``model.spec`` and the chosen dataset as
    ``model.dataset``.
    """
    get_spec(name)  # an unknown name is an error with a did-you-mean
    builder = _REGISTRY[name][1]
    try:
        model = builder(**options)
    except TypeError as exc:  # an option this family does not take
        raise EdgeposeError(f"bad option for {name}: {exc}") from None
    return model.eval()


def build_seeded(name: str, seed: int, **options) -> nn.Module:
    """:func:`build_model` with its random weights drawn under ``seed``, leaving the global RNG as it was
    (an export's random weights, and the same network rebuilt later from its manifest)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model(name, **options)


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
