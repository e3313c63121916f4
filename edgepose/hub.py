"""Released checkpoints by name: resolve, download once into a cache, verify, then work offline.

``resolve_weights("litehrnet-18-coco-256x192")`` finds the catalog entry (:mod:`edgepose.models.catalog`)
and returns the cached file, downloading it the first time into ``$EDGEPOSE_HOME/weights/`` (default
``~/.cache/edgepose/weights/``):

- direct URLs through the standard library (no extra dependency), with a progress bar (``rich`` when
  it is installed, else plain lines on stderr), resume of a partial download (HTTP ``Range``), a
  checksum check (the catalog's full sha256 or OpenMMLab's 8-digit prefix) and an atomic rename: the
  file at its final path is always complete and verified;
- Google Drive ids through ``gdown`` (the optional ``weights`` extra) when installed; otherwise the
  message gives the link and the exact path to put the file at, and the file is accepted from there.

The full sha256 of every file is recorded in ``index.json`` beside the files the first time it is seen
and checked at each later use, which needs no network. A path that exists is used as a plain file.
The downloading itself uses only the standard library (torch reads the file later, not here).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepose import __version__
from edgepose.atomic import write_text
from edgepose.device.manifest import sha256_of
from edgepose.errors import EdgeposeError
from edgepose.models.catalog import Catalog, CatalogEntry, load_catalog

HOME_ENV = "EDGEPOSE_HOME"
DEFAULT_HOME = "~/.cache/edgepose"
INDEX_FILE = "index.json"
CHUNK = 1 << 16
TIMEOUT_S = 30.0  # per socket operation, not for the whole transfer
ATTEMPTS = 4  # a transfer cut part-way is resumed this many times in one call before giving up
WEIGHTS_EXTRA = "pip install 'edgepose[weights]'"


def edgepose_home() -> Path:
    """``$EDGEPOSE_HOME``, default ``~/.cache/edgepose``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def weights_dir(home: str | os.PathLike | None = None) -> Path:
    """The folder the checkpoints are cached in."""
    return (Path(home).expanduser() if home is not None else edgepose_home()) / "weights"


@dataclass(frozen=True)
class ResolvedWeights:
    """A checkpoint ready to load: where it is, its full sha256, and the catalog entry it came from."""

    path: Path
    kind: str  # "catalog" (resolved by name) or "file" (a path the user gave)
    sha256: str
    entry: CatalogEntry | None = None

    def manifest_record(self) -> dict[str, Any]:
        """The manifest's ``weights`` section for these weights (no host paths)."""
        record: dict[str, Any] = {"kind": self.kind, "file": self.path.name, "sha256": self.sha256}
        if self.entry is not None:
            e = self.entry
            record.update(
                name=e.name,
                dataset=e.dataset,
                input_size=list(e.input_size),
                url=e.manual_url,
                licence=e.licence,
                metric=e.metric,
                source=e.source,
            )
        return record


# --- the cache index: full sha256 of every file the first time it is seen ---------------------------


def _read_index(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):  # unreadable or torn: start again; files are re-hashed and re-checked
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _write_index(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    write_text(folder / INDEX_FILE, json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")


def _matches(digest: str, expected: str | None) -> bool:
    return expected is None or digest.startswith(expected)


def _expected_text(entry: CatalogEntry) -> str:
    kind = "sha256" if len(entry.sha256 or "") == 64 else "sha256 prefix"
    return f"{kind} {entry.sha256}"


@contextlib.contextmanager
def _locked(folder: Path, file: str) -> Iterator[None]:
    """One process at a time fetches a given file (POSIX advisory lock; a no-op where there is none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        handle = open(folder / f".{file}.lock", "a")  # closed by the with below
    except OSError:  # a read-only cache: nothing will be written there, so nothing to serialise
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- progress -----------------------------------------------------------------------------------


class _Progress:
    """A download progress bar: rich's when installed and stderr is a terminal, else plain lines."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.bar = self.task = None
        self.done = 0
        self.started = time.monotonic()

    def start(self, total: int | None, already: int) -> None:
        self.done = already
        if not self.enabled:
            return
        if self.bar is not None:  # a resumed attempt: same bar
            self.bar.update(self.task, total=total, completed=already)
            return
        try:
            if not sys.stderr.isatty():
                raise ImportError
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
        except ImportError:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            resume = f", resuming at {already / 1e6:.1f} MB" if already else ""
            print(f"edgepose: downloading {self.label}{size}{resume}", file=sys.stderr, flush=True)
            return
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=total, completed=already)

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def close(self, ok: bool) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.enabled and ok:
            seconds = time.monotonic() - self.started
            print(
                f"edgepose: downloaded {self.label}: {self.done / 1e6:.1f} MB in {seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )


# --- HTTP download with resume --------------------------------------------------------------------


class _Retry(Exception):
    """The transfer broke part-way: resume from what is on disk."""


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else None


def _http_attempt(url: str, part: Path, progress: _Progress) -> None:
    """One request: append to ``part`` from its current size (or start over); raise _Retry if cut."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"edgepose/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is (at least) the whole file
            return
        raise
    except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:  # cut before the headers
        raise _Retry(_why(exc)) from None
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if response.status == 206 and _content_range_start(response.headers.get("Content-Range")) == have:
            mode, total = "ab", (have + length if length is not None else None)
        else:  # a full body (the first request, or a server that ignores Range): start over
            mode, total, have = "wb", length, 0
        progress.start(total, have)
        written = have
        try:
            out = open(part, mode)
        except OSError as exc:
            raise EdgeposeError(f"cannot write {part}: {exc.strerror}") from None
        with out:
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.HTTPException, OSError) as exc:  # IncompleteRead, reset, timeout
                    raise _Retry(_why(exc)) from None
                if not block:
                    break
                try:
                    out.write(block)
                except OSError as exc:  # a full disk is not worth retrying
                    raise EdgeposeError(f"cannot write {part}: {exc.strerror}") from None
                written += len(block)
                progress.advance(len(block))
            out.flush()
            os.fsync(out.fileno())
    if total is not None and written < total:
        raise _Retry(f"connection closed after {written} of {total} bytes")


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        return f"{text}: offline, or the host is unreachable"
    return str(exc) or type(exc).__name__


def _transfer(url: str, part: Path, label: str, show: bool) -> None:
    """Download ``url`` into ``part``, resuming from what is there and after each cut connection."""
    progress = _Progress(label, show)
    ok = False
    try:
        for attempt in range(ATTEMPTS):
            try:
                _http_attempt(url, part, progress)
                ok = True
                return
            except _Retry as exc:
                if attempt == ATTEMPTS - 1:
                    raise EdgeposeError(f"the transfer broke {ATTEMPTS} times, last: {exc}") from None
    finally:
        progress.close(ok)


def _check_payload(path: Path, what: str) -> None:
    """A web page saved in place of a checkpoint (a login or quota page) is refused before publishing."""
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head[:1] == b"<":
        path.unlink()
        raise EdgeposeError(f"{what} sent a web page, not a checkpoint (a login, quota or error page)")


def _download_url(entry: CatalogEntry, url: str, part: Path, show: bool) -> str:
    """Download ``url`` into ``part`` (resuming a partial one) and verify it; return its sha256."""
    resumed = part.exists() and part.stat().st_size > 0
    _transfer(url, part, entry.name, show)
    digest = sha256_of(part)
    if not _matches(digest, entry.sha256) and resumed:
        # The part on disk may be from another file (an older catalog): start over once.
        part.unlink()
        _transfer(url, part, entry.name, show)
        digest = sha256_of(part)
    if not _matches(digest, entry.sha256):
        part.unlink()  # our own download, and wrong: nothing to resume from
        raise EdgeposeError(
            f"{url} is not the catalogued file (sha256 {digest[:16]}..., expected "
            f"{_expected_text(entry)}); removed the download"
        )
    _check_payload(part, url)
    return digest


def _gdown_why(exc: Exception) -> str:
    """gdown's failure in a few words (requests' connection errors run to several hundred characters)."""
    if type(exc).__name__ in ("ConnectionError", "NameResolutionError", "MaxRetryError", "Timeout"):
        return "offline, or Google Drive is unreachable"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= 160 else first[:157] + "..."


def _fetch_gdrive(entry: CatalogEntry, folder: Path, dest: Path, show: bool) -> Path:
    """Download a Google Drive file with gdown into a staging folder of its own; return that file."""
    manual = f"download {entry.gdrive_url} by hand and put it at {dest}"
    try:
        import gdown
    except ImportError:
        raise EdgeposeError(
            f"{entry.name} is on Google Drive: `{WEIGHTS_EXTRA}` lets edgepose fetch it, or {manual}"
        ) from None
    staging = folder / ".gdown"  # gdown keeps its own temporary files beside its output
    staging.mkdir(exist_ok=True)
    out = staging / entry.file
    try:
        got = gdown.download(id=entry.gdrive, output=str(out), quiet=not show, resume=True)
    except Exception as exc:  # gdown's own errors, requests', OSError: all mean "did not get it"
        raise EdgeposeError(
            f"cannot download {entry.name} from Google Drive ({_gdown_why(exc)}): {manual}"
        ) from None
    if not got or not out.is_file():
        raise EdgeposeError(f"cannot download {entry.name} from Google Drive: {manual}")
    _check_payload(out, f"Google Drive ({entry.gdrive_url})")
    return out


def cached_path(entry: CatalogEntry, home: str | os.PathLike | None = None) -> Path:
    """Where ``entry``'s file lives (or will) in the cache."""
    return weights_dir(home) / entry.file


def _check_cached(
    entry: CatalogEntry, path: Path, folder: Path, origin: str, digest: str | None = None
) -> str:
    """Hash the cached file; check it against the index (if seen before) or the catalog; record it."""
    digest = digest or sha256_of(path)
    with _locked(folder, INDEX_FILE):
        return _check_and_record(entry, path, folder, origin, digest)


def _check_and_record(entry: CatalogEntry, path: Path, folder: Path, origin: str, digest: str) -> str:
    index = _read_index(folder)
    seen = index.get(entry.file)
    if seen and seen.get("sha256") not in (None, digest):
        raise EdgeposeError(
            f"{path} has changed since it was first seen (sha256 {digest[:16]}..., recorded "
            f"{seen['sha256'][:16]}...): delete it and edgepose downloads it again"
        )
    if not _matches(digest, entry.sha256):
        raise EdgeposeError(
            f"{path} is not the catalogued {entry.name} (sha256 {digest[:16]}..., expected "
            f"{_expected_text(entry)}): delete it, then fetch {entry.manual_url} again"
        )
    if not seen:
        index[entry.file] = {
            "name": entry.name,
            "sha256": digest,
            "size": path.stat().st_size,
            "origin": origin,
            "first_seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            _write_index(folder, index)
        except OSError as exc:  # a read-only cache still works; it just cannot remember
            print(
                f"edgepose: warning: cannot record the sha256 of {entry.file} in {folder / INDEX_FILE} "
                f"({exc.strerror}); it is checked against the catalog only",
                file=sys.stderr,
            )
    return digest


def fetch(
    entry: CatalogEntry,
    home: str | os.PathLike | None = None,
    progress: bool = True,
    download: bool = True,
) -> tuple[Path, str]:
    """Make sure ``entry``'s file is in the cache and verified; return (path, full sha256).

    A file already there (downloaded before, or put there by hand) is checked offline. Otherwise it is
    downloaded (``download=False`` raises instead), verified, and moved into place atomically. Every
    failure is one :class:`EdgeposeError` line naming the URL to fetch by hand and the path to put it at.
    """
    folder = weights_dir(home)
    dest = folder / entry.file
    if dest.is_file():
        return dest, _check_cached(entry, dest, folder, "found in the cache")
    manual = f"fetch {entry.manual_url} by hand and put it at {dest}"
    if not download:
        raise EdgeposeError(f"{entry.name} is not downloaded yet: {manual}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeposeError(f"cannot create the weights cache {folder}: {exc.strerror}") from None
    with _locked(folder, entry.file):
        if dest.is_file():  # another process finished it while we waited
            return dest, _check_cached(entry, dest, folder, "found in the cache")
        if entry.urls:
            part = folder / f"{entry.file}.part"
            errors = []
            for url in entry.urls:
                try:
                    digest = _download_url(entry, url, part, progress)
                except (urllib.error.URLError, OSError, EdgeposeError) as exc:
                    errors.append(f"{_why(exc)} ({url})")
                    continue
                os.replace(part, dest)
                return dest, _check_cached(entry, dest, folder, url, digest)
            raise EdgeposeError(f"cannot download {entry.name}: {'; '.join(errors)}; {manual}")
        got = _fetch_gdrive(entry, folder, dest, progress)
        os.replace(got, dest)
        return dest, _check_cached(entry, dest, folder, f"gdrive:{entry.gdrive}")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith((".pth", ".pt", ".tar", ".pkl", ".ckpt"))


def resolve_weights(
    name_or_path: str | os.PathLike,
    model: str | None = None,
    dataset: str | None = None,
    *,
    catalog: Catalog | None = None,
    home: str | os.PathLike | None = None,
    progress: bool = True,
    download: bool = True,
) -> ResolvedWeights:
    """A checkpoint file by path, or a released checkpoint by catalog name (downloaded on first use).

    ``model`` / ``dataset``, when given, must be what a catalog entry was trained for; a mismatch is one
    line that names the entries that do fit. A path is not checked here: loading it does that
    (:func:`edgepose.models.load_weights`, strictly).
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_file():
            raise EdgeposeError(f"--weights {text}: a folder, not a checkpoint file")
        return ResolvedWeights(path=path.resolve(), kind="file", sha256=sha256_of(path))
    catalog = catalog or load_catalog()
    entry = catalog.find(text)
    if entry is None:
        if _looks_like_path(text):
            raise EdgeposeError(f"checkpoint not found: {text} (and no released weights have that name)")
        catalog.get(text)  # raises the did-you-mean
    assert entry is not None
    wrong_model = model is not None and entry.model != model
    wrong_dataset = dataset is not None and entry.dataset != dataset
    if wrong_model or wrong_dataset:
        wanted = model or entry.model
        fits = [e.name for e in catalog.for_model(wanted, dataset)]
        wanted_text = f"{wanted} ({dataset})" if dataset else wanted
        hint = (
            f"released weights for {wanted_text}: {', '.join(fits)}"
            if fits
            else f"none is released for {wanted_text}"
        )
        raise EdgeposeError(
            f"weights {entry.name} are for {entry.model} ({entry.dataset}), not {wanted_text}; {hint}"
        )
    file, digest = fetch(entry, home=home, progress=progress, download=download)
    return ResolvedWeights(path=file, kind="catalog", sha256=digest, entry=entry)


def cache_listing(catalog: Catalog | None = None, home: str | os.PathLike | None = None) -> list[dict]:
    """One JSON-ready row per catalog entry: what it is, where from, and whether it is cached."""
    catalog = catalog or load_catalog()
    folder = weights_dir(home)
    index = _read_index(folder)
    rows = []
    for e in catalog.entries:
        path = folder / e.file
        cached = path.is_file()
        rows.append(
            {
                "name": e.name,
                "model": e.model,
                "dataset": e.dataset,
                "input_size": list(e.input_size),
                "host": e.host,
                "url": e.manual_url,
                "urls": list(e.urls),
                "gdrive": e.gdrive,
                "file": e.file,
                "sha256": (index.get(e.file) or {}).get("sha256") if cached else None,
                "expected_sha256": e.sha256,
                "cached": cached,
                "size": path.stat().st_size if cached else None,
                "path": str(path),
                "metric": e.metric,
                "source": e.source,
                "licence": e.licence,
                "note": e.note,
            }
        )
    return rows


def uncatalogued_files(catalog: Catalog | None = None, home: str | os.PathLike | None = None) -> list[Path]:
    """Files in the cache folder that no catalog entry names (a user's own, or an older catalog's)."""
    catalog = catalog or load_catalog()
    folder = weights_dir(home)
    if not folder.is_dir():
        return []
    known = {e.file for e in catalog.entries} | {INDEX_FILE}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in known and not p.name.endswith(".part")
    )
