"""Export recipes: one TOML file per target (``export/<target>.toml``) read into a small typed object.

A recipe names a format from the one table (:mod:`edgepose.device.formats`) and holds the target's
choices: allowed precisions and the default, opset, shapes, parity limits per precision, runtime
settings, and the format's own typed table (``[tensorrt]``, ``[tflite]``). Everything is validated
when the file is read; CLI flags override through :func:`resolve`; the resolved recipe is recorded in
the manifest by name and content hash. ``--target`` takes a recipe name or the path of a user's TOML.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from edgepose import shipped
from edgepose.device.formats import FORMATS, PRECISIONS, get_format
from edgepose.device.kinds import KINDS
from edgepose.errors import EdgeposeError

OPSET_RANGE = (11, 17)  # the legacy TorchScript exporter at an exact, tested opset
# Thresholds a parity gate checks, and the two settings of its fp32 noise allowance (export/parity.py).
# An agreement bar applies to the outputs whose role has that figure: peaks for heatmaps, pixels
# (per-pixel argmax class) for segmentation logits.
PARITY_THRESHOLDS = (
    "max_abs_diff", "mean_abs_diff", "min_sqnr_db", "min_peak_agreement", "min_pixel_agreement",
)  # fmt: skip
PARITY_SETTINGS = ("noise_factor", "noisy_min_sqnr_db")
PARITY_KEYS = PARITY_THRESHOLDS + PARITY_SETTINGS
RUNTIME_KEYS = ("backend", "threads", "delegate", "delegates")
NEXT_STEP_FIELDS = ("folder", "path", "model", "source", "json")
_TOP_KEYS = (
    "name", "description", "format", "precision", "precisions", "opset", "dynamic_batch",
    "calib_max_images", "next_steps", "parity", "runtime", *FORMATS,
)  # fmt: skip


@dataclass(frozen=True)
class RuntimeSettings:
    """How the artifact runs by default: the backend, its threads and (TFLite) its delegate."""

    backend: str
    threads: int | None = None  # None: the runtime's own default
    delegate: str | None = None
    delegates: tuple[str, ...] = ()  # delegates a device profile may choose (the default included)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``runtime`` (the chosen settings only)."""
        out: dict[str, Any] = {"backend": self.backend}
        if self.threads is not None:
            out["threads"] = self.threads
        if self.delegate is not None:
            out["delegate"] = self.delegate
        return out


@dataclass(frozen=True)
class Recipe:
    """One export target: what to produce and how to check it (immutable; :func:`resolve` makes copies)."""

    name: str
    description: str
    format: str  # a key of edgepose.device.formats.FORMATS
    precision: str  # the default (or, once resolved, the chosen) precision
    precisions: tuple[str, ...]  # precisions this target allows
    opset: int | None  # ONNX opset (None where the format needs no ONNX)
    dynamic_batch: bool
    runtime: RuntimeSettings
    options: NamedTuple  # the format's typed table, e.g. TensorRTOptions
    calib_max_images: int = 200  # int8 calibration reads at most this many images (sorted by name)
    # Parity limits by table key: "default", a precision ("fp16"), a model kind ("segmentation") or both
    # ("fp16.segmentation"); :attr:`parity` picks the most specific for the resolved precision and kind.
    parity_tables: dict[str, dict[str, float]] = field(default_factory=dict)
    # What to do with the folder next, printed after an export: {folder} (its name), {path} (absolute),
    # {source} (an example input that fits the model), {json} (a JSON-lines file name for its kind).
    next_steps: tuple[str, ...] = ()
    source: str = ""  # where it was read from, for messages only (never written into an artifact)
    sha256: str = ""  # of the recipe file's bytes
    kind: str | None = None  # the exported model's kind, once resolved for a model (picks its parity table)

    @property
    def parity(self) -> dict[str, float]:
        """The parity limits of the chosen precision and model kind: the first table that exists of
        ``<precision>.<kind>``, ``<kind>``, ``<precision>`` and the default one. A kind's table wins over a
        kind-less one: its outputs differ in what they are (logits, heatmaps), not only in how exact."""
        p, k = self.precision, self.kind
        order = (f"{p}.{k}", k, p, "default") if k else (p, "default")
        table = next((self.parity_tables[key] for key in order if key in self.parity_tables), {})
        return dict(table)

    def folder_name(self, model: str, dataset: str, input_size: tuple[int, int]) -> str:
        """The artifact folder's name: ``<model>-<dataset>-<H>x<W>-<target>-<precision>`` (export and the bench cache)."""
        h, w = input_size
        return f"{model}-{dataset}-{h}x{w}-{self.name}-{self.precision}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the manifest's ``export.recipe``): the name, content hash and resolved settings.

        The format's own options are not repeated here: what they decide is recorded once, where it is
        used (the ``engine`` settings, the ``runtime`` section).
        """
        return {
            "name": self.name,
            "sha256": self.sha256,
            "format": self.format,
            "precision": self.precision,
            "precisions": list(self.precisions),
            "opset": self.opset,
            "dynamic_batch": self.dynamic_batch,
            "calib_max_images": self.calib_max_images,
            "parity": self.parity,
            "runtime": self.runtime.to_dict(),
        }


def known_recipes() -> list[str]:
    """Names of the shipped recipes (``export/*.toml``)."""
    return shipped.names("recipes")


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """Read a shipped recipe by name, or a user's recipe by path, and validate it."""
    file = shipped.read("recipes", name_or_path)
    return parse_recipe(file.data, source=file.label, default_name=file.name, sha256=file.sha256)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parity_table(table: dict[str, Any], where: str) -> dict[str, float]:
    bad_keys = sorted(set(table) - set(PARITY_KEYS))
    if bad_keys:
        raise EdgeposeError(f"{where}: unknown [parity] keys {bad_keys}; allowed: {', '.join(PARITY_KEYS)}")
    if not all(_number(v) for v in table.values()):
        raise EdgeposeError(f"{where}: [parity] thresholds must be numbers")
    return {k: float(v) for k, v in table.items()}


def _flat(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if not isinstance(v, dict)}


def parse_parity(data: dict[str, Any], where: str) -> dict[str, dict[str, float]]:
    """``[parity]`` (the default limits), ``[parity.<precision>]``, ``[parity.<kind>]`` and
    ``[parity.<precision>.<kind>]`` tables, each validated; keyed as :attr:`Recipe.parity_tables`."""
    tables = {"default": _parity_table(_flat(data), where)} if _flat(data) else {}
    for key, table in data.items():
        if not isinstance(table, dict):
            continue
        if key in KINDS:
            nested = sorted(k for k, v in table.items() if isinstance(v, dict))
            if nested:
                raise EdgeposeError(f"{where}: [parity.{key}] cannot hold tables ({', '.join(nested)})")
            tables[key] = _parity_table(table, f"{where} [parity.{key}]")
            continue
        if key not in PRECISIONS:
            raise EdgeposeError(
                f"{where}: [parity.{key}] is not a precision or a model kind; use one of "
                f"{', '.join(PRECISIONS + KINDS)}"
            )
        if _flat(table):
            tables[key] = _parity_table(_flat(table), f"{where} [parity.{key}]")
        for kind, sub in table.items():
            if not isinstance(sub, dict):
                continue
            if kind not in KINDS:
                raise EdgeposeError(
                    f"{where}: [parity.{key}.{kind}] is not a model kind; use one of {', '.join(KINDS)}"
                )
            tables[f"{key}.{kind}"] = _parity_table(sub, f"{where} [parity.{key}.{kind}]")
    return tables


_TYPES = {int: (int,), float: (int, float), str: (str,), bool: (bool,), dict: (dict,)}


def parse_options(cls: type, table: dict[str, Any], where: str) -> NamedTuple:
    """The format's typed options from its recipe table: unknown keys and wrong types are refused."""
    types = getattr(cls, "__annotations__", {})
    unknown = sorted(set(table) - set(types))
    if unknown:
        allowed = ", ".join(types) or "none"
        raise EdgeposeError(f"{where}: unknown keys {unknown}; allowed: {allowed}")
    for key, value in table.items():
        want = types[key]
        if isinstance(value, bool) and want is not bool or not isinstance(value, _TYPES[want]):
            raise EdgeposeError(f"{where}: {key} must be a {want.__name__}, got {value!r}")
    return cls(**{k: types[k](v) for k, v in table.items()})


def parse_runtime(data: dict[str, Any], fmt: str, where: str) -> RuntimeSettings:
    """``[runtime]``: a backend that can run the format, threads >= 0, a delegate from ``delegates``."""
    unknown = sorted(set(data) - set(RUNTIME_KEYS))
    if unknown:
        raise EdgeposeError(f"{where} [runtime]: unknown keys {unknown}; allowed: {', '.join(RUNTIME_KEYS)}")
    backends = FORMATS[fmt].backends
    backend = data.get("backend", backends[0])
    if backend not in backends:
        raise EdgeposeError(
            f"{where}: runtime backend {backend!r} cannot run {fmt}; choose {', '.join(backends)}"
        )
    threads = data.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise EdgeposeError(f"{where}: runtime threads must be an integer >= 0, got {threads!r}")
    delegate = data.get("delegate")
    delegates = tuple(data.get("delegates", [delegate] if delegate else []))
    if delegate is not None and delegate not in delegates:
        raise EdgeposeError(f"{where}: runtime delegate {delegate!r} is not in delegates {list(delegates)}")
    return RuntimeSettings(backend, threads or None, delegate, delegates)


def parse_recipe(
    data: dict[str, Any], source: str = "<dict>", default_name: str = "custom", sha256: str = ""
) -> Recipe:
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
    spec = get_format(fmt)
    precisions = tuple(data.get("precisions", [data.get("precision", spec.precisions[0])]))
    bad = [p for p in precisions if p not in spec.precisions]
    if bad or not precisions:
        raise EdgeposeError(
            f"{where}: precisions must be drawn from {', '.join(spec.precisions)} (format {fmt}), got {bad}"
        )
    steps = data.get("next_steps", [])
    if not (isinstance(steps, list) and all(isinstance(s, str) for s in steps)):
        raise EdgeposeError(f"{where}: next_steps must be a list of strings")
    for step in steps:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(step) if name is not None}
        except ValueError as exc:
            raise EdgeposeError(f"{where}: next_steps {step!r}: {exc}") from None
        if not fields <= set(NEXT_STEP_FIELDS):
            raise EdgeposeError(
                f"{where}: next_steps may use {{{'}, {'.join(NEXT_STEP_FIELDS)}}}, not {sorted(fields - set(NEXT_STEP_FIELDS))}"
            )
    calib = data.get("calib_max_images", 200)
    if isinstance(calib, bool) or not isinstance(calib, int) or calib < 1:
        raise EdgeposeError(f"{where}: calib_max_images must be a positive integer, got {calib!r}")
    recipe = Recipe(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        format=fmt,
        precision=str(data.get("precision", precisions[0])),
        precisions=precisions,
        opset=data.get("opset"),
        dynamic_batch=data.get("dynamic_batch", False),
        runtime=parse_runtime(dict(data.get("runtime", {})), fmt, where),
        options=parse_options(spec.options, dict(data.get(fmt, {})), f"{where} [{fmt}]"),
        calib_max_images=calib,
        next_steps=tuple(steps),
        parity_tables=parse_parity(dict(data.get("parity", {})), where),
        source=source,
        sha256=sha256,
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
    if recipe.opset is None and not get_format(recipe.format).needs_opset:
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
    threads: int | None = None,
    delegate: str | None = None,
    kind: str | None = None,
) -> Recipe:
    """Apply overrides (CLI flags or a device profile; None = keep the recipe's value) and validate.

    ``kind``: the model kind being exported, which picks the parity limits (:attr:`Recipe.parity`).
    """
    changes: dict[str, Any] = {}
    if kind is not None:
        if kind not in KINDS:
            raise EdgeposeError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
        changes["kind"] = kind
    if precision is not None:
        changes["precision"] = precision
    if opset is not None:
        changes["opset"] = opset
    if dynamic_batch is not None:
        changes["dynamic_batch"] = dynamic_batch
    runtime = recipe.runtime
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise EdgeposeError(f"target {recipe.name!r}: threads must be an integer >= 0, got {threads!r}")
        runtime = replace(runtime, threads=threads or None)
    if delegate is not None:
        if delegate not in runtime.delegates:
            allowed = ", ".join(runtime.delegates) or "none"
            raise EdgeposeError(
                f"delegate {delegate!r} is not allowed for target {recipe.name!r}; choose: {allowed}"
            )
        runtime = replace(runtime, delegate=delegate)
    resolved = replace(recipe, runtime=runtime, **changes)
    _validate(resolved, f"target {recipe.name!r}")
    return resolved
