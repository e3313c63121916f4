"""The catalog of released checkpoints: data in ``weights_catalog.toml``, looked up by name.

Each entry says where a released checkpoint is (direct URLs and/or a Google Drive id), what it is
called in the cache, what checksum it must have (full sha256, or the 8-hex-digit prefix OpenMMLab
puts in its file names), which registered model, keypoint set and input size it fits, its licence
and the page its accuracy comes from. This module only reads the data (no torch, no network);
:mod:`edgepose.hub` downloads and caches the files.

``$EDGEPOSE_WEIGHTS_CATALOG`` names a catalog file of the same format to use instead of the packaged
one (a private mirror, or the tests' local server).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

from edgepose.errors import EdgeposeError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CATALOG_ENV = "EDGEPOSE_WEIGHTS_CATALOG"
PACKAGED_CATALOG = "weights_catalog.toml"
GDRIVE_VIEW = "https://drive.google.com/file/d/{id}/view"

_REQUIRED = ("name", "model", "dataset", "input_size", "file", "metric", "source", "licence")
_OPTIONAL = ("urls", "gdrive", "sha256", "note")
_HEX = re.compile(r"[0-9a-f]{8,64}")
_SAFE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class CatalogEntry:
    """One released checkpoint."""

    name: str
    model: str  # registry name (edgepose.models.get_spec)
    dataset: str  # one of that spec's datasets
    input_size: tuple[int, int]  # (H, W) it was trained and evaluated at
    file: str  # its name in the cache folder
    metric: str  # the accuracy its source publishes for it
    source: str  # the page the links and the metric come from
    licence: str
    urls: tuple[str, ...] = ()
    gdrive: str | None = None
    sha256: str | None = None  # full digest or a prefix (lowercase hex), None when unpublished
    note: str = ""

    @property
    def gdrive_url(self) -> str | None:
        return GDRIVE_VIEW.format(id=self.gdrive) if self.gdrive else None

    @property
    def manual_url(self) -> str:
        """The link to give a user who must fetch the file by hand."""
        return self.urls[0] if self.urls else self.gdrive_url  # validation guarantees one of them

    @property
    def host(self) -> str:
        """Where it downloads from, in a word: 'openmmlab.com', 'Google Drive'."""
        if not self.urls:
            return "Google Drive"
        host = urlparse(self.urls[0]).hostname or "?"
        return host.removeprefix("download.").removeprefix("www.")

    @property
    def input_text(self) -> str:
        return f"{self.input_size[0]}x{self.input_size[1]}"


@dataclass(frozen=True)
class Catalog:
    """The entries of one catalog file, in file order."""

    entries: tuple[CatalogEntry, ...]
    path: str = field(default="")  # where it was read from (for messages)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def find(self, name: str) -> CatalogEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def get(self, name: str) -> CatalogEntry:
        """The entry called ``name``; an unknown name is one line with a did-you-mean."""
        entry = self.find(name)
        if entry is None:
            close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EdgeposeError(
                f"unknown weights {name!r}{hint}: not a file either; `edgepose weights` lists the "
                "released checkpoints, or pass the path of a checkpoint file"
            )
        return entry

    def for_model(self, model: str, dataset: str | None = None) -> list[CatalogEntry]:
        """The entries that load into ``model`` (and ``dataset``, when given)."""
        return [e for e in self.entries if e.model == model and (dataset is None or e.dataset == dataset)]


def parse_entry(raw: dict, where: str) -> CatalogEntry:
    """Check one [[weights]] table and turn it into an entry; a bad table is one clear error."""
    name = raw.get("name", "?")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    missing = [k for k in _REQUIRED if k not in raw]
    if unknown or missing:
        what = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown field(s) {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        raise EdgeposeError(f"{where}: weights entry {name!r}: {what}")
    size = raw["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise EdgeposeError(f"{where}: weights entry {name!r}: input_size must be [H, W], got {size!r}")
    urls = raw.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise EdgeposeError(f"{where}: weights entry {name!r}: urls must be a list of URLs")
    for url in urls:
        if urlparse(url).scheme not in ("http", "https"):
            raise EdgeposeError(f"{where}: weights entry {name!r}: not an http(s) URL: {url!r}")
    if not urls and not raw.get("gdrive"):
        raise EdgeposeError(f"{where}: weights entry {name!r}: needs urls or a gdrive id")
    sha = raw.get("sha256")
    if sha is not None and not _HEX.fullmatch(str(sha).lower()):
        raise EdgeposeError(f"{where}: weights entry {name!r}: sha256 must be 8-64 hex digits, got {sha!r}")
    if not _SAFE_FILE.fullmatch(raw["file"]):  # it becomes a path in the cache: no folders, no '..'
        raise EdgeposeError(f"{where}: weights entry {name!r}: bad file name {raw['file']!r}")
    return CatalogEntry(
        name=raw["name"],
        model=raw["model"],
        dataset=raw["dataset"],
        input_size=(size[0], size[1]),
        file=raw["file"],
        metric=raw["metric"],
        source=raw["source"],
        licence=raw["licence"],
        urls=tuple(urls),
        gdrive=raw.get("gdrive") or None,
        sha256=str(sha).lower() if sha is not None else None,
        note=raw.get("note", ""),
    )


def parse_catalog(text: str, where: str) -> Catalog:
    """Parse catalog TOML text (``where`` names it in messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EdgeposeError(f"{where}: not valid TOML: {exc}") from None
    entries = tuple(parse_entry(raw, where) for raw in data.get("weights", []))
    for attr in ("name", "file"):
        seen: set[str] = set()
        for e in entries:
            value = getattr(e, attr)
            if value in seen:
                raise EdgeposeError(f"{where}: two weights entries have the {attr} {value!r}")
            seen.add(value)
    return Catalog(entries, where)


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    """The catalog at ``path``, else ``$EDGEPOSE_WEIGHTS_CATALOG``, else the packaged one."""
    path = path or os.environ.get(CATALOG_ENV) or None
    if path is None:
        text = resources.files("edgepose.models").joinpath(PACKAGED_CATALOG).read_text(encoding="utf-8")
        return parse_catalog(text, PACKAGED_CATALOG)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EdgeposeError(f"cannot read the weights catalog {path}: {exc.strerror or exc}") from None
    return parse_catalog(text, str(path))
