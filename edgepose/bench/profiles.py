"""Device profiles (``devices/<name>.toml``): a device refers to an export recipe and adds its hardware.

A profile names its recipe and may set only what that recipe allows (precision, runtime threads,
delegate, and for TensorRT the engine builder), plus the hardware, how the device is reached
(local / ssh / adb) and its native timing tool. Loading a profile resolves it against its recipe, so
a profile that asks for something its recipe refuses fails at once, in one line naming both files.
Users add a device by adding a file; ``load_profile`` also accepts a path to a TOML file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edgepose import shipped
from edgepose.device.formats import NATIVE_TOOLS
from edgepose.errors import EdgeposeError
from edgepose.export.recipe import Recipe, load_recipe, resolve

REACH_METHODS = ("local", "ssh", "adb")
ENGINE_BUILDERS = ("python", "trtexec")
_TOP_KEYS = (
    "name", "description", "recipe", "precision", "threads", "delegate", "engine_builder", "models",
    "paper_column", "hardware", "reach", "native", "runtimes",
)  # fmt: skip
RUNTIME_CHOICE_KEYS = ("recipe", "precision", "threads", "delegate")


@dataclass(frozen=True)
class Reach:
    """How the device is reached: ``local`` (this machine), ``ssh`` (``--host``) or ``adb`` (``--adb``)."""

    method: str = "local"
    python: str = "python3"  # the device's Python (ssh)
    workdir: str = "/tmp/edgepose-bench"  # where artifacts are pushed on the device
    setup: str | None = None  # a best-effort command run before timing (e.g. the Jetson's clocks)


@dataclass(frozen=True)
class NativeTool:
    """The device's own timing tool: trtexec (Jetson) or TFLite's benchmark_model."""

    tool: str
    path: str | None = None  # on the device; default: the recipe's (trtexec) or the one given by flag
    cpu_mask: str | None = None  # taskset mask on the device (e.g. f0: a phone's big cores)


@dataclass(frozen=True)
class DeviceProfile:
    """One device, resolved against its recipe: ``recipe`` already carries the profile's settings."""

    name: str
    description: str
    recipe: Recipe  # resolved: the profile's precision, threads, delegate (and engine builder) applied
    models: tuple[str, ...] | None  # None: every registered model
    reach: Reach
    native: NativeTool | None = None
    paper_column: str | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # devices/<name>.toml, or the user's path
    # Every runtime the device can be timed with (``--runtime``) -> its resolved recipe; the default first.
    runtimes: dict[str, Recipe] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        return self.recipe.precision

    @property
    def threads(self) -> int | None:
        return self.recipe.runtime.threads

    @property
    def delegate(self) -> str | None:
        return self.recipe.runtime.delegate

    @property
    def int8(self) -> bool:
        """False where the hardware cannot run int8 (a Jetson Nano): int8 is refused, never faked."""
        return bool(self.hardware.get("int8", True))

    def with_settings(
        self, precision: str | None = None, threads: int | None = None, runtime: str | None = None
    ) -> DeviceProfile:
        """The profile with a runtime / precision / thread count from the command line, checked like the file's."""
        recipe = self.recipe
        if runtime is not None:
            if runtime not in self.runtimes:
                raise EdgeposeError(
                    f"{self.name} ({self.label}) has no runtime {runtime!r}; choose one of: {', '.join(self.runtimes)}"
                )
            recipe = self.runtimes[runtime]
        return replace(self, recipe=self._resolve(recipe, precision, threads))

    def _resolve(self, recipe: Recipe, precision: str | None, threads: int | None, **extra) -> Recipe:
        if precision == "int8" and not self.int8:
            raise EdgeposeError(
                f"{self.name} ({self.label}) cannot run int8 (hardware.int8 = false): choose one of "
                f"{', '.join(p for p in recipe.precisions if p != 'int8')}"
            )
        try:
            return resolve(recipe, precision=precision, threads=threads, **extra)
        except EdgeposeError as exc:
            raise EdgeposeError(f"{self.label} disagrees with its recipe {recipe.source}: {exc}") from None


def list_profiles() -> list[str]:
    """Names of the shipped profiles (``devices/*.toml``)."""
    return shipped.names("devices")


def _table(data: dict[str, Any], key: str, cls: type, where: str) -> Any:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise EdgeposeError(f"{where}: [{key}] must be a table")
    allowed = cls.__dataclass_fields__
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise EdgeposeError(f"{where}: unknown [{key}] keys {unknown}; allowed: {', '.join(allowed)}")
    if not all(isinstance(v, str) for v in table.values()):
        raise EdgeposeError(f"{where}: [{key}] values must be strings")
    return cls(**table)


def parse_profile(data: dict[str, Any], label: str, default_name: str) -> DeviceProfile:
    """Build a profile from TOML data and resolve it against its recipe (one-line errors)."""
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise EdgeposeError(f"{label}: unknown keys {unknown}; allowed: {', '.join(_TOP_KEYS)}")
    if "recipe" not in data:
        raise EdgeposeError(f"{label}: a device profile needs a 'recipe' entry (an export target)")
    reach = _table(data, "reach", Reach, label)
    if reach.method not in REACH_METHODS:
        raise EdgeposeError(
            f"{label}: reach.method must be one of {', '.join(REACH_METHODS)}, got {reach.method!r}"
        )
    native = _table(data, "native", NativeTool, label) if "native" in data else None
    if native is not None and native.tool not in NATIVE_TOOLS:
        raise EdgeposeError(
            f"{label}: native.tool must be one of {', '.join(NATIVE_TOOLS)}, got {native.tool!r}"
        )
    models = data.get("models", "all")
    if models != "all" and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
        raise EdgeposeError(f'{label}: models must be "all" or a list of model names')
    recipe = load_recipe(data["recipe"])
    if "engine_builder" in data:
        builder = data["engine_builder"]
        if "builder" not in recipe.options._fields or builder not in ENGINE_BUILDERS:
            raise EdgeposeError(
                f"{label}: engine_builder ({builder!r}) is for recipes that build an engine on the device: "
                f"one of {', '.join(ENGINE_BUILDERS)}"
            )
        recipe = replace(recipe, options=recipe.options._replace(builder=builder))
    profile = DeviceProfile(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        recipe=recipe,
        models=None if models == "all" else tuple(models),
        reach=reach,
        native=native,
        paper_column=data.get("paper_column"),
        hardware=dict(data.get("hardware", {})),
        label=label,
    )
    resolved = profile._resolve(
        recipe, data.get("precision"), data.get("threads"), delegate=data.get("delegate")
    )
    runtimes = {resolved.runtime.backend: resolved}
    choices = data.get("runtimes", {})
    if not isinstance(choices, dict):
        raise EdgeposeError(
            f"{label}: [runtimes] must hold one table per runtime, e.g. [runtimes.onnxruntime]"
        )
    for backend, table in choices.items():
        where = f"{label} [runtimes.{backend}]"
        unknown = sorted(set(table) - set(RUNTIME_CHOICE_KEYS)) if isinstance(table, dict) else ["?"]
        if unknown or "recipe" not in table:
            raise EdgeposeError(f"{where}: needs a recipe and may set only {', '.join(RUNTIME_CHOICE_KEYS)}")
        other = load_recipe(table["recipe"])
        if other.runtime.backend != backend:
            raise EdgeposeError(
                f"{where}: recipe {other.name!r} runs on {other.runtime.backend}, not {backend}"
            )
        runtimes[backend] = profile._resolve(
            other, table.get("precision"), table.get("threads"), delegate=table.get("delegate")
        )
    return replace(profile, recipe=resolved, runtimes=runtimes)


def load_profile(name_or_path: str) -> DeviceProfile:
    """Read a device profile by name (``devices/<name>.toml``) or path, resolved against its recipe."""
    file = shipped.read("devices", name_or_path)
    return parse_profile(file.data, file.label, file.name)
