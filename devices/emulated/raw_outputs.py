"""Run an exported folder's model on a fixed input and save every output as OUT_DIR/<name>.npy.

    python3 raw_outputs.py FOLDER INPUT.npy OUT_DIR [--backend NAME] [--threads N]

Runs with what the device has (Python 3.6+, numpy, the folder's own ``edgepose_device`` package and
its runtime), so the same script gives the host's and the (emulated) Pi's raw outputs of one file on
one input, to compare them (tests/test_emulated_rpi4.py, docs/emulated.md). INPUT.npy is an NCHW
float32 batch; outputs are NCHW float32 whatever the file's layout and precision.
"""

import argparse
import os
import sys

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("input")
    parser.add_argument("out_dir")
    parser.add_argument("--backend", help="override the manifest's runtime backend")
    parser.add_argument("--threads", type=int, help="runtime threads (default: the manifest's)")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.folder))  # the folder's own device package
    from edgepose_device.errors import EdgeposeError
    from edgepose_device.manifest import load_manifest
    from edgepose_device.runtime import open_runtime

    try:
        manifest = load_manifest(args.folder)
        runtime = open_runtime(args.folder, manifest, backend=args.backend, threads=args.threads)
        outputs = runtime.run(np.load(args.input))
    except EdgeposeError as exc:
        sys.stderr.write("error: {}\n".format(exc))
        return 2
    if not os.path.isdir(args.out_dir):
        os.makedirs(args.out_dir)
    for name, value in outputs.items():
        np.save(os.path.join(args.out_dir, name + ".npy"), np.asarray(value, dtype=np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
