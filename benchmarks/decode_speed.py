"""How fast is LitePose's bottom-up decoding? Goal: <= 5 ms for 30 people x 17 joints on the host.

Builds LitePose-S/M-sized outputs (448x448 input: 1/4 maps 112x112 with 2J channels, 1/2 maps
224x224 with J channels) holding N synthetic people, checks that they decode back, and times the
whole decode (upsample + average, 5x5 NMS, top-30, grouping, adjust) and its grouping part.

    .venv/bin/python benchmarks/decode_speed.py [--people 30] [--joints 17] [--size 448] [--runs 200] [--flip]
"""

import argparse
import os
import statistics
import time

import numpy as np

from edgepose.device.decode_bottomup import BottomUpDecoder
from edgepose.device.skeletons import get_skeleton


def synthetic_outputs(people, joints, size, seed=0):
    """(2J, s/4, s/4) heatmaps+tags and (J, s/2, s/2) heatmaps with ``people`` well-separated people."""
    rng = np.random.RandomState(seed)
    h2 = w2 = size // 2
    cols = int(np.ceil(np.sqrt(people)))
    cell = h2 // cols
    yy, xx = np.mgrid[0:h2, 0:w2]
    det = np.zeros((joints, h2, w2), np.float32)
    tags = np.zeros((joints, h2, w2), np.float32)
    for i in range(people):
        cx, cy = (i % cols) * cell, (i // cols) * cell
        for j in range(joints):
            x, y = cx + rng.randint(3, cell - 3), cy + rng.randint(3, cell - 3)
            d2 = (xx - x) ** 2 + (yy - y) ** 2
            peak = np.exp(-d2 / 4.0)
            peak[peak < 1e-6] = 0  # no denormals: they make every float op ~10x slower
            det[j] = np.maximum(det[j], peak)
            tags[j][d2 <= 16] = 2.0 * i
    quarter = np.concatenate([det[:, ::2, ::2], tags[:, ::2, ::2]])
    return quarter, det


def timed(fn, runs):
    """Median and min wall time, and median CPU time (less sensitive to a busy machine), in ms."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--joints", type=int, default=17)
    parser.add_argument("--size", type=int, default=448, help="square input size (multiple of 16)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--flip", action="store_true", help="also decode a (mirrored) flip-test pass")
    args = parser.parse_args()

    quarter, half = synthetic_outputs(args.people, args.joints, args.size)
    dataset = "coco" if args.joints == 17 else "crowdpose"
    decoder = BottomUpDecoder(args.joints, get_skeleton(dataset)["flip_index"])
    flipped = None
    if args.flip:
        index = decoder.flip_index
        flipped = (quarter[index + [j + args.joints for j in index], :, ::-1], half[index, :, ::-1])
    size = (args.size, args.size)
    poses, _ = decoder(quarter, half, flipped, input_size=size)
    complete = int(((poses[:, :, 2] > 0).sum(axis=1) == args.joints).sum())
    print(f"decoded {len(poses)} people ({complete} complete) of {args.people}")

    det, tags = decoder.aggregate(quarter, half, flipped, lazy_tags=True)
    full = timed(lambda: decoder(quarter, half, flipped, input_size=size), args.runs)
    aggregate = timed(lambda: decoder.aggregate(quarter, half, flipped, lazy_tags=True), args.runs)
    group = timed(lambda: decoder.group(det, tags), args.runs)
    print(
        f"input {args.size}x{args.size}{' + flip' if args.flip else ''}, {args.people} people x {args.joints} "
        f"joints, {args.runs} runs: "
        f"wall median (min), CPU median; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print("  full decode          {:7.2f} ms ({:.2f}), CPU {:.2f} ms   goal <= 5 ms".format(*full))
    print("  upsample + average   {:7.2f} ms ({:.2f}), CPU {:.2f} ms".format(*aggregate))
    print("  NMS + top-k + group  {:7.2f} ms ({:.2f}), CPU {:.2f} ms".format(*group))


if __name__ == "__main__":
    main()
