"""The networks: a registry of LitePose, Lite-HRNet and the papers' baselines."""

from edgepose.models.registry import (
    Family,
    ModelSpec,
    OutputSpec,
    PaperFigure,
    Variant,
    build_model,
    build_seeded,
    check_forward_input,
    check_input_size,
    get_spec,
    head_size,
    list_models,
    parse_size,
    register_family,
    register_model,
)
from edgepose.models.weights import load_weights

__all__ = [
    "Family",
    "ModelSpec",
    "OutputSpec",
    "PaperFigure",
    "Variant",
    "build_model",
    "build_seeded",
    "check_forward_input",
    "check_input_size",
    "get_spec",
    "head_size",
    "list_models",
    "load_weights",
    "parse_size",
    "register_family",
    "register_model",
]
