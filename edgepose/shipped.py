"""The TOML files edgepose ships: export recipes, device profiles and the papers' published tables.

They live at the top of the repository (``export/``, ``devices/``, ``benchmarks/papers/``), the one
source; a wheel carries them inside the package under ``edgepose/_data/`` (mapped there at build
time, see pyproject.toml). A name is looked up in the shipped folder; a path to the user's own file
works everywhere a name does.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgepose.errors import EdgeposeError

try:  # Python 3.11+; the `tomli` backport has the same API for 3.10
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

# kind -> (folder in the repository, what a name stands for, what a file is, the noun for the list)
KINDS = {
    "recipes": ("export", "export target", "recipe file", "known targets"),
    "devices": ("devices", "device", "device profile", "known devices"),
    "papers": ("benchmarks/papers", "paper", "paper table", "known papers"),
}


@dataclass(frozen=True)
class TomlFile:
    """One parsed TOML file: its data, a short name, where it came from, and a hash of its bytes."""

    data: dict[str, Any]
    name: str  # the shipped name, or the file's stem for a user's file
    label: str  # how messages name it: ``export/rpi4.toml`` when shipped, else the path given
    sha256: str
    shipped: bool


def folder(kind: str) -> Path | None:
    """The folder holding the shipped files of ``kind``: inside the package (a wheel), else the repository."""
    sub = KINDS[kind][0]
    packaged = resources.files("edgepose") / "_data" / Path(sub).name
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[1] / sub
    return checkout if checkout.is_dir() else None


def names(kind: str) -> list[str]:
    """The names of the shipped files of ``kind``, sorted."""
    where = folder(kind)
    return sorted(p.stem for p in where.glob("*.toml")) if where else []


def looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or os.sep in text or "/" in text


def locate(kind: str, name_or_path: str | os.PathLike) -> tuple[Path, bool]:
    """The file for a shipped name or a user's path, and whether it is shipped; one-line errors."""
    text = str(name_or_path)
    _, what, file_noun, known_label = KINDS[kind]
    if looks_like_path(text) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise EdgeposeError(f"{file_noun} not found: {path}")
        return path, False
    known = names(kind)
    where = folder(kind)
    if text not in known or where is None:
        close = difflib.get_close_matches(text, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EdgeposeError(
            f"unknown {what} {text!r}{hint}; {known_label}: {', '.join(known) or 'none'}"
            " (or give the path of a .toml file)"
        )
    return where / f"{text}.toml", True


def read(kind: str, name_or_path: str | os.PathLike) -> TomlFile:
    """Locate and parse one file of ``kind``; bad TOML is one line naming the file."""
    path, shipped = locate(kind, name_or_path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgeposeError(f"{path}: not valid TOML: {exc}") from None
    label = f"{KINDS[kind][0]}/{path.name}" if shipped else str(path)
    return TomlFile(data, path.stem, label, hashlib.sha256(raw).hexdigest(), shipped)
