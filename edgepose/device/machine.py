"""Facts about the machine a measurement ran on, recorded next to every number (Python 3.6, stdlib only)."""

import os
import platform
import sys

from .errors import EdgeposeError


def peak_rss_mb():
    """Peak resident set size of this process in MiB.

    Linux: VmHWM of /proc/self/status, because getrusage's ru_maxrss survives fork + exec and would
    report the (torch-sized) parent. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS).
    """
    status = _read_first("/proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _read_first(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (IOError, OSError):
        return None


def cpu_name():
    """A human-readable CPU / board name: the board model on ARM boards, the CPU model on x86."""
    board = _read_first("/proc/device-tree/model")
    if board:
        return board.rstrip("\x00")
    text = _read_first("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


# An ARM userland on an x86 machine is qemu's user-mode emulation (qemu-user-static + binfmt_misc). Two
# signs, either enough: the kernel's own architecture (/proc/sys/kernel/arch, recent kernels; uname -m is
# what qemu says) and the host's CPU lines in /proc/cpuinfo (passed through by QEMU before 8.2).
_X86_CPUINFO = ("GenuineIntel", "AuthenticAMD", "HygonGenuine")


def emulation(machine=None, cpuinfo=None, kernel_arch=None):
    """'qemu-aarch64' (qemu-<machine>) when this ARM process runs emulated on an x86 machine, else None."""
    machine = machine if machine is not None else platform.machine()
    if not machine.startswith(("aarch64", "arm")):
        return None
    kernel_arch = kernel_arch if kernel_arch is not None else (_read_first("/proc/sys/kernel/arch") or "")
    if kernel_arch in ("x86_64", "i386", "i686"):
        return "qemu-" + machine
    text = cpuinfo if cpuinfo is not None else (_read_first("/proc/cpuinfo") or "")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id" and value.strip() in _X86_CPUINFO:
            return "qemu-" + machine
    return None


def host_info():
    """Facts about the machine that ran the measurement (recorded next to every number)."""
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": "%s %s" % (platform.system(), platform.release()),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    info["emulated"] = emulation()  # e.g. "qemu-aarch64": its latency is not the device's
    if hasattr(os, "getloadavg"):  # a busy machine makes every number slower: keep the load with them
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    governor = _read_first("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        info["cpu_governor"] = governor
    temp = _read_first("/sys/class/thermal/thermal_zone0/temp")
    if temp and temp.lstrip("-").isdigit():
        info["temperature_c"] = int(temp) / 1000.0
    l4t = _read_first("/etc/nv_tegra_release")
    if l4t:
        info["l4t"] = l4t.splitlines()[0]
    return info


def pin_cpus(spec):
    """Pin this process to the CPUs in ``spec`` ('4-7' or '4,5,6,7'); returns the list pinned to."""
    cpus = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-")
                cpus.update(range(int(lo), int(hi) + 1))
            else:
                cpus.add(int(part))
        except ValueError:
            raise EdgeposeError("bad CPU list %r: expected e.g. 4-7 or 0,1" % spec) from None
    if not hasattr(os, "sched_setaffinity"):
        raise EdgeposeError("CPU pinning is not supported on this OS")
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise EdgeposeError("cannot pin to CPUs %s: %s" % (spec, exc)) from None
    return sorted(cpus)
