"""How the bench reaches a device: one interface, three transports (this machine, ssh, adb).

A profile's ``reach.method`` picks the transport; the command line fills in the address (``--host``
for ssh, ``--adb`` for a phone). Without an address a profile runs here, on this machine, and its
records say so (``on_device`` false, this machine's CPU), never passing for the device.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgepose.bench.profiles import DeviceProfile
from edgepose.bench.remote import AdbTarget, SshTarget
from edgepose.device import machine
from edgepose.device.formats import model_files
from edgepose.errors import EdgeposeError

_HOST_INFO_SCRIPT = (
    "import json,sys; sys.path.insert(0, '.'); from edgepose_device.machine import host_info; "
    "print(json.dumps(host_info()))"
)


class Transport:
    """Push an artifact folder to where it runs, run commands there, fetch files back."""

    reached = "local"  # how the records say the device was reached
    on_device = False  # True when the commands run on the profile's device itself
    python: str | None = (
        sys.executable
    )  # the Python that runs edgepose_device there (None: none, e.g. a phone)

    def check(self) -> None:
        """Fail early, in one line, when the device cannot be reached."""

    def push(self, folder: Path) -> str:
        """Make ``folder`` available where commands run; returns its path there."""
        raise NotImplementedError

    def push_file(self, local: str | Path, remote: str) -> None:
        raise NotImplementedError

    def run(
        self, command: str | list[str], cwd: str, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run ``command`` in ``cwd`` there; text output captured (stderr passed through where local)."""
        raise NotImplementedError

    def fetch(self, remote: str, local: Path) -> Path | None:
        """Copy file ``remote`` to ``local``; None when it is not there."""
        raise NotImplementedError

    def host_info(self, remote_dir: str) -> dict[str, Any]:
        """The facts of the machine the commands run on, as that machine reports them."""
        raise NotImplementedError


class Local(Transport):
    """This machine: the artifact runs in place, in a fresh process (clean peak RSS, no torch)."""

    def __init__(self, profile: DeviceProfile) -> None:
        match = profile.hardware.get("match")
        self.on_device = profile.name == "host" or bool(match and match in machine.cpu_name())

    def push(self, folder: Path) -> str:
        return str(folder.resolve())  # commands run with the folder as their working directory

    def push_file(self, local: str | Path, remote: str) -> None:
        if str(local) != remote:
            raise EdgeposeError(f"cannot place {local} at {remote} on this machine")

    def run(self, command, cwd, timeout, check=True):
        argv = shlex.split(command) if isinstance(command, str) else command
        try:
            # stderr stays on the terminal: progress bars, and a child's own one-line error.
            proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, text=True, timeout=timeout)
        except FileNotFoundError:
            raise EdgeposeError(f"cannot run {argv[0]}: not found") from None
        except subprocess.TimeoutExpired:
            raise EdgeposeError(f"{argv[0]} did not finish within {timeout:g} s") from None
        if check and proc.returncode != 0:
            raise EdgeposeError(
                f"{Path(argv[0]).name} failed (exit {proc.returncode}; its error is printed above)"
            )
        return proc

    def fetch(self, remote, local):
        path = Path(remote)
        return path if path.is_file() else None

    def host_info(self, remote_dir):
        return machine.host_info()


class Remote(Transport):
    """A device reached through a target (:class:`SshTarget` or :class:`AdbTarget`): files go to ``reach.workdir``."""

    on_device = True

    def __init__(self, profile: DeviceProfile, target: SshTarget | AdbTarget, reached: str) -> None:
        self.target = target
        self.workdir = profile.reach.workdir
        self.reached = reached

    def check(self) -> None:
        self.target.check()

    def fetch(self, remote, local):
        try:
            return self.target.pull(remote, local)
        except EdgeposeError:
            return None


class Ssh(Remote):
    """A device over ssh (key authentication): the folder is copied to ``reach.workdir``."""

    def __init__(self, profile: DeviceProfile, target: SshTarget) -> None:
        super().__init__(profile, target, f"ssh {target.host}")
        self.python = profile.reach.python

    def push(self, folder: Path) -> str:
        remote = f"{self.workdir}/{folder.name}"
        print(f"[bench] {folder.name}: pushing to {self.target.host}:{remote}", file=sys.stderr)
        self.target.push_dir(folder, remote)
        return remote

    def push_file(self, local, remote):
        self.target.push_file(local, remote)
        self.target.run(["chmod", "755", remote])

    def run(self, command, cwd, timeout, check=True):
        text = command if isinstance(command, str) else shlex.join(command)
        return self.target.run(f"cd {shlex.quote(cwd)} && {text}", timeout=timeout, check=check)

    def host_info(self, remote_dir):
        proc = self.run(
            f"{shlex.quote(self.python)} -c {shlex.quote(_HOST_INFO_SCRIPT)}", remote_dir, 120, False
        )
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"cpu": f"unknown ({self.target.host})"}


class Adb(Remote):
    """An Android phone over adb: no Python there, only native tools (TFLite's benchmark_model)."""

    python = None

    def __init__(self, profile: DeviceProfile, target: AdbTarget) -> None:
        super().__init__(profile, target, f"adb {target.serial}")

    def push(self, folder: Path) -> str:
        remote = f"{self.workdir}/{folder.name}"
        self.target.shell(["mkdir", "-p", remote])
        for name in model_files():  # the phone needs the model file only
            if (folder / name).is_file():
                self.target.push(folder / name, f"{remote}/{name}")
        return remote

    def push_file(self, local, remote):
        self.target.push(local, remote)
        self.target.shell(["chmod", "755", remote])

    def run(self, command, cwd, timeout, check=True):
        text = command if isinstance(command, str) else shlex.join(command)
        out = self.target.shell(f"cd {shlex.quote(cwd)} && {text} 2>&1; echo exit=$?", timeout=timeout)
        body, _, code = out.rstrip().rpartition("exit=")
        proc = subprocess.CompletedProcess(text, int(code) if code.isdigit() else 1, body, "")
        if check and proc.returncode != 0:
            raise EdgeposeError(f"command failed on {self.target.serial} (exit {proc.returncode})")
        return proc

    def host_info(self, remote_dir):
        props = {
            key: self.target.shell(["getprop", prop], timeout=30).strip()
            for key, prop in (("cpu", "ro.board.platform"), ("model", "ro.product.model"),
                              ("android", "ro.build.version.release"))
        }  # fmt: skip
        return {"cpu": props["cpu"], "board": props["model"], "os": f"Android {props['android']}",
                "serial": self.target.serial}  # fmt: skip


def open_transport(
    profile: DeviceProfile, ssh: SshTarget | None = None, adb: AdbTarget | None = None
) -> Transport:
    """The transport the profile's reach asks for, with the address from the command line (none: here)."""
    if ssh and adb:
        raise EdgeposeError("give either --host (ssh) or --adb, not both")
    method = profile.reach.method
    if ssh is not None:
        if method != "ssh":
            raise EdgeposeError(
                f"{profile.name} is reached by {method}, not ssh ({profile.label}): drop --host"
            )
        return Ssh(profile, ssh)
    if adb is not None:
        if method != "adb":
            raise EdgeposeError(
                f"{profile.name} is reached by {method}, not adb ({profile.label}): drop --adb"
            )
        return Adb(profile, adb)
    return Local(profile)
