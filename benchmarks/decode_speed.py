"""How fast is LitePose's bottom-up decoding, per grouping, as crowds grow? Goal: the crowd grouping
decodes 100 people in under 10 ms (median) on the host.

Builds LitePose-S/M-sized outputs (448x448 input: 1/4 maps 112x112 with 2J channels, 1/2 maps
224x224 with J channels) holding N synthetic people (tests/synthetic_crowds.py: a grid, peaks in
[0.15, 1], pixel noise on heatmaps and tags), decodes them with the official and the crowd grouping,
counts the people found against the truth, and times, interleaved, the whole decode (upsample +
average, 5x5 NMS, top-k, grouping, adjust) and its NMS + top-k + grouping part.

    .venv/bin/python benchmarks/decode_speed.py [--people 30,60,100] [--joints 17] [--layout grid]
        [--threads 1] [--runs 100] [--flip]
"""

import argparse
import os
import sys
import time
from functools import partial

import cv2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from synthetic_crowds import check_people, cluster_scene, grid_scene, network_outputs  # noqa: E402

from edgepose.device.decode_bottomup import GROUPINGS, BottomUpDecoder  # noqa: E402
from edgepose.device.skeletons import get_skeleton  # noqa: E402
from edgepose.device.timing import percentile  # noqa: E402

LAYOUTS = {"grid": grid_scene, "clusters": cluster_scene}


def interleaved(calls, runs):
    """Time each of ``calls`` (name -> fn) ``runs`` times, taking turns.

    Returns name -> (wall median, wall p10, CPU median) in ms; the CPU time is less sensitive to other
    processes on a busy machine.
    """
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for fn in calls.values():
        fn()  # warm-up
    for _ in range(runs):
        for name, fn in calls.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - t) * 1e3)
            cpu[name].append((time.process_time() - c) * 1e3)
    out = {}
    for name in calls:
        w, c = sorted(wall[name]), sorted(cpu[name])
        out[name] = (percentile(w, 50), percentile(w, 10), percentile(c, 50))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", default="30,60,100", help="comma-separated crowd sizes")
    parser.add_argument("--joints", type=int, default=17, choices=(14, 17), help="CrowdPose 14 or COCO 17")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="grid")
    parser.add_argument("--size", type=int, default=448, help="square input size (multiple of 16)")
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenCV threads (numpy here is single-threaded)"
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--flip", action="store_true", help="also decode a (mirrored) flip-test pass")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)

    dataset = "coco" if args.joints == 17 else "crowdpose"
    flip_index = get_skeleton(dataset)["flip_index"]
    size = (args.size, args.size)
    print(
        "input {0}x{0}{1}, {2} joints, {3} layout, {4} runs, OpenCV threads {5}; load average {6:.1f} on {7} "
        "cores".format(
            args.size,
            " + flip" if args.flip else "",
            args.joints,
            args.layout,
            args.runs,
            args.threads,
            os.getloadavg()[0],
            os.cpu_count(),
        )
    )
    print(
        "| people | grouping | poses | people right | full decode: median / p10 (CPU) | NMS + top-k + group: "
        "median / p10 (CPU) |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for n in [int(p) for p in args.people.split(",")]:
        scene = LAYOUTS[args.layout](n, args.joints, seed=n, size=(args.size // 2, args.size // 2))
        quarter, half = network_outputs(scene)
        flipped = None
        if args.flip:
            channels = flip_index + [j + args.joints for j in flip_index]
            flipped = (quarter[channels][:, :, ::-1], half[flip_index][:, :, ::-1])
        calls, found = {}, {}
        for grouping in GROUPINGS[::-1]:
            decoder = BottomUpDecoder(args.joints, flip_index, grouping=grouping)
            poses, _ = decoder(quarter, half, flipped, input_size=size)
            poses[:, :, :2] *= float(half.shape[1]) / args.size
            # a person is right when one pose holds exactly its joints, each within 1 px
            missed = sum(1 for w in check_people(poses, scene.truth) if w.startswith("person"))
            found[grouping] = (len(poses), n - missed)
            det, tags = decoder.aggregate(quarter, half, flipped, lazy_tags=True)
            det, tags.passes = det.copy(), [t.copy() for t in tags.passes]  # the next call reuses buffers

            calls[grouping, "full"] = partial(decoder, quarter, half, flipped, input_size=size)
            calls[grouping, "group"] = partial(decoder.group, det, tags)
        times = interleaved(calls, args.runs)
        for grouping in GROUPINGS[::-1]:
            print(
                "| {} | {} | {} | {} | {:.2f} / {:.2f} ({:.2f}) ms | {:.2f} / {:.2f} ({:.2f}) ms |".format(
                    n, grouping, *(found[grouping] + times[grouping, "full"] + times[grouping, "group"])
                )
            )


if __name__ == "__main__":
    main()
