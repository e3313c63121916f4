"""Which split of LitePose's 7x7 depthwise convs is fastest in TFLite (XNNPACK), and what int8 keeps.

Part ``layers``: every distinct 7x7 depthwise layer shape of the chosen LitePose models (channels,
input size, stride; the conv + ReLU6 of the network, random seeded weights), converted unsplit and
in every layout of ``edgepose.export.dwsplit``, to fp32 and to int8 (ai-edge-quantizer
static_wi8_ai8, calibrated on 8 random inputs), timed in ai-edge-litert with XNNPACK.
Part ``models``: each whole LitePose model (BN-folded, random seeded weights) unsplit and per layout:
TFLite fp32 and int8 (calibrated like ``edgepose export``: 16 crops of scikit-image photos), int8
SQNR and peak agreement against PyTorch fp32 on the parity photo, and latency. A layout other than
"none" also has the transposed convs rewritten as sub-pixel convs (``edgepose.export.subpixel``), as the
TFLite export does (``--no-subpixel``: the split alone); "none" is the export before issue #13.
Part ``onnx``: the same models as the ``onnx`` recipe's ONNX (opset 17) and the ``jetson`` recipe's
(opset 13, linted for TensorRT 8.2's parser), unsplit and per layout, timed in onnxruntime (CPU).
onnxruntime stands in for TensorRT here (no GPU on this host): it says whether the split graph
costs a runtime that has fast wide depthwise kernels, not what TensorRT would do.

Timing protocol (a shared 2-core host): every file is timed in interleaved rounds (each file once per
round, ``--runs`` calls each), at each of ``--threads``; median and p10 over all rounds; the 1-min
load average is recorded at the start and the end. Writes ``<out>/dwsplit_candidates.{json,md}``.

    .venv/bin/python benchmarks/dwsplit_candidates.py [--part layers|models|both] [--models litepose-xs,...]
        [--layouts none,columns,rows,centred,ring] [--threads 1,2] [--rounds 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_common import save_result
from tflite_ops import make_interpreter, p10
from torch import nn

from edgepose.device.machine import host_info
from edgepose.export import dwsplit, parity, subpixel
from edgepose.export import tflite as tfl
from edgepose.export.calibration import load_calibration, write_sample_images
from edgepose.export.fold import fold_batchnorm
from edgepose.models import build_model, get_spec

MODELS = ("litepose-xs", "litepose-s", "litepose-m", "litepose-l")
VARIANTS = ("none", *dwsplit.LAYOUTS)
NOT_TIMED = {"median_ms": float("nan"), "p10_ms": float("nan"), "calls": 0}


def ms(figures: dict) -> str:
    """``median (p10)`` in ms, or "not timed"."""
    if figures["calls"] == 0:
        return "not timed"
    return f"{figures['median_ms']:.1f} ({figures['p10_ms']:.1f})"


def layer_shapes(names: list[str]) -> dict[tuple[int, int, int], dict[str, int]]:
    """(channels, input side, stride) of every wide depthwise layer -> {model: how many}."""
    shapes: dict[tuple[int, int, int], dict[str, int]] = {}
    for name in names:
        model = build_model(name)
        h, w = get_spec(name).input_size
        seen: list = []

        def record(mod: nn.Module, inp: tuple, out: torch.Tensor, seen: list = seen) -> None:
            seen.append((mod, inp[0].shape))

        hooks = [m.register_forward_hook(record) for m in model.modules() if dwsplit.is_wide_depthwise(m)]
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w))
        for hook in hooks:
            hook.remove()
        for mod, shape in seen:
            key = (int(shape[1]), int(shape[2]), int(mod.stride[0]))
            shapes.setdefault(key, {})
            shapes[key][name] = shapes[key].get(name, 0) + 1
    return shapes


def convert(module: nn.Module, input_nhwc: tuple[int, ...]) -> bytes:
    """fp32 .tflite of an NCHW ``module`` with an NHWC input named ``input``."""
    import litert_torch

    edge = litert_torch.convert(
        tfl.ChannelsLast(module.eval(), ["out"]).eval(), sample_kwargs={"input": torch.zeros(input_nhwc)}
    )
    return edge.model_content()


def quantize_layer(fp32: bytes, input_nhwc: tuple[int, ...], samples: int = 8) -> bytes:
    """Full-integer int8 of a one-layer file, calibrated on random normal inputs."""
    from ai_edge_quantizer import quantizer, recipe

    rng = np.random.default_rng(0)
    q = quantizer.Quantizer(bytearray(fp32), recipe.static_wi8_ai8())
    data = [{"input": rng.standard_normal(input_nhwc).astype(np.float32)} for _ in range(samples)]
    ranges = tfl.widen_constant_ranges(q.calibrate({tfl.SIGNATURE: data}))
    return bytes(q.quantize(ranges).quantized_model)


def variant(module: nn.Module, layout: str, deconv: bool = True) -> nn.Module:
    """``layout`` "none": the module as it is (the export before issue #13); otherwise split in
    ``layout`` and, with ``deconv``, its transposed convs rewritten as sub-pixel convs (the TFLite export)."""
    if layout == "none":
        return module
    module = dwsplit.split_depthwise(module, layout)[0]
    return subpixel.rewrite_deconvs(module)[0] if deconv else module


def time_files(
    files: dict[tuple, bytes], threads: list[int], rounds: int, runs: int, cap: float | None = None
) -> dict[tuple, dict]:
    """Interleaved rounds: every (key, threads) once per round; median and p10 over all samples.
    ``cap``: seconds of timed calls per file, thread count and round (:func:`capped_calls`).

    A key whose second item is "onnxruntime" holds ONNX bytes (timed in onnxruntime); the rest are .tflite.
    """
    samples: dict[tuple, list[float]] = {(*key, t): [] for key in files for t in threads}
    for _ in range(rounds):
        for key, data in files.items():
            for t in threads:
                if key[1] == "onnxruntime":
                    samples[(*key, t)] += time_onnx_session(data, get_spec(key[0]).input_size, t, runs, cap)
                    continue
                interpreter = make_interpreter(data, t)
                samples[(*key, t)] += capped_calls(interpreter.invoke, runs, cap)
                del interpreter
    return {
        k: {"median_ms": statistics.median(v), "p10_ms": p10(v), "calls": len(v)} for k, v in samples.items()
    }


def capped_calls(call: Callable[[], object], runs: int, cap: float | None) -> list[float]:
    """``runs`` timed calls (ms) after 2 warm-up calls; with ``cap`` (seconds), fewer once the timed calls
    have taken that long (at least one), and one warm-up call when that one alone took more than ``cap``."""
    t0 = time.perf_counter()
    call()
    if cap is None or time.perf_counter() - t0 <= cap:
        call()
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
        if cap is not None and sum(times) > cap * 1e3:
            break
    return times


def time_onnx_session(
    data: bytes, size: tuple[int, int], threads: int, runs: int, cap: float | None = None
) -> list[float]:
    """Timed calls (ms) of an onnxruntime CPU session on the parity photo (:func:`capped_calls`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = {"input": parity.sample_input(size)}
    return capped_calls(lambda: session.run(None, feed), runs, cap)


def part_layers(args: argparse.Namespace) -> list[dict]:
    shapes = layer_shapes(args.models)
    files: dict[tuple, bytes] = {}
    for channels, side, stride in shapes:
        torch.manual_seed(0)
        layer = nn.Sequential(nn.Conv2d(channels, channels, 7, stride, 3, groups=channels), nn.ReLU6()).eval()
        nhwc = (1, side, side, channels)
        for layout in args.layouts:
            fp32 = convert(variant(layer, layout), nhwc)
            files[(channels, side, stride, layout, "fp32")] = fp32
            files[(channels, side, stride, layout, "int8")] = quantize_layer(fp32, nhwc)
        print(f"converted {channels}x{side}x{side} stride {stride}", flush=True)
    timed = time_files(files, args.threads, args.rounds, args.runs)
    rows = []
    for (channels, side, stride, layout, precision, threads), figures in timed.items():
        rows.append(
            {
                "channels": channels,
                "input": side,
                "stride": stride,
                "count": shapes[(channels, side, stride)],
                "layout": layout,
                "precision": precision,
                "threads": threads,
                **figures,
            }
        )
    return rows


def converted(
    folded: nn.Module, name: str, layout: str, calib: np.ndarray, keep: Path | None, deconv: bool
) -> tuple[bytes, bytes]:
    """fp32 and int8 .tflite of the folded model in ``layout``; read from / written to ``keep`` if given.

    ``keep`` saves the slow conversions between runs: delete it after changing the split or the converter.
    """
    tag = f"{layout}-subpixel" if deconv and layout != "none" else layout
    paths = [keep / f"{name}-{tag}-{p}.tflite" for p in ("fp32", "int8")] if keep else []
    if paths and all(p.exists() for p in paths):
        return paths[0].read_bytes(), paths[1].read_bytes()
    h, w = get_spec(name).input_size
    fp32 = tfl.convert_fp32(variant(folded, layout, deconv), [o.name for o in get_spec(name).outputs], (h, w))
    int8 = tfl.quantize_int8(fp32, calib)
    for path, data in zip(paths, (fp32, int8)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return fp32, int8


def part_models(args: argparse.Namespace, calib_dir: Path) -> list[dict]:
    rows, files = [], {}
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name)
        h, w = get_spec(name).input_size
        x = parity.sample_input((h, w))
        folded, _ = fold_batchnorm(model, torch.from_numpy(x))
        with torch.no_grad():
            reference = [t.numpy() for t in model(torch.from_numpy(x))]
        calib = load_calibration(calib_dir, (h, w), get_spec(name).kind).transpose(0, 2, 3, 1)
        names = [o.name for o in get_spec(name).outputs]
        for layout in args.layouts:
            fp32, int8 = converted(folded, name, layout, calib, args.keep, args.subpixel)
            row = {"model": name, "layout": layout}
            for precision, data in (("fp32", fp32), ("int8", int8)):
                out = tfl.run_tflite(data, x)
                figures = [
                    parity.output_figures(ref, out[n], model.num_joints) for ref, n in zip(reference, names)
                ]
                row[precision] = {
                    "sqnr_db": [f["sqnr_db"] for f in figures],
                    "peak_agreement": [f["peak_agreement"] for f in figures],
                    "max_abs_diff": [f["max_abs_diff"] for f in figures],
                }
                if not (layout == "none" and precision == "int8" and name in args.skip_old_int8):
                    files[(name, layout, precision)] = data
            rows.append(row)
            print(f"{name} {layout}: int8 SQNR {row['int8']['sqnr_db']}", flush=True)
        if args.ort:  # the onnx recipe's ONNX of the unsplit model, timed in the same rounds
            files[(name, "onnxruntime", "fp32")] = onnx_bytes(folded, name, 17)
    timed = time_files(files, args.threads, args.rounds, args.runs, args.cap)
    for row in rows:
        row["latency"] = {
            f"{precision}_{t}t": timed.get((row["model"], row["layout"], precision, t), NOT_TIMED)
            for precision in ("fp32", "int8")
            for t in args.threads
        }
        if args.ort:
            row["latency"].update(
                {f"ort_{t}t": timed[(row["model"], "onnxruntime", "fp32", t)] for t in args.threads}
            )
    return rows


def onnx_bytes(model: nn.Module, name: str, opset: int) -> bytes:
    """The ONNX the recipes write (``export_onnx``: legacy exporter, onnxslim, checker) of ``model``."""
    from types import SimpleNamespace

    from edgepose.export.onnx import export_onnx
    from edgepose.export.trt_ops import check

    size = get_spec(name).input_size
    job = SimpleNamespace(
        model=model,
        model_name=name,
        output_names=[o.name for o in get_spec(name).outputs],
        sample=lambda: parity.sample_input(size),
    )
    proto, _ = export_onnx(job, opset, dynamic_batch=False)
    if opset == 13:  # the jetson recipe: the graph must pass TensorRT 8.2's parser lint
        check(proto, parser="8.2", static_shapes=True, what=name)
    return proto.SerializeToString()


def time_onnx_files(
    files: dict[tuple, bytes], threads: list[int], rounds: int, runs: int
) -> dict[tuple, dict]:
    samples: dict[tuple, list[float]] = {(*key, t): [] for key in files for t in threads}
    for _ in range(rounds):
        for key, data in files.items():
            for t in threads:
                samples[(*key, t)] += time_onnx_session(data, get_spec(key[0]).input_size, t, runs)
    return {k: {"median_ms": statistics.median(v), "p10_ms": p10(v)} for k, v in samples.items()}


def part_onnx(args: argparse.Namespace) -> list[dict]:
    files = {}
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name)
        x = torch.from_numpy(parity.sample_input(get_spec(name).input_size))
        folded, _ = fold_batchnorm(model, x)
        for layout in args.layouts:
            candidate = variant(folded, layout, args.subpixel)
            for recipe, opset in (("onnx", 17), ("jetson", 13)):
                files[(name, layout, recipe)] = onnx_bytes(candidate, name, opset)
        print(f"exported {name}", flush=True)
    timed = time_onnx_files(files, args.threads, args.rounds, args.runs)
    return [
        {"model": m, "layout": lay, "recipe": r, "threads": t, **figures}
        for (m, lay, r, t), figures in timed.items()
    ]


def markdown(result: dict) -> str:
    lines = [
        "# Splitting LitePose's 7x7 depthwise convs for XNNPACK (benchmarks/dwsplit_candidates.py)",
        "",
        f"{result['date']}, {result['host']['cpu']} ({result['host']['cores']} cores), 1-min load "
        f"{result['load_start']:.2f} at the start, {result['load_end']:.2f} at the end; ai-edge-litert "
        f"{result['litert']}, XNNPACK; median (p10) of {result['rounds']} interleaved rounds x "
        f"{result['runs']} calls"
        + (
            f" (fewer, at least one, past {result['cap']:g} s per file and round)"
            if result.get("cap")
            else ""
        )
        + "; random seeded weights.",
        "",
    ]
    threads = result["threads"]
    if result.get("layers"):
        lines += ["## Single layers (conv + ReLU6), ms", ""]
        layouts = result["layouts"]
        head = "| layer (C x H x W, stride) | precision | threads | " + " | ".join(layouts) + " |"
        lines += [head, "|---|---|---:|" + "---:|" * len(layouts)]
        index = {
            (r["channels"], r["input"], r["stride"], r["precision"], r["threads"], r["layout"]): r
            for r in result["layers"]
        }
        keys = sorted(
            {(r["channels"], r["input"], r["stride"]) for r in result["layers"]}, key=lambda k: (k[1], k[0])
        )
        for c, s, st in keys:
            for precision in ("fp32", "int8"):
                for t in threads:
                    cells = [index[(c, s, st, precision, t, lay)] for lay in layouts]
                    text = " | ".join(f"{r['median_ms']:.2f} ({r['p10_ms']:.2f})" for r in cells)
                    lines.append(f"| {c}x{s}x{s}, s{st} | {precision} | {t} | {text} |")
        lines += ["", "Sum over each model's 7x7 layers (count x median), ms:", ""]
        lines += [
            head.replace("layer (C x H x W, stride)", "model"),
            "|---|---|---:|" + "---:|" * len(layouts),
        ]
        models = sorted({m for r in result["layers"] for m in r["count"]}, key=MODELS.index)
        for m in models:
            for precision in ("fp32", "int8"):
                for t in threads:
                    totals = [
                        sum(
                            r["count"].get(m, 0) * r["median_ms"]
                            for r in result["layers"]
                            if (r["layout"], r["precision"], r["threads"]) == (lay, precision, t)
                        )
                        for lay in layouts
                    ]
                    lines.append(
                        f"| {m} | {precision} | {t} | " + " | ".join(f"{v:.1f}" for v in totals) + " |"
                    )
        lines.append("")
    if result.get("models"):
        lines += ["## Whole models: TFLite latency (ms, median (p10)) and int8 parity vs PyTorch fp32", ""]
        with_ort = any(k.startswith("ort_") for k in result["models"][0]["latency"])
        kinds = ("fp32", "int8", "ort") if with_ort else ("fp32", "int8")
        cols = [f"{p} {t}t" for p in kinds for t in threads]
        lines += [
            "| model | layout | " + " | ".join(cols) + " | fp32 max abs diff | int8 SQNR dB | int8 peaks |",
            "|---|---|" + "---:|" * len(cols) + "---|---|---|",
        ]
        for r in result["models"]:
            lat = " | ".join(ms(r["latency"][f"{p}_{t}t"]) for p in kinds for t in threads)
            diff = " / ".join(f"{v:.1e}" for v in r["fp32"]["max_abs_diff"])
            sqnr = " / ".join(f"{v:.1f}" for v in r["int8"]["sqnr_db"])
            peaks = " / ".join(f"{v:.2f}" for v in r["int8"]["peak_agreement"])
            lines.append(f"| {r['model']} | {r['layout']} | {lat} | {diff} | {sqnr} | {peaks} |")
        lines.append("")
    if result.get("models") and "none" in result["layouts"]:
        lines += ratio_lines(result)
    if result.get("onnx"):
        lines += [
            "## onnxruntime (CPU): the onnx recipe's ONNX (opset 17) and the jetson recipe's (opset 13), ms",
            "",
            "onnxruntime stands in for TensorRT (no GPU here): median (p10).",
            "",
        ]
        layouts = result["layouts"]
        lines += [
            "| model | recipe | threads | " + " | ".join(layouts) + " |",
            "|---|---|---:|" + "---:|" * len(layouts),
        ]
        index = {(r["model"], r["recipe"], r["threads"], r["layout"]): r for r in result["onnx"]}
        for m in sorted({r["model"] for r in result["onnx"]}, key=MODELS.index):
            for recipe in ("onnx", "jetson"):
                for t in threads:
                    cells = [index[(m, recipe, t, lay)] for lay in layouts]
                    text = " | ".join(f"{c['median_ms']:.1f} ({c['p10_ms']:.1f})" for c in cells)
                    lines.append(f"| {m} | {recipe} | {t} | {text} |")
        lines.append("")
    lines += ["Reproduce: `" + result["command"] + "`", ""]
    return "\n".join(lines)


def ratio_lines(result: dict) -> list[str]:
    """Issue #13's goals per model and thread count: each layout's fp32 against "none" (the export before),
    its int8 against its own fp32, and both against onnxruntime fp32 (where timed); ratios of medians."""
    index = {(r["model"], r["layout"]): r["latency"] for r in result["models"]}
    with_ort = any(k.startswith("ort_") for k in result["models"][0]["latency"])
    head = "| model | layout | threads | fp32 new / old | int8 new / old | int8 / fp32 (new) |"
    head += " fp32 / onnxruntime | int8 / onnxruntime |" if with_ort else ""
    lines = ["## Ratios of medians (old = layout none, the export before the rewrites)", "", head]
    lines.append("|---|---|---:|---:|---:|---:|" + ("---:|---:|" if with_ort else ""))
    for (model, layout), lat in index.items():
        if layout == "none":
            continue
        old = index[(model, "none")]
        for t in result["threads"]:
            m = {k: v["median_ms"] for k, v in lat.items()}
            o = {k: v["median_ms"] for k, v in old.items()}
            cells = [m[f"fp32_{t}t"] / o[f"fp32_{t}t"], m[f"int8_{t}t"] / o[f"int8_{t}t"]]
            cells.append(m[f"int8_{t}t"] / m[f"fp32_{t}t"])
            if with_ort:
                cells += [m[f"fp32_{t}t"] / m[f"ort_{t}t"], m[f"int8_{t}t"] / m[f"ort_{t}t"]]
            text = " | ".join("-" if c != c else f"{c:.2f}" for c in cells)  # nan: not timed
            lines.append(f"| {model} | {layout} | {t} | {text} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    from ai_edge_litert import __version__ as litert_version

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("layers", "models", "onnx", "both"), default="both")
    ap.add_argument("--models", default="litepose-xs", help="comma-separated: " + ",".join(MODELS))
    ap.add_argument("--layouts", default=",".join(VARIANTS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--stem", default="dwsplit_candidates")
    ap.add_argument(
        "--ort", action="store_true", help="models part: also time the onnx recipe's ONNX in the same rounds"
    )
    ap.add_argument(
        "--skip-old-int8",
        default="",
        help="models part: comma-separated models whose unsplit int8 is not timed (seconds per call)",
    )
    ap.add_argument(
        "--cap", type=float, help="models part: seconds of timed calls per file, thread count and round"
    )
    ap.add_argument("--keep", type=Path, help="models part: keep (and reuse) the converted files here")
    ap.add_argument(
        "--no-subpixel",
        dest="subpixel",
        action="store_false",
        help="models/onnx parts: split only, keep the transposed convs (default: both rewrites, as exported)",
    )
    args = ap.parse_args(argv)
    args.models = args.models.split(",")
    args.layouts = args.layouts.split(",")
    args.threads = [int(t) for t in args.threads.split(",")]
    args.skip_old_int8 = [m for m in args.skip_old_int8.split(",") if m]
    torch.set_num_threads(1)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "host": host_info(),
        "load_start": os.getloadavg()[0],
        "litert": litert_version,
        "layouts": args.layouts,
        "threads": args.threads,
        "rounds": args.rounds,
        "runs": args.runs,
        "cap": args.cap,
        "command": "",
    }
    flags = f"--part {args.part} --models {','.join(args.models)} --layouts {','.join(args.layouts)}"
    flags += f" --threads {','.join(map(str, args.threads))} --rounds {args.rounds} --runs {args.runs}"
    flags += ("" if args.subpixel else " --no-subpixel") + (" --ort" if args.ort else "")
    flags += f" --cap {args.cap:g}" if args.cap else ""
    flags += f" --skip-old-int8 {','.join(args.skip_old_int8)}" if args.skip_old_int8 else ""
    result["command"] = f".venv/bin/python benchmarks/dwsplit_candidates.py {flags}"
    if args.part in ("layers", "both"):
        result["layers"] = part_layers(args)
    if args.part in ("models", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            result["models"] = part_models(args, write_sample_images(Path(tmp) / "calib"))
    if args.part == "onnx":
        result["onnx"] = part_onnx(args)
    result["load_end"] = os.getloadavg()[0]
    for row in result.get("layers", []):
        row["count"] = dict(row["count"])
    save_result(args.out, args.stem, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
