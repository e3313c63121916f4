"""Export recipes: one TOML file per target (``export/<target>.toml``) read into a small typed object.

A recipe holds the target's choices (format, precision, opset, shapes, parity thresholds, runtime
and a format-specific table such as ``[tensorrt]``); CLI flags override them through
:func:`resolve`, and the resolved recipe is written into the manifest. ``--target`` takes a
recipe name (a file in the recipe folder) or a path to the user's own TOML file.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgepose.errors import EdgeposeError

try:  # Python 3.11+; the `tomli` backport has the same API for 3.10
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

FORMATS = ("onnx", "tensorrt", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
OPSET_RANGE = (11, 17)  # the legacy TorchScript exporter at an exact, tested opset
PARITY_KEYS = ("max_abs_diff", "mean_abs_diff", "min_sqnr_db", "min_peak_agreement")
_TOP_KEYS = (
    "name",
    "description",
    "format",
    "precision",
    "precisions",
    "opset",
    "dynamic_batch",
    "parity",
    "runtime",
    *FORMATS,
)

# Repo checkout (`pip install -e .`): <repo>/export; an installed wheel may ship them in the package.
RECIPE_DIRS = (
    Path(__file__).resolve().parents[2] / "export",
    Path(__file__).resolve().parent / "recipes",
)


@dataclass(frozen=True)
class Recipe:
    """One export target: what to produce and how to check it."""

    name: str
    description: str
    format: str  # "onnx" | "tensorrt" | "tflite"
    precision: str  # the default (or, once resolved, the chosen) precision
    precisions: tuple[str, ...]  # precisions this target allows
    opset: int | None  # ONNX opset (None where the format needs no ONNX)
    dynamic_batch: bool
    parity: dict[str, float] = field(default_factory=dict)  # thresholds, keys in PARITY_KEYS
    runtime: dict[str, Any] = field(default_factory=dict)  # backend, threads, delegate, ...
    options: dict[str, Any] = field(default_factory=dict)  # the format's own table, e.g. [tensorrt]
    source: str = ""  # the TOML file it was read from

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the manifest's ``export.recipe``)."""
        data = asdict(self)
        data["precisions"] = list(self.precisions)
        return data


def recipe_dir() -> Path | None:
    """The folder holding the shipped recipes, or None if none is found."""
    return next((d for d in RECIPE_DIRS if d.is_dir()), None)


def known_recipes() -> list[str]:
    """Names of the shipped recipes (``export/*.toml``)."""
    folder = recipe_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder else []


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """Read a shipped recipe by name, or a user's recipe by path, and validate it."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or os.sep in text or path.is_file():
        if not path.is_file():
            raise EdgeposeError(f"recipe file not found: {path}")
    else:
        known = known_recipes()
        if text not in known:
            close = difflib.get_close_matches(text, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EdgeposeError(
                f"unknown export target {text!r}{hint}; known targets: {', '.join(known) or 'none'}"
                " (or give the path of a recipe .toml)"
            )
        path = recipe_dir() / f"{text}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgeposeError(f"recipe {path} is not valid TOML: {exc}") from None
    return parse_recipe(data, source=str(path), default_name=path.stem)


def parse_recipe(data: dict[str, Any], source: str = "<dict>", default_name: str = "custom") -> Recipe:
    """Build a :class:`Recipe` from TOML data, refusing unknown keys and bad values."""
    where = f"recipe {source}"
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise EdgeposeError(f"{where}: unknown keys {unknown}; allowed: {', '.join(_TOP_KEYS)}")
    fmt = data.get("format")
    if fmt not in FORMATS:
        raise EdgeposeError(f"{where}: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    foreign = [f for f in FORMATS if f != fmt and f in data]
    if foreign:
        raise EdgeposeError(f"{where}: table [{foreign[0]}] does not apply to format {fmt!r}")
    precisions = tuple(data.get("precisions", [data.get("precision", "fp32")]))
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise EdgeposeError(f"{where}: precisions must be drawn from {', '.join(PRECISIONS)}, got {bad}")
    parity = dict(data.get("parity", {}))
    bad_keys = sorted(set(parity) - set(PARITY_KEYS))
    if bad_keys:
        raise EdgeposeError(f"{where}: unknown [parity] keys {bad_keys}; allowed: {', '.join(PARITY_KEYS)}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in parity.values()):
        raise EdgeposeError(f"{where}: [parity] thresholds must be numbers")
    recipe = Recipe(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        format=fmt,
        precision=str(data.get("precision", precisions[0])),
        precisions=precisions,
        opset=data.get("opset"),
        dynamic_batch=data.get("dynamic_batch", False),
        parity={k: float(v) for k, v in parity.items()},
        runtime=dict(data.get("runtime", {})),
        options=dict(data.get(fmt, {})),
        source=source,
    )
    _validate(recipe, where)
    return recipe


def _validate(recipe: Recipe, where: str) -> None:
    if recipe.precision not in recipe.precisions:
        raise EdgeposeError(
            f"{where}: precision {recipe.precision!r} is not allowed for target {recipe.name!r};"
            f" choose one of: {', '.join(recipe.precisions)}"
        )
    if not isinstance(recipe.dynamic_batch, bool):
        raise EdgeposeError(f"{where}: dynamic_batch must be true or false")
    needs_opset = recipe.format in ("onnx", "tensorrt")
    if recipe.opset is None and not needs_opset:
        return
    lo, hi = OPSET_RANGE
    if isinstance(recipe.opset, bool) or not isinstance(recipe.opset, int) or not lo <= recipe.opset <= hi:
        raise EdgeposeError(f"{where}: opset must be an integer from {lo} to {hi}, got {recipe.opset!r}")


def resolve(
    recipe: Recipe,
    *,
    precision: str | None = None,
    opset: int | None = None,
    dynamic_batch: bool | None = None,
) -> Recipe:
    """Apply CLI overrides (None = keep the recipe's value) and validate the result."""
    changes: dict[str, Any] = {}
    if precision is not None:
        changes["precision"] = precision
    if opset is not None:
        changes["opset"] = opset
    if dynamic_batch is not None:
        changes["dynamic_batch"] = dynamic_batch
    resolved = replace(recipe, **changes)
    _validate(resolved, f"target {recipe.name!r}")
    return resolved
