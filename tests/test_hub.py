"""Released weights by name: download into the cache from a local HTTP server, verify, resume, go offline.

Everything is served from 127.0.0.1 by a thread of ``http.server`` (with HTTP Range support), with
checkpoints the tests make; nothing here reaches the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from edgepose.cli import main
from edgepose.errors import EdgeposeError
from edgepose.hub import fetch, resolve_weights, weights_dir
from edgepose.models import build_model, load_weights
from edgepose.models.catalog import CATALOG_ENV, parse_catalog


def _checkpoint(seed: int = 0, n: int = 96) -> bytes:
    """A small state_dict saved with torch.save, as bytes (~37 KB)."""
    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"w": torch.randn(n, n), "b": torch.randn(n)}, buf)
    return buf.getvalue()


class Server:
    """Serves ``files`` (path -> bytes) with Range support; logs each request's path and Range header.

    ``cut_once``: paths whose first response stops after half the body (the connection is closed).
    ``ignore_range``: paths for which Range is ignored (a full 200 response every time).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.ignore_range: set[str] = set()
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and self.path not in server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if self.path in server.cut_once:
                    server.cut_once.discard(self.path)
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def requests(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.log if p == path]


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _dead_port() -> int:
    """A port with nothing listening on it (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(name, url=None, sha256=None, gdrive=None, model="litepose-xs", dataset="crowdpose", file=None):
    lines = [
        "[[weights]]",
        f'name = "{name}"',
        f'model = "{model}"',
        f'dataset = "{dataset}"',
        "input_size = [256, 256]",
        f'file = "{file or name + ".pth"}"',
        'metric = "test"',
        'source = "https://example.org"',
        'licence = "MIT"',
    ]
    if url:
        lines.append(f'urls = ["{url}"]')
    if sha256:
        lines.append(f'sha256 = "{sha256}"')
    if gdrive:
        lines.append(f'gdrive = "{gdrive}"')
    return "\n".join(lines) + "\n"


def _catalog(*entries):
    return parse_catalog("\n".join(entries), "test-catalog.toml")


def _serve(server, name, data):
    path = f"/{name}.pth"
    server.files[path] = data
    return path, server.base + path


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_the_prefix_and_records_the_full_sha256(server, tmp_path, capsys):
    data = _checkpoint(1)
    path, url = _serve(server, "good", data)
    catalog = _catalog(_entry("good", url, sha256=_sha(data)[:8]))
    got = resolve_weights("good", catalog=catalog, home=tmp_path)
    assert got.kind == "catalog" and got.entry.name == "good"
    assert got.path == weights_dir(tmp_path) / "good.pth"
    assert got.path.read_bytes() == data and got.sha256 == _sha(data)
    assert server.requests(path) == [None]
    index = json.loads((weights_dir(tmp_path) / "index.json").read_text())["files"]
    assert index["good.pth"]["sha256"] == _sha(data) and index["good.pth"]["origin"] == url
    assert not list(weights_dir(tmp_path).glob("*.part"))
    assert "edgepose: downloading good" in capsys.readouterr().err  # the plain progress line
    record = got.manifest_record()
    assert record["kind"] == "catalog" and record["name"] == "good" and record["sha256"] == _sha(data)
    assert str(tmp_path) not in json.dumps(record)  # no host paths in the manifest


def test_a_full_sha256_is_checked_too(server, tmp_path):
    data = _checkpoint(2)
    _, url = _serve(server, "full", data)
    got = resolve_weights("full", catalog=_catalog(_entry("full", url, sha256=_sha(data))), home=tmp_path)
    assert got.sha256 == _sha(data)


def test_wrong_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    _, url = _serve(server, "wrong", _checkpoint(3))
    catalog = _catalog(_entry("wrong", url, sha256="00000000"))
    with pytest.raises(EdgeposeError) as err:
        resolve_weights("wrong", catalog=catalog, home=tmp_path)
    msg = str(err.value)
    assert "is not the catalogued file" in msg and "expected sha256 prefix 00000000" in msg
    assert f"fetch {url} by hand and put it at {weights_dir(tmp_path) / 'wrong.pth'}" in msg
    assert "\n" not in msg
    assert sorted(p.name for p in weights_dir(tmp_path).iterdir()) == [".wrong.pth.lock"]


def test_an_interrupted_transfer_resumes_with_range(server, tmp_path):
    data = _checkpoint(4)
    path, url = _serve(server, "cut", data)
    server.cut_once.add(path)
    got = resolve_weights("cut", catalog=_catalog(_entry("cut", url, sha256=_sha(data)[:8])), home=tmp_path)
    assert got.path.read_bytes() == data
    # First request cut after half the body; the second asks for exactly the rest.
    assert server.requests(path) == [None, f"bytes={len(data) // 2}-"]


def test_a_partial_download_from_an_earlier_run_is_resumed(server, tmp_path):
    data = _checkpoint(5)
    path, url = _serve(server, "partial", data)
    folder = weights_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "partial.pth.part").write_bytes(data[:1000])
    resolve_weights("partial", catalog=_catalog(_entry("partial", url, sha256=_sha(data)[:8])), home=tmp_path)
    assert (folder / "partial.pth").read_bytes() == data
    assert server.requests(path) == ["bytes=1000-"]


def test_a_server_that_ignores_range_restarts_the_file(server, tmp_path):
    data = _checkpoint(6)
    path, url = _serve(server, "norange", data)
    server.ignore_range.add(path)
    folder = weights_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "norange.pth.part").write_bytes(data[:1000])
    resolve_weights("norange", catalog=_catalog(_entry("norange", url, sha256=_sha(data)[:8])), home=tmp_path)
    assert (folder / "norange.pth").read_bytes() == data  # not the first 1000 bytes twice


def test_a_stale_partial_of_another_file_is_replaced(server, tmp_path):
    data = _checkpoint(7)
    path, url = _serve(server, "stale", data)
    folder = weights_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "stale.pth.part").write_bytes(b"\x80" * 1000)  # same length prefix, other bytes
    resolve_weights("stale", catalog=_catalog(_entry("stale", url, sha256=_sha(data)[:8])), home=tmp_path)
    assert (folder / "stale.pth").read_bytes() == data
    assert server.requests(path) == ["bytes=1000-", None]


def test_404_is_one_line_with_the_url_and_the_path(server, tmp_path):
    url = server.base + "/missing.pth"
    with pytest.raises(EdgeposeError) as err:
        resolve_weights("missing", catalog=_catalog(_entry("missing", url, sha256="12345678")), home=tmp_path)
    msg = str(err.value)
    dest = weights_dir(tmp_path) / "missing.pth"
    assert (
        msg
        == f"cannot download missing: HTTP 404 Not Found ({url}); fetch {url} by hand and put it at {dest}"
    )
    assert not dest.exists()


def test_offline_is_one_line_with_the_url_and_the_path(tmp_path):
    url = f"http://127.0.0.1:{_dead_port()}/offline.pth"
    with pytest.raises(EdgeposeError) as err:
        resolve_weights("offline", catalog=_catalog(_entry("offline", url)), home=tmp_path)
    msg = str(err.value)
    assert "Connection refused: offline, or the host is unreachable" in msg
    assert msg.endswith(f"fetch {url} by hand and put it at {weights_dir(tmp_path) / 'offline.pth'}")
    assert "\n" not in msg


def test_a_later_use_is_offline_and_checks_the_recorded_sha256(server, tmp_path):
    data = _checkpoint(8)
    path, url = _serve(server, "later", data)
    resolve_weights("later", catalog=_catalog(_entry("later", url, sha256=_sha(data)[:8])), home=tmp_path)
    assert len(server.requests(path)) == 1
    # Same name, and the host is now unreachable: the cached file is used without any request.
    offline = _catalog(_entry("later", f"http://127.0.0.1:{_dead_port()}/later.pth", sha256=_sha(data)[:8]))
    again = resolve_weights("later", catalog=offline, home=tmp_path)
    assert again.sha256 == _sha(data) and len(server.requests(path)) == 1
    # A cached file that changed afterwards is refused (and left alone).
    tampered = bytearray(data)
    tampered[-1] ^= 1
    again.path.write_bytes(bytes(tampered))
    with pytest.raises(EdgeposeError, match="has changed since it was first seen .* delete it"):
        resolve_weights("later", catalog=offline, home=tmp_path)
    assert again.path.read_bytes() == bytes(tampered)


def test_two_processes_fetching_one_file_download_it_once(server, tmp_path):
    data = _checkpoint(9, n=256)  # ~260 KB: long enough for the second to wait on the lock
    path, url = _serve(server, "race", data)
    catalog = _catalog(_entry("race", url, sha256=_sha(data)[:8]))
    results, errors = [], []

    def worker():
        try:
            results.append(fetch(catalog.get("race"), home=tmp_path, progress=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and [sha for _, sha in results] == [_sha(data)] * 2
    assert server.requests(path) == [None]


def test_a_web_page_is_not_accepted_as_a_checkpoint(server, tmp_path):
    page = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
    _, url = _serve(server, "page", page)
    with pytest.raises(EdgeposeError, match="sent a web page, not a checkpoint"):
        resolve_weights("page", catalog=_catalog(_entry("page", url)), home=tmp_path)
    assert not (weights_dir(tmp_path) / "page.pth").exists()


# --- Google Drive entries --------------------------------------------------------------------------


def test_drive_without_gdown_gives_the_link_and_accepts_a_file_put_there(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # `import gdown` raises ImportError
    catalog = _catalog(_entry("drive", gdrive="FILEID123"))
    dest = weights_dir(tmp_path) / "drive.pth"
    with pytest.raises(EdgeposeError) as err:
        resolve_weights("drive", catalog=catalog, home=tmp_path)
    msg = str(err.value)
    assert "pip install 'edgepose[weights]'" in msg
    assert msg.endswith(
        f"download https://drive.google.com/file/d/FILEID123/view by hand and put it at {dest}"
    )
    data = _checkpoint(10)
    dest.write_bytes(data)  # the user downloads it by hand
    got = resolve_weights("drive", catalog=catalog, home=tmp_path)
    assert got.sha256 == _sha(data)
    index = json.loads((weights_dir(tmp_path) / "index.json").read_text())["files"]
    assert index["drive.pth"]["sha256"] == _sha(data)  # recorded the first time it is seen


def test_drive_through_gdown(tmp_path, monkeypatch):
    data = _checkpoint(11)
    calls = []

    def download(id=None, output=None, quiet=False, resume=False, **_):
        calls.append((id, resume))
        with open(output, "wb") as f:
            f.write(data)
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    got = resolve_weights("drive", catalog=_catalog(_entry("drive", gdrive="FILEID")), home=tmp_path)
    assert calls == [("FILEID", True)] and got.path.read_bytes() == data
    assert not (weights_dir(tmp_path) / ".gdown" / "drive.pth").exists()  # moved into place


def test_a_gdown_failure_is_one_line(tmp_path, monkeypatch):
    def download(**_):
        raise RuntimeError("Too many users have viewed or downloaded this file recently.\nTry later.")

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    with pytest.raises(EdgeposeError) as err:
        resolve_weights("drive", catalog=_catalog(_entry("drive", gdrive="FILEID")), home=tmp_path)
    msg = str(err.value)
    assert msg.startswith("cannot download drive from Google Drive (Too many users have viewed")
    assert "\n" not in msg and not (weights_dir(tmp_path) / "drive.pth").exists()


def test_gdown_offline_is_short(tmp_path, monkeypatch):
    class ConnectionError(OSError):  # what requests raises, with a message of several hundred characters
        pass

    def download(**_):
        raise ConnectionError(
            "HTTPSConnectionPool(host='drive.google.com', port=443): Max retries " + "x" * 300
        )

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    with pytest.raises(EdgeposeError) as err:
        resolve_weights("drive", catalog=_catalog(_entry("drive", gdrive="FILEID")), home=tmp_path)
    assert str(err.value).startswith(
        "cannot download drive from Google Drive (offline, or Google Drive is unreachable): download "
    )


def test_gdown_takes_the_arguments_edgepose_passes():
    gdown = pytest.importorskip("gdown", reason="the optional `weights` extra is not installed")
    import inspect

    params = inspect.signature(gdown.download).parameters
    assert {"id", "output", "quiet", "resume"} <= set(params)


# --- names, paths, models ------------------------------------------------------------------------


def test_an_existing_path_is_a_file(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(_checkpoint(12))
    got = resolve_weights(str(path), catalog=_catalog())
    assert got.kind == "file" and got.entry is None and got.sha256 == _sha(path.read_bytes())
    assert got.manifest_record() == {"kind": "file", "file": "mine.pth", "sha256": got.sha256}


def test_unknown_names_and_missing_paths(tmp_path):
    catalog = _catalog(_entry("litepose-xs-crowdpose", "http://127.0.0.1:1/x.pth"))
    with pytest.raises(EdgeposeError, match="unknown weights 'litepose-xs-crowdpos' .did you mean"):
        resolve_weights("litepose-xs-crowdpos", catalog=catalog, home=tmp_path)
    with pytest.raises(EdgeposeError, match="checkpoint not found: nope/model.pth"):
        resolve_weights("nope/model.pth", catalog=catalog, home=tmp_path)
    with pytest.raises(EdgeposeError, match="a folder, not a checkpoint file"):
        resolve_weights(str(tmp_path), catalog=catalog, home=tmp_path)


def test_weights_for_another_model_name_those_that_fit(tmp_path):
    from edgepose.models.catalog import load_catalog

    with pytest.raises(EdgeposeError) as err:
        resolve_weights("litepose-s-crowdpose", model="litepose-xs", home=tmp_path, download=False)
    assert str(err.value) == (
        "weights litepose-s-crowdpose are for litepose-s (crowdpose), not litepose-xs; "
        "released weights for litepose-xs: litepose-xs-crowdpose"
    )
    with pytest.raises(
        EdgeposeError, match=r"not litepose-s \(mpii\); none is released for litepose-s \(mpii\)"
    ):
        resolve_weights("litepose-s-crowdpose", model="litepose-s", dataset="mpii", catalog=load_catalog())
    assert not weights_dir(tmp_path).exists()  # nothing was fetched


def test_resolved_by_name_then_loaded_into_the_model(server, tmp_path):
    torch.manual_seed(0)
    source = build_model("litepose-xs")
    buf = io.BytesIO()
    torch.save(source.state_dict(), buf)
    data = buf.getvalue()
    _, url = _serve(server, "xs", data)
    got = resolve_weights("xs", model="litepose-xs", catalog=_catalog(_entry("xs", url)), home=tmp_path)
    loaded = load_weights(build_model("litepose-xs"), got.path).state_dict()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


# --- the CLI -------------------------------------------------------------------------------------


def _cli_env(monkeypatch, tmp_path, text):
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    monkeypatch.setenv(CATALOG_ENV, str(path))
    monkeypatch.setenv("EDGEPOSE_HOME", str(tmp_path / "home"))


def test_cli_lists_fetches_and_shows_what_is_cached(server, tmp_path, monkeypatch, capsys):
    data = _checkpoint(13)
    _, url = _serve(server, "cli", data)
    _cli_env(
        monkeypatch,
        tmp_path,
        _entry("cli", url, sha256=_sha(data)[:8]) + _entry("other", gdrive="ID", model="litepose-s"),
    )
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "cli    litepose-xs  256x256    127.0.0.1     no" in out
    assert "other  litepose-s   256x256    Google Drive  no" in out
    assert main(["weights", "fetch", "cli", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"cli: {tmp_path / 'home' / 'weights' / 'cli.pth'} (sha256 {_sha(data)})"
    assert main(["weights", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["cli"]["cached"] and rows["cli"]["size"] == len(data) and rows["cli"]["sha256"] == _sha(data)
    assert not rows["other"]["cached"] and rows["other"]["url"] == "https://drive.google.com/file/d/ID/view"
    assert main(["weights", "--model", "litepose-s"]) == 0
    assert "cli " not in capsys.readouterr().out


def test_cli_errors_are_one_line_exit_2(server, tmp_path, monkeypatch, capsys):
    _cli_env(monkeypatch, tmp_path, _entry("gone", server.base + "/gone.pth"))
    assert main(["weights", "fetch", "gnoe"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("edgepose: error: unknown weights 'gnoe' (did you mean 'gone'?)")
        and err.count("\n") == 1
    )
    assert main(["weights", "fetch", "gone"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and err.count("\n") == 1
    assert main(["weights", "--model", "litehrnet-18"]) == 2
