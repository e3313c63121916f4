"""ssh/scp against a real sshd on 127.0.0.1, and adb orchestration through a fake adb on PATH."""

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgepose.bench.native import benchmark_model_argv
from edgepose.bench.options import BenchOptions
from edgepose.bench.profiles import load_profile
from edgepose.bench.records import RecordWriter, read_records
from edgepose.bench.remote import AdbTarget, SshTarget
from edgepose.bench.runner import bench_artifact
from edgepose.bench.transports import open_transport
from edgepose.errors import EdgeposeError

DATA = Path(__file__).parent / "data"
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd on 127.0.0.1:<free port> that accepts only a key generated here; yields SshTarget kwargs."""
    if not SSHD or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("OpenSSH server/client not installed (apt-get install -y openssh-server openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port = free_port()
    cmd = [SSHD, "-D", "-e", "-f", "/dev/null", "-p", str(port), "-h", str(d / "host_key"),
           "-o", "ListenAddress=127.0.0.1", "-o", f"AuthorizedKeysFile={d / 'authorized_keys'}",
           "-o", f"PidFile={d / 'sshd.pid'}", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
           "-o", "UsePAM=no", "-o", "StrictModes=no", "-o", "PermitRootLogin=prohibit-password",
           "-o", "Subsystem=sftp internal-sftp"]  # fmt: skip
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    # OpenSSH is installed, so an sshd that exits or never listens is a failure, not a reason to skip.
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with {proc.returncode}: {(d / 'sshd.log').read_text().strip()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not listen on 127.0.0.1:{port} within 10 s")
            time.sleep(0.1)
    options = [f"UserKnownHostsFile={d / 'known_hosts'}", "StrictHostKeyChecking=no", "LogLevel=ERROR"]
    yield {
        "host": f"{getpass.getuser()}@127.0.0.1",
        "port": port,
        "identity": str(d / "user_key"),
        "options": options,
    }
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def target(cfg) -> SshTarget:
    return SshTarget(cfg["host"], port=cfg["port"], identity=cfg["identity"], options=cfg["options"])


def test_ssh_run_push_and_pull(sshd, tmp_path):
    t = target(sshd)
    t.check()
    assert t.run(["echo", "hello world"]).stdout == "hello world\n"
    local = tmp_path / "folder"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "a.txt").write_text("payload")
    remote = str(tmp_path / "remote" / "copy")
    t.push_dir(local, remote)
    t.push_dir(local, remote)  # pushing again replaces, does not nest
    assert (Path(remote) / "sub" / "a.txt").read_text() == "payload"
    assert not (Path(remote) / "folder").exists()
    back = t.pull(f"{remote}/sub/a.txt", tmp_path / "back.txt")
    assert back.read_text() == "payload"
    with pytest.raises(EdgeposeError, match=r"command failed on .*exit 3"):
        t.run("exit 3")


def test_unreachable_host_is_one_clear_line():
    t = SshTarget(f"{getpass.getuser()}@127.0.0.1", port=free_port(), connect_timeout=3,
                  options=["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"])  # fmt: skip
    if not shutil.which("ssh"):
        pytest.skip("ssh client not installed")
    with pytest.raises(EdgeposeError, match="cannot reach .*127.0.0.1 over ssh: .*[Cc]onnection refused"):
        t.check()
    with pytest.raises(EdgeposeError, match="bad ssh host"):
        SshTarget("-oProxyCommand=evil")


def test_ssh_command_line_is_batch_mode_with_timeout():
    cmd = SshTarget("pi@raspberrypi.local", port=2222, identity="/k").ssh_command(["ls", "a b"])
    assert cmd[0] == "ssh" and "BatchMode=yes" in cmd and "ConnectTimeout=10" in cmd
    assert (
        cmd[-2:] == ["pi@raspberrypi.local", "ls 'a b'"]
        and ["-p", "2222"] == cmd[cmd.index("-p") : cmd.index("-p") + 2]
    )


def test_an_ssh_config_file_goes_to_ssh_and_scp_and_keeps_its_own_host_key_policy(tmp_path, capsys):
    from edgepose.cli import main

    target = SshTarget("emulated-rpi4", config="/c/config")
    cmd = target.ssh_command("true")
    assert cmd[1:3] == ["-F", "/c/config"] and cmd[-2:] == ["emulated-rpi4", "true"]
    assert not any(o.startswith("StrictHostKeyChecking") for o in cmd)  # the config file decides
    assert target._common("-P")[:2] == ["-F", "/c/config"]  # scp reads the same file
    missing = tmp_path / "nope"
    code = main(["bench", "--device", "rpi4", "--host", "emulated-rpi4", "--ssh-config", str(missing)])
    assert (
        code == 2
        and capsys.readouterr().err.strip() == f"edgepose: error: --ssh-config {missing}: no such file"
    )


FAKE_ADB = r'''#!{python}
"""A stand-in for adb: /data/... paths live under $FAKE_ADB_ROOT; every call is logged."""
import os, shutil, subprocess, sys
root = os.environ["FAKE_ADB_ROOT"]
with open(os.path.join(root, "calls.log"), "a") as fh:
    fh.write(repr(sys.argv[1:]) + "\n")
args = sys.argv[1:]
assert args[:2] == ["-s", "SERIAL123"], args
cmd, rest = args[2], args[3:]
local = lambda p: root + p if p.startswith("/data/") else p
if cmd == "get-state":
    print("device")
elif cmd == "push":
    os.makedirs(os.path.dirname(local(rest[1])), exist_ok=True)
    shutil.copy(rest[0], local(rest[1]))
elif cmd == "pull":
    shutil.copy(local(rest[0]), rest[1])
elif cmd == "shell":
    if rest[0].startswith("getprop"):
        print({{"ro.board.platform": "msmnile", "ro.product.model": "LM-G810", "ro.build.version.release": "11"}}[rest[0].split()[1]])
    else:
        sys.exit(subprocess.call(rest[0].replace("/data/", root + "/data/"), shell=True))
else:
    sys.exit("unknown adb command " + cmd)
'''


def test_adb_bench_pushes_pins_runs_and_pulls(tmp_path, monkeypatch):
    root, bindir = tmp_path / "phone", tmp_path / "bin"
    root.mkdir()
    bindir.mkdir()
    (bindir / "adb").write_text(FAKE_ADB.format(python=sys.executable))
    # taskset f0 would fail on a 2-core host: a shim records the mask and runs the rest.
    (bindir / "taskset").write_text(f'#!/bin/sh\necho "$1" > {root}/taskset.mask\nshift\nexec "$@"\n')
    fake_tool = tmp_path / "benchmark_model"
    fake_tool.write_text(
        f'#!/bin/sh\necho "$@" > {root}/args.txt\ncat {DATA / "benchmark_model_sd855_gpu_adb.log"}\n'
    )
    for f in (bindir / "adb", bindir / "taskset", fake_tool):
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))

    folder = tmp_path / "litepose-s-crowdpose-448x448-snapdragon855-fp16"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"TFL3 not a real model")
    manifest = {"schema": "edgepose.manifest/1", "model": {"name": "litepose-s", "params": 2731240},
                "input": {"shape": [1, 448, 448, 3], "layout": "NHWC"}, "outputs": [], "format": "tflite",
                "precision": "fp16", "target": "snapdragon855",
                "artifacts": {"model.tflite": {"sha256": "ab"}}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))

    profile = load_profile("snapdragon855")
    opts = BenchOptions(runs=50, warmup=1, benchmark_model=str(fake_tool))
    out = tmp_path / "records.jsonl"
    transport = open_transport(profile, adb=AdbTarget("SERIAL123"))
    transport.check()
    records = bench_artifact(folder, profile, opts, RecordWriter(str(out)), transport)

    assert (root / "taskset.mask").read_text().strip() == "f0"
    args = (root / "args.txt").read_text()
    assert f"/data/local/tmp/edgepose/{folder.name}/model.tflite" in args and "--num_threads=4" in args
    assert (root / "data/local/tmp/edgepose" / folder.name / "model.tflite").is_file()
    calls = (root / "calls.log").read_text()
    assert "'push'" in calls and "'shell'" in calls and "manifest.json" not in calls  # the model file only
    (rec,) = read_records([out])
    assert rec == records[0]
    assert rec["device"] == "snapdragon855" and rec["on_device"] and rec["tool"] == "benchmark_model"
    assert rec["host"]["cpu"] == "msmnile" and rec["host"]["board"] == "LM-G810"
    assert rec["stats"]["median_ms"] == pytest.approx(29.931) and rec["input_size"] == [448, 448]
    assert rec["native"]["delegates"][0]["replaced_nodes"] == 231
    assert rec["reached"] == "adb SERIAL123" and rec["delegate"] == "xnnpack"
    with pytest.raises(EdgeposeError, match="snapdragon855 is reached by adb, not ssh"):
        open_transport(profile, ssh=SshTarget("pi@x"))


def test_adb_command_is_pinned_to_the_big_cores():
    opts = BenchOptions(runs=20, warmup=2)
    cmd = benchmark_model_argv(load_profile("snapdragon855"), opts, "/b", "/data/local/tmp/x/model.tflite")
    assert cmd[:3] == ["taskset", "f0", "/b"] and "--num_runs=20" in cmd and "--use_xnnpack=true" in cmd


def test_adb_without_a_device_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EdgeposeError, match="adb not found"):
        AdbTarget("X").check()
