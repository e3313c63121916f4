"""Suite-wide settings: one torch thread per test worker (`make test` runs 2 workers on 2 cores), and
each distinct TFLite conversion or quantisation run once per suite run."""

import fcntl
import hashlib
import os

import numpy as np
import pytest
import torch

from edgepose.device.atomic import write_bytes

torch.set_num_threads(1)

# The TFLite steps that take tens of seconds each; many tests export the same seeded model at one size.
TFLITE_STEPS = ("convert_fp32", "quantize_fp16", "quantize_int8")


def _fingerprint(h, value) -> None:
    """Feed everything a TFLite step reads from ``value`` into the hash ``h``."""
    if isinstance(value, torch.nn.Module):
        # The graph: every module's class and plain settings (kernel, stride, padding, split offsets...).
        for name, module in value.named_modules():
            settings = sorted(
                (k, repr(v))
                for k, v in vars(module).items()
                if not k.startswith("_") and isinstance(v, bool | int | float | str | tuple | list)
            )
            h.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}:{settings}".encode())
        for key, tensor in value.state_dict().items():
            h.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype}:{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, bytes):
        h.update(value)
    else:
        h.update(repr(value).encode())


def _run_once(step, folder):
    """``step`` keyed by its inputs: the first call per key runs (in its child process), later calls read
    the bytes it wrote. The steps are deterministic (tests/test_dwsplit.py checks the conversion), so a
    repeat returns exactly what running again would; every gate and test still runs on those bytes."""

    def run(*args):
        h = hashlib.sha256(step.__name__.encode())
        for arg in args:
            _fingerprint(h, arg)
        path = os.path.join(folder, h.hexdigest() + ".tflite")
        with open(path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker, wanting the same bytes, waits for them
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    return fh.read()
            data = step(*args)
            write_bytes(path, data)
            return data

    return run


@pytest.fixture(scope="session", autouse=True)
def _tflite_steps_once(tmp_path_factory):
    try:
        from edgepose.export import tflite
    except ImportError:  # a core install: no export extra, nothing to convert
        yield
        return
    base = tmp_path_factory.getbasetemp()
    # Shared by the xdist workers of this run (each has its own basetemp below the run's folder).
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tflite-steps"
    folder.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        for name in TFLITE_STEPS:
            mp.setattr(tflite, name, _run_once(getattr(tflite, name), str(folder)))
        yield
