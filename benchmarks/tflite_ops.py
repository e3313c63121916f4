"""Per-op latency of a TFLite file: every op cut out of the real graph (real weights, real int8 parameters).

What ``benchmark_model --enable_op_profiling`` shows on a device, on this host in one command: each
operator of the main subgraph becomes a one-op .tflite (its constant inputs and their buffers kept,
its other inputs made graph inputs; a DEQUANTIZE that feeds it fp16 weights comes along, as XNNPACK
folds that pair in the whole graph) and is timed in ai-edge-litert's interpreter with the default
XNNPACK delegate on random data of the right shape and type. The whole file is timed too, so the
sum of the ops can be checked against it. Rounds are interleaved (every op once per round), and
the median and p10 over all rounds are reported, per thread count.

Output: a table by op type (depthwise and plain convs split by kernel size, where a cliff shows up)
with count, total ms and share, and the slowest single layers.

    .venv/bin/python benchmarks/tflite_ops.py model.tflite [--threads 1,2] [--rounds 3] [--runs 10] [--top 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils as fb

OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
CONV_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"}


def _op_name(model: schema.ModelT, op: schema.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = fb.get_builtin_code_from_operator_code(code)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{code.customCode.decode() if code.customCode else '?'}"
    return OP_NAMES.get(builtin, str(builtin))


def _is_constant(model: schema.ModelT, tensor: schema.TensorT) -> bool:
    buffer = model.buffers[tensor.buffer]
    return buffer.data is not None and len(buffer.data) > 0


def _shape(tensor: schema.TensorT) -> list[int]:
    return [int(v) for v in tensor.shape] if tensor.shape is not None else []


def describe(model: schema.ModelT, index: int) -> dict:
    """Op type (convs with their kernel: "DEPTHWISE_CONV_2D 7x7"), shapes and stride of op ``index``."""
    graph = model.subgraphs[0]
    op = graph.operators[index]
    name = _op_name(model, op)
    tensors = graph.tensors
    ins = [tensors[i] for i in op.inputs if i >= 0]
    info = {"index": index, "op": name, "kind": name, "output": [_shape(tensors[i]) for i in op.outputs]}
    info["inputs"] = [_shape(t) for t in ins if not _is_constant(model, t)]
    if name in CONV_OPS and len(ins) > 1:
        weight = _shape(ins[1] if name != "TRANSPOSE_CONV" else tensors[op.inputs[1]])
        if len(weight) == 4:  # OHWI / 1HWC
            info["kind"] = f"{name} {weight[1]}x{weight[2]}"
        options = op.builtinOptions
        if options is not None and hasattr(options, "strideH"):
            info["stride"] = [options.strideH, options.strideW]
            info["dilation"] = [
                getattr(options, "dilationHFactor", 1),
                getattr(options, "dilationWFactor", 1),
            ]
    return info


def _producers(graph: schema.SubGraphT) -> dict[int, int]:
    return {t: i for i, op in enumerate(graph.operators) for t in op.outputs}


def cut(model_bytes: bytes, index: int) -> bytes:
    """A .tflite holding op ``index`` of the main subgraph alone, with its constant inputs.

    An input made by DEQUANTIZE of a constant (fp16 weights) keeps that DEQUANTIZE, so XNNPACK sees
    the same fp16-weights pattern as in the whole graph.
    """
    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    producer = _producers(graph)
    op = graph.operators[index]
    ops = []
    for t in op.inputs:
        p = producer.get(t)
        if p is not None and _op_name(model, graph.operators[p]) == "DEQUANTIZE":
            src = graph.tensors[graph.operators[p].inputs[0]]
            if _is_constant(model, src):
                ops.append(graph.operators[p])
    ops.append(op)

    old_ids: list[int] = []
    new_id: dict[int, int] = {}

    def remap(t: int) -> int:
        if t < 0:
            return t
        if t not in new_id:
            new_id[t] = len(old_ids)
            old_ids.append(t)
        return new_id[t]

    made = {t for o in ops for t in o.outputs}
    new_ops = []
    for o in ops:
        o.inputs = [remap(t) for t in o.inputs]
        o.outputs = [remap(t) for t in o.outputs]
        new_ops.append(o)
    constant = {t for t in old_ids if _is_constant(model, graph.tensors[t])}
    buffers = [schema.BufferT()]
    tensors = []
    for old in old_ids:
        tensor = graph.tensors[old]
        if old in constant:
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        tensors.append(tensor)
    sub = schema.SubGraphT()
    sub.tensors = tensors
    sub.operators = new_ops
    # Graph inputs: the non-constant tensors no kept op produces; outputs: the op's own.
    sub.inputs = [new_id[t] for t in old_ids if t not in made and t not in constant]
    sub.outputs = list(new_ops[-1].outputs)
    sub.name = "op"
    model.subgraphs = [sub]
    model.buffers = buffers
    model.signatureDefs = None
    model.metadata = None
    model.metadataBuffer = None
    return bytes(fb.convert_object_to_bytearray(model))


def _random_inputs(interpreter: Interpreter, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for d in interpreter.get_input_details():
        dtype, shape = d["dtype"], d["shape"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            x = rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
        else:
            x = rng.standard_normal(shape).astype(dtype)
        interpreter.set_tensor(d["index"], x)


def make_interpreter(model_bytes: bytes, threads: int) -> Interpreter:
    interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
    interpreter.allocate_tensors()
    _random_inputs(interpreter)
    return interpreter


def time_invoke(interpreter: Interpreter, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def p10(values: list[float]) -> float:
    return float(np.percentile(values, 10))


def profile(model_bytes: bytes, threads: int = 1, rounds: int = 3, runs: int = 10, warmup: int = 2) -> dict:
    """Per-op and whole-model latency (median and p10 over ``rounds`` x ``runs``) at ``threads``."""
    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    consumed_by_cut = set()  # DEQUANTIZEs of constant weights: timed with the op they feed
    producer = _producers(graph)
    for op in graph.operators:
        for t in op.inputs:
            p = producer.get(t)
            if p is not None and _op_name(model, graph.operators[p]) == "DEQUANTIZE":
                if _is_constant(model, graph.tensors[graph.operators[p].inputs[0]]):
                    consumed_by_cut.add(p)
    indices = [i for i in range(len(graph.operators)) if i not in consumed_by_cut]
    ops = {i: describe(model, i) for i in indices}
    cuts = {i: cut(model_bytes, i) for i in indices}
    samples: dict[int, list[float]] = defaultdict(list)
    whole: list[float] = []
    for _ in range(rounds):
        interpreter = make_interpreter(model_bytes, threads)
        whole += time_invoke(interpreter, runs, warmup)
        del interpreter
        for i in indices:
            interpreter = make_interpreter(cuts[i], threads)
            samples[i] += time_invoke(interpreter, runs, warmup)
            del interpreter
    for i in indices:
        ops[i]["median_ms"] = statistics.median(samples[i])
        ops[i]["p10_ms"] = p10(samples[i])
    return {
        "threads": threads,
        "whole_model": {"median_ms": statistics.median(whole), "p10_ms": p10(whole)},
        "ops": [ops[i] for i in indices],
    }


def by_kind(ops: list[dict]) -> list[dict]:
    """Totals by op kind, slowest first: count, total (sum of medians), share of the sum."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for op in ops:
        groups[op["kind"]].append(op)
    grand = sum(op["median_ms"] for op in ops) or 1.0
    rows = [
        {
            "kind": kind,
            "count": len(members),
            "total_ms": sum(m["median_ms"] for m in members),
            "share": sum(m["median_ms"] for m in members) / grand,
        }
        for kind, members in groups.items()
    ]
    return sorted(rows, key=lambda r: -r["total_ms"])


def report(result: dict, top: int = 10) -> str:
    """Markdown: whole-model time, the by-kind table and the ``top`` slowest ops."""
    ops = result["ops"]
    total = sum(op["median_ms"] for op in ops)
    whole = result["whole_model"]
    lines = [
        f"{result['threads']} thread(s): whole model {whole['median_ms']:.2f} ms median "
        f"(p10 {whole['p10_ms']:.2f}); sum of the {len(ops)} ops cut out alone {total:.2f} ms",
        "",
        "| op type | count | total ms | share | mean ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in by_kind(ops):
        lines.append(
            f"| {row['kind']} | {row['count']} | {row['total_ms']:.2f} | {100 * row['share']:.1f}% "
            f"| {row['total_ms'] / row['count']:.3f} |"
        )
    lines += ["", f"Slowest {top} ops:", "", "| # | op | input | output | stride | median ms | p10 ms |"]
    lines.append("|---:|---|---|---|---|---:|---:|")
    for op in sorted(ops, key=lambda o: -o["median_ms"])[:top]:
        shape = lambda s: "x".join(map(str, s))  # noqa: E731
        stride = "x".join(map(str, op.get("stride", []))) or ""
        lines.append(
            f"| {op['index']} | {op['kind']} | {', '.join(shape(s) for s in op['inputs'])} "
            f"| {', '.join(shape(s) for s in op['output'])} | {stride} | {op['median_ms']:.3f} | {op['p10_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a .tflite file")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts (e.g. 1,2)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved passes over all ops")
    ap.add_argument("--runs", type=int, default=10, help="timed calls per op per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        print(f"error: no such file: {args.model}", file=sys.stderr)
        return 2
    data = args.model.read_bytes()
    results = []
    print(f"# {args.model} (1-min load {os.getloadavg()[0]:.2f})\n")
    for threads in [int(t) for t in args.threads.split(",")]:
        result = profile(data, threads, args.rounds, args.runs, args.warmup)
        results.append(result)
        print(report(result, args.top))
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
