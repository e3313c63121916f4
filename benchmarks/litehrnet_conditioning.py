"""How well-conditioned random-weight Lite-HRNet is: with near-neutral gates (the init) and full-strength ones.

An untrained network is what every parity test runs on, so its sensitivity to rounding decides what
those tests can see. For Lite-HRNet-18 and -30 (256x192, seeds 0-2) this measures, on the astronaut
photo: the largest heatmap value; how far PyTorch fp32 is from float64 (max abs diff); the SQNR of the
output when the input gets Gaussian noise of std 1e-2 (an input SQNR of about 40 dB); and a PyTorch
int8 emulation (per-channel int8 weights, every layer output rounded to 8 bits over its min/max on
calibration crops). "full-strength" sets the init's gate gains to 1 (Kaiming logits, as a plain
random init has them). Writes ``<out>/litehrnet_conditioning.{json,md}``.

    .venv/bin/python benchmarks/litehrnet_conditioning.py [--seeds 0 1 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_common import save_result
from torch import nn

from edgepose.device.machine import host_info
from edgepose.export.calibration import load_calibration, write_sample_images
from edgepose.export.parity import sample_input
from edgepose.models import build_model
from edgepose.models import litehrnet as lh

SIZE = (256, 192)
INITS = {"near-neutral gates (the init)": None, "full-strength gates": (1.0, 1.0)}


def sqnr(ref: torch.Tensor, got: torch.Tensor) -> float:
    ref, got = ref.double(), got.double()
    return float(10 * torch.log10(ref.pow(2).sum() / (got - ref).pow(2).sum()))


def _quantisable(model: nn.Module) -> list[nn.Module]:
    """Leaf modules whose outputs an int8 file stores (a bias-free conv is fused with the BN after it)."""
    return [
        m
        for m in model.modules()
        if not list(m.children()) and not (isinstance(m, nn.Conv2d) and m.bias is None)
    ]


@torch.no_grad()
def int8_emulation(model: nn.Module, calib: torch.Tensor, x: torch.Tensor) -> float:
    """SQNR of a PyTorch int8 emulation of ``model`` on ``x``: ranges are min/max over ``calib``."""
    ranges: dict[int, tuple[float, float]] = {}

    def record(module, _inputs, out):
        lo, hi = ranges.get(id(module), (0.0, 0.0))
        ranges[id(module)] = (min(lo, float(out.min())), max(hi, float(out.max())))

    hooks = [m.register_forward_hook(record) for m in _quantisable(model)]
    for i in range(0, len(calib), 4):
        model(calib[i : i + 4])
    for h in hooks:
        h.remove()
    emulated = copy.deepcopy(model)
    for conv in emulated.modules():
        if isinstance(conv, nn.Conv2d):
            step = conv.weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
            conv.weight.copy_(torch.round(conv.weight / step) * step)

    def rounding(key):
        lo, hi = ranges[key]
        step = max(hi - lo, 1e-6) / 255
        return lambda _m, _i, out: torch.round((out.clamp(lo, hi) - lo) / step) * step + lo

    for original, copied in zip(_quantisable(model), _quantisable(emulated)):
        copied.register_forward_hook(rounding(id(original)))
    return sqnr(model(x), emulated(x))


@torch.no_grad()
def measure(name: str, seed: int, gains, calib: torch.Tensor, x: torch.Tensor) -> dict:
    saved = lh.SE_LOGIT_GAIN, lh.CROSS_RESOLUTION_LOGIT_GAIN
    if gains is not None:
        lh.SE_LOGIT_GAIN, lh.CROSS_RESOLUTION_LOGIT_GAIN = gains
    try:
        torch.manual_seed(seed)
        model = build_model(name)
    finally:
        lh.SE_LOGIT_GAIN, lh.CROSS_RESOLUTION_LOGIT_GAIN = saved
    y = model(x)
    y64 = copy.deepcopy(model).double()(x.double())
    noise = torch.Generator().manual_seed(seed)
    noisy = model(x + 1e-2 * torch.randn(x.shape, generator=noise))
    return {
        "model": name,
        "seed": seed,
        "max_abs_output": float(y.abs().max()),
        "fp32_vs_fp64_max_abs_diff": float((y64 - y.double()).abs().max()),
        "sqnr_input_noise_1e-2_db": sqnr(y, noisy),
        "int8_emulation_sqnr_db": int8_emulation(model, calib, x),
    }


def markdown(result: dict) -> str:
    lines = [
        "# Random-weight Lite-HRNet conditioning (benchmarks/litehrnet_conditioning.py)",
        "",
        f"{result['date']}, {result['host']['cpu']}, astronaut photo at 256x192, "
        f"{result['calibration_images']} calibration crops for the int8 emulation.",
        "",
        "| init | model | seed | max output | fp32 vs fp64 | SQNR, input noise 1e-2 | int8 emulation |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for init, rows in result["rows"].items():
        for r in rows:
            lines.append(
                f"| {init} | {r['model']} | {r['seed']} | {r['max_abs_output']:.1f} | "
                f"{r['fp32_vs_fp64_max_abs_diff']:.1e} | {r['sqnr_input_noise_1e-2_db']:.1f} dB | "
                f"{r['int8_emulation_sqnr_db']:.1f} dB |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--calib-images", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    x = torch.from_numpy(sample_input(SIZE))
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_sample_images(Path(tmp), count=args.calib_images)
        calib = torch.from_numpy(np.ascontiguousarray(load_calibration(folder, SIZE, "top-down")))
    result = {
        "date": datetime.date.today().isoformat(),
        "host": host_info(),
        "calibration_images": args.calib_images,
        "rows": {
            init: [
                measure(name, seed, gains, calib, x)
                for name in ("litehrnet-18", "litehrnet-30")
                for seed in args.seeds
            ]
            for init, gains in INITS.items()
        },
    }
    save_result(args.out, "litehrnet_conditioning", result, markdown(result))


if __name__ == "__main__":
    main()
