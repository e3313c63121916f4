"""Does the device pipeline leak? 2,000 frames through PosePipeline on the LitePose-XS ONNX export; goal: the
resident memory at the end within 1% of the memory at frame 100.

Frames are a real photo (scikit-image's astronaut at 640x480), shifted by a few pixels per frame so that no
two inputs are the same. The process measured is torch-free, as on a device: without --model-dir the
export runs in a child (``edgepose export litepose-xs --target onnx``). Writes benchmarks/results/soak.{json,md};
exits 1 when the growth is 1% or more.

    .venv/bin/python benchmarks/soak.py [--model-dir DIR] [--frames 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from edgepose.device.pipeline import PosePipeline
from edgepose.device.timing import summarize

GOAL_PERCENT = 1.0
BASELINE_FRAME = 100


def rss_mb() -> float:
    """Resident memory of this process now (VmRSS), in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def export_xs(out: Path) -> Path:
    edgepose = Path(sys.executable).parent / "edgepose"
    subprocess.run(
        [str(edgepose), "export", "litepose-xs", "--target", "onnx", "--out", str(out)], check=True
    )
    return out


def frames(count: int):
    photo = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (700, 540))
    for i in range(count):
        dx, dy = i % 60, (i // 60) % 60
        yield np.ascontiguousarray(photo[dy : dy + 480, dx : dx + 640])


def soak(model_dir: Path, count: int, threads: int) -> dict:
    pipeline = PosePipeline(str(model_dir), threads=threads)
    samples, times = {}, np.zeros(count)  # preallocated: the measurement itself must not grow
    for i, frame in enumerate(frames(count), 1):
        start = time.perf_counter()
        pipeline(frame)
        times[i - 1] = (time.perf_counter() - start) * 1e3
        if i in (1, BASELINE_FRAME, count) or i % 500 == 0:
            samples[i] = round(rss_mb(), 2)
    base, end = samples[BASELINE_FRAME], samples[count]
    return {
        "model_dir": str(model_dir),
        "runtime": pipeline.runtime.describe(),
        "frames": count,
        "threads": threads,
        "rss_mb": samples,
        "growth_percent": round(100.0 * (end - base) / base, 3),
        "goal_percent": GOAL_PERCENT,
        "frame_ms": summarize(times.tolist()),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a LitePose-XS ONNX artifact (default: export one)")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if args.frames <= BASELINE_FRAME:
        parser.error(f"--frames must be more than {BASELINE_FRAME}")
    with tempfile.TemporaryDirectory(prefix="edgepose-soak-") as tmp:
        model_dir = args.model_dir or export_xs(Path(tmp) / "litepose-xs-onnx")
        result = soak(model_dir, args.frames, args.threads)
    rss = result["rss_mb"]
    ok = result["growth_percent"] < GOAL_PERCENT
    markdown = (
        f"# Soak: {args.frames} frames through PosePipeline ({result['runtime']})\n\n"
        f"| frame | RSS MiB |\n|---:|---:|\n" + "".join(f"| {k} | {v:.2f} |\n" for k, v in rss.items()) + "\n"
        f"Growth from frame {BASELINE_FRAME} to frame {args.frames}: {result['growth_percent']:+.3f}% "
        f"(goal: under {GOAL_PERCENT}%: {'met' if ok else 'MISSED'}). Median frame "
        f"{result['frame_ms']['median_ms']:.1f} ms; load average {result['load_average'][0]}.\n\n"
        f"    .venv/bin/python benchmarks/soak.py --frames {args.frames} --threads {args.threads}\n"
    )
    from bench_common import save_result

    save_result(args.out, "soak", result, markdown)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
