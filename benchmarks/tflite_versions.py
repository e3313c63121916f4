"""Which TFLite runtimes have XNNPACK's cliffs: one-layer files timed in any installed runtime.

``--make DIR`` (needs this project's venv) writes one-layer .tflite files, fp32 and int8, from LitePose's
shapes (96 channels, 64x64, stride 1, random seeded weights): a 5x5 and a 7x7 depthwise conv (+ ReLU6),
the 7x7 split by ``edgepose.export.dwsplit`` (default layout, and ``columns``: no dilated tiles), a 4x4 stride-2 transposed conv
(24 -> 24 channels) and the same as a sub-pixel conv (``edgepose.export.subpixel``).
``--time DIR`` times them in whichever runtime imports (``ai_edge_litert``, else ``tflite_runtime``):
default XNNPACK delegate, 1 thread, interleaved rounds, min and median; a file the runtime cannot load
(an op version newer than it knows) is recorded as an error. It runs under Python 3.7+ with
numpy only, so an old runtime can be installed next to it without touching the project's venv:

    .venv/bin/python benchmarks/tflite_versions.py --make /tmp/layers
    python3 -m venv /tmp/np1 && /tmp/np1/bin/pip install "numpy<2"
    /tmp/np1/bin/pip install --no-deps --target /tmp/rt-1.0.1 ai-edge-litert==1.0.1
    PYTHONPATH=/tmp/rt-1.0.1 /tmp/np1/bin/python benchmarks/tflite_versions.py --time /tmp/layers
"""

import argparse
import json
import os
import statistics
import sys
import time

FILES = ("dw5", "dw7", "dw7_split", "dw7_columns", "tconv", "tconv_subpixel")


def make(folder):
    import torch
    from torch import nn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from dwsplit_candidates import convert, quantize_layer

    from edgepose.export import dwsplit, subpixel

    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    layers = {}
    for k in (5, 7):
        layers[f"dw{k}"] = (nn.Sequential(nn.Conv2d(96, 96, k, 1, k // 2, groups=96), nn.ReLU6()), 96)
    layers["dw7_split"] = (dwsplit.split_depthwise(layers["dw7"][0])[0], 96)
    layers["dw7_columns"] = (dwsplit.split_depthwise(layers["dw7"][0], "columns")[0], 96)  # no dilation
    layers["tconv"] = (nn.Sequential(nn.ConvTranspose2d(24, 24, 4, 2, 1), nn.ReLU()), 24)
    layers["tconv_subpixel"] = (subpixel.rewrite_deconvs(layers["tconv"][0])[0], 24)
    for name, (module, channels) in layers.items():
        shape = (1, 64, 64, channels)
        fp32 = convert(module.eval(), shape)
        for precision, data in (("fp32", fp32), ("int8", quantize_layer(fp32, shape))):
            with open(os.path.join(folder, f"{name}_{precision}.tflite"), "wb") as f:
                f.write(data)


def runtime():
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert " + getattr(ai_edge_litert, "__version__", "?")
    except ImportError:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime " + tflite_runtime.__version__


def time_all(folder, rounds, runs):
    import numpy as np

    Interpreter, version = runtime()
    interpreters, samples = {}, {}
    for name in FILES:
        for precision in ("fp32", "int8"):
            key = f"{name}_{precision}"
            try:
                it = Interpreter(model_path=os.path.join(folder, key + ".tflite"), num_threads=1)
                it.allocate_tensors()
                for d in it.get_input_details():
                    rng = np.random.default_rng(0)
                    if d["dtype"] == np.float32:
                        x = rng.standard_normal(d["shape"]).astype(np.float32)
                    else:
                        x = rng.integers(-128, 127, d["shape"]).astype(d["dtype"])
                    it.set_tensor(d["index"], x)
                it.invoke()
                interpreters[key], samples[key] = it, []
            except Exception as exc:  # an old runtime refusing a newer op version: recorded
                samples[key] = str(exc).splitlines()[0][:80]
    for _ in range(rounds):
        for key, it in interpreters.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                it.invoke()
                samples[key].append((time.perf_counter() - t0) * 1e3)
    result = {}
    for key, values in samples.items():
        if isinstance(values, list):
            result[key] = {"min_ms": min(values), "median_ms": statistics.median(values)}
        else:
            result[key] = {"error": values}
    return {"runtime": version, "load_avg_1m": os.getloadavg()[0], "layers": result}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make", metavar="DIR")
    ap.add_argument("--time", metavar="DIR")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="append the result as one JSON line to this file")
    args = ap.parse_args(argv)
    if args.make:
        make(args.make)
    if args.time:
        result = time_all(args.time, args.rounds, args.runs)
        cells = []
        for key, figures in result["layers"].items():
            value = "{:.2f}".format(figures["min_ms"]) if "min_ms" in figures else "error"
            cells.append(f"{key}={value}")
        print("{} (load {:.1f}): {}".format(result["runtime"], result["load_avg_1m"], " ".join(cells)))
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
