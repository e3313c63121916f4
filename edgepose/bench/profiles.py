"""Device profiles (``devices/<name>.toml``): hardware, runtime settings, export recipe and how to reach it.

Users add a device by adding a file; ``load_profile`` also accepts a path to a TOML file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepose.errors import EdgeposeError

try:  # Python 3.11+; the `tomli` backport has the same API for 3.10
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

REACH_METHODS = ("local", "ssh", "adb")


def devices_dir() -> Path:
    """The repository's ``devices/`` folder (next to the package in an editable install)."""
    return Path(__file__).resolve().parents[2] / "devices"


@dataclass(frozen=True)
class DeviceProfile:
    """One device: what it is, which recipe and runtime settings it uses, and how to reach it."""

    name: str
    description: str
    recipe: str
    precision: str
    models: tuple[str, ...] | None  # None: every registered model
    backend: str
    threads: int | None
    delegate: str | None
    reach: str
    paper_column: str | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    reach_options: dict[str, Any] = field(default_factory=dict)
    native: dict[str, Any] = field(default_factory=dict)
    path: str = ""


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error is an EdgeposeError naming the file."""
    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgeposeError(f"{path}: not valid TOML: {exc}") from None


def list_profiles() -> list[str]:
    """Names of the profiles shipped in ``devices/``."""
    return sorted(p.stem for p in devices_dir().glob("*.toml"))


def _resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise EdgeposeError(f"device profile {name_or_path} does not exist")
        return path
    candidate = devices_dir() / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = list_profiles()
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise EdgeposeError(
        f"unknown device {name_or_path!r}{hint}; known devices: {', '.join(known)} "
        f"(or pass a path to a TOML profile)"
    )


def load_profile(name_or_path: str) -> DeviceProfile:
    """Read a device profile by name (``devices/<name>.toml``) or path, checking the fields it needs."""
    path = _resolve(name_or_path)
    data = read_toml(path)
    for key in ("recipe", "runtime", "reach"):
        if key not in data:
            raise EdgeposeError(f"{path}: device profile needs a {key!r} entry")
    runtime = dict(data["runtime"])
    reach = dict(data["reach"])
    method = reach.get("method", "local")
    if method not in REACH_METHODS:
        raise EdgeposeError(f"{path}: reach.method must be one of {', '.join(REACH_METHODS)}, got {method!r}")
    models = data.get("models", "all")
    if models != "all" and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
        raise EdgeposeError(f'{path}: models must be "all" or a list of model names')
    threads = runtime.get("threads")
    return DeviceProfile(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        recipe=data["recipe"],
        precision=data.get("precision", "fp32"),
        models=None if models == "all" else tuple(models),
        backend=runtime.get("backend", ""),
        threads=int(threads) if threads else None,
        delegate=runtime.get("delegate"),
        reach=method,
        paper_column=data.get("paper_column"),
        hardware=dict(data.get("hardware", {})),
        runtime=runtime,
        reach_options=reach,
        native=dict(data.get("native", {})),
        path=str(path),
    )
