"""Reaching a device: ssh/scp with the system OpenSSH client, and adb for Android phones.

Both use the plain command-line tools (no Python ssh library): key authentication only (``BatchMode``),
a connection timeout, and one-line errors that say which host failed and why.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgepose.errors import EdgeposeError


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no error output"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise EdgeposeError(f"{tool} not found on PATH: install it to reach the device")
    return path


class SshTarget:
    """A machine reachable as ``user@host`` over ssh (key auth), with scp for files."""

    def __init__(
        self,
        host: str,
        *,
        port: int | None = None,
        identity: str | None = None,
        options: Sequence[str] = (),
        config: str | None = None,
        connect_timeout: int = 10,
    ) -> None:
        if not host or host.startswith("-"):
            raise EdgeposeError(f"bad ssh host {host!r}: expected user@host")
        self.host = host
        self.port = port
        self.identity = identity
        self.config = config  # an ssh_config file (-F): host aliases, keys, known_hosts, as ssh reads them
        self.options = ["BatchMode=yes", f"ConnectTimeout={int(connect_timeout)}", *options]
        if not any(o.startswith("StrictHostKeyChecking") for o in options) and not config:
            self.options.append("StrictHostKeyChecking=accept-new")

    def _common(self, port_flag: str) -> list[str]:
        args = ["-F", self.config] if self.config else []
        for opt in self.options:
            args += ["-o", opt]
        if self.port:
            args += [port_flag, str(self.port)]
        if self.identity:
            args += ["-i", self.identity]
        return args

    def ssh_command(self, remote_cmd: Sequence[str] | str) -> list[str]:
        """The local argv that runs ``remote_cmd`` on the host (a list is shell-quoted for the remote shell)."""
        text = remote_cmd if isinstance(remote_cmd, str) else shlex.join(remote_cmd)
        return ["ssh", *self._common("-p"), self.host, text]

    def _scp(self, src: str, dst: str, timeout: float) -> None:
        cmd = ["scp", "-q", "-r", *self._common("-P"), src, dst]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise EdgeposeError(f"scp to/from {self.host} failed: {_last_line(proc.stderr)}")

    def run(self, remote_cmd: Sequence[str] | str, *, timeout: float = 600, check: bool = True):
        """Run a command on the host; returns the CompletedProcess (text). ssh's own failures are errors."""
        _require("ssh")
        try:
            proc = subprocess.run(
                self.ssh_command(remote_cmd), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise EdgeposeError(f"ssh {self.host}: command did not finish within {timeout:g} s") from None
        if proc.returncode == 255:  # ssh itself failed: unreachable, refused, auth
            raise EdgeposeError(f"cannot reach {self.host} over ssh: {_last_line(proc.stderr)}")
        if check and proc.returncode != 0:
            raise EdgeposeError(
                f"command failed on {self.host} (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}"
            )
        return proc

    def check(self) -> None:
        """Fail early, in one line, when the host cannot be reached with key authentication."""
        self.run(["true"], timeout=60)

    def push_dir(self, local: str | Path, remote: str, *, timeout: float = 600) -> None:
        """Copy folder ``local`` to ``remote`` on the host, replacing what was there."""
        _require("scp")
        parent = str(Path(remote).parent)
        self.run(f"rm -rf {shlex.quote(remote)} && mkdir -p {shlex.quote(parent)}")
        self._scp(str(local), f"{self.host}:{remote}", timeout)

    def push_file(self, local: str | Path, remote: str, *, timeout: float = 600) -> None:
        """Copy file ``local`` to path ``remote`` on the host (its folder is created)."""
        _require("scp")
        self.run(f"mkdir -p {shlex.quote(str(Path(remote).parent))}")
        self._scp(str(local), f"{self.host}:{remote}", timeout)

    def pull(self, remote: str, local: str | Path, *, timeout: float = 600) -> Path:
        """Copy file ``remote`` from the host to ``local``."""
        _require("scp")
        self._scp(f"{self.host}:{remote}", str(local), timeout)
        return Path(local)


class AdbTarget:
    """An Android device by serial, reached with ``adb`` (push, shell, pull)."""

    def __init__(self, serial: str, *, adb: str = "adb") -> None:
        if not serial:
            raise EdgeposeError("adb needs a device serial (see `adb devices`)")
        self.serial = serial
        self.adb = adb

    def adb_command(self, *args: str) -> list[str]:
        """The local argv of one adb call on this device."""
        return [self.adb, "-s", self.serial, *args]

    def _call(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        if not shutil.which(self.adb):
            raise EdgeposeError(f"{self.adb} not found: install Android platform-tools or pass --adb-path")
        try:
            proc = subprocess.run(self.adb_command(*args), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgeposeError(f"adb {self.serial}: {args[0]} did not finish within {timeout:g} s") from None
        if proc.returncode != 0:
            raise EdgeposeError(
                f"adb {args[0]} on {self.serial} failed: {_last_line(proc.stderr or proc.stdout)}"
            )
        return proc

    def check(self) -> None:
        """Fail early when the serial is not an attached, authorised device."""
        state = self._call("get-state", timeout=30).stdout.strip()
        if state != "device":
            raise EdgeposeError(f"adb device {self.serial} is {state or 'not ready'}, not 'device'")

    def push(self, local: str | Path, remote: str) -> None:
        self._call("push", str(local), remote)

    def shell(self, command: Sequence[str] | str, *, timeout: float = 600) -> str:
        """Run a shell command on the phone; returns its stdout."""
        text = command if isinstance(command, str) else shlex.join(command)
        return self._call("shell", text, timeout=timeout).stdout

    def pull(self, remote: str, local: str | Path) -> Path:
        self._call("pull", remote, str(local))
        return Path(local)
