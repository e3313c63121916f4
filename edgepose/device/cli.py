"""The run script of an artifact folder: ``python3 run.py --source 0 --show`` and friends.

``main(argv, model_dir)`` is what the folder's ``run.py`` calls; ``edgepose infer`` on the host adds
the same options (``add_arguments``) and calls ``run``. Bad input, or an output that cannot be written
(full disk, read-only folder: the path and the cause), prints one line and exits 2, leaving no output
file behind. Exit status: 0 every frame processed; 1 a folder source had files that could not be read
(each skipped with a warning, listed in the summary and the JSON lines; the others were processed);
2 an error; 130 Ctrl-C. What differs between pose and segmentation models (pipeline options, JSON
fields, drawing, mask files) is the model kind's task (``tasks.py``).
"""

import argparse
import json
import os
import sys

from .atomic import AtomicFile, discard, publish, temp_name
from .decode_bottomup import DET_THRESHOLD, GROUPING, GROUPINGS, MIN_JOINTS, TAG_THRESHOLD
from .errors import EdgeposeError, os_error_message
from .outputs import RunOutputs
from .runtime import BACKENDS

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}
SKIPPED = 1  # exit status when a folder source had unreadable files (the others were processed)


def add_arguments(parser, backends=None):
    """The options shared by run.py and ``edgepose infer``."""
    parser.add_argument(
        "--source", required=True, help="camera index (0), video file, image, or folder of images"
    )
    parser.add_argument(
        "--out", help="annotated output: an image, a video (.mp4/.avi), or a folder for a folder source"
    )
    parser.add_argument(
        "--json", help="write JSON lines, one per frame: the poses, or a segmentation model's class shares"
    )
    parser.add_argument(
        "--mask", metavar="DIR", help="segmentation: write each frame's class ids as a PNG into DIR"
    )
    parser.add_argument(
        "--alpha", type=float, default=0.5, help="segmentation: opacity of the class colours (default 0.5)"
    )
    parser.add_argument(
        "--show", action="store_true", help="show the annotated frames in a window (q/Esc quits)"
    )
    parser.add_argument(
        "--backend", choices=sorted(backends or BACKENDS), help="override the manifest's runtime backend"
    )
    parser.add_argument("--threads", type=int, help="CPU threads for the runtime (default: the manifest's)")
    parser.add_argument(
        "--flip",
        action="store_true",
        help="flip test: also run the mirrored input and average (pose, segmentation)",
    )
    parser.add_argument("--boxes", help="top-down models: person boxes JSON (default: the whole frame)")
    parser.add_argument(
        "--refine", action="store_true", help="bottom-up: fill missing joints from the tag map"
    )
    parser.add_argument("--dark", action="store_true", help="top-down: DARK sub-pixel decoding")
    parser.add_argument(
        "--det-threshold",
        type=float,
        default=DET_THRESHOLD,
        help="bottom-up peak threshold ({})".format(DET_THRESHOLD),
    )
    parser.add_argument(
        "--tag-threshold",
        type=float,
        default=TAG_THRESHOLD,
        help="bottom-up tag distance threshold ({})".format(TAG_THRESHOLD),
    )
    parser.add_argument(
        "--grouping",
        choices=GROUPINGS,
        default=GROUPING,
        help="bottom-up: 'crowd' (any number of people; default) or 'official' (the official parser, "
        "exactly: at most 30 people take joints)",
    )
    parser.add_argument(
        "--min-joints",
        type=int,
        help="bottom-up: drop people with fewer detected joints, before --refine "
        "(default: {} with --grouping crowd, 1 with official)".format(MIN_JOINTS),
    )
    parser.add_argument("--min-score", type=float, default=0.0, help="drop people scoring below this")
    parser.add_argument("--kpt-threshold", type=float, default=0.3, help="draw joints scoring at least this")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--quiet", action="store_true", help="no per-run summary")


def build_parser(prog="run.py"):
    parser = argparse.ArgumentParser(
        prog=prog, description="Pose estimation or segmentation with an edgepose artifact folder."
    )
    parser.add_argument("--model-dir", help="the artifact folder (default: the folder of run.py)")
    add_arguments(parser)
    return parser


def main(argv=None, model_dir=None):
    """Entry point of run.py; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(args, args.model_dir or model_dir or os.getcwd())
    except EdgeposeError as exc:
        for line in str(exc).splitlines() or [""]:
            sys.stderr.write("run.py: error: {}\n".format(line))
        return 2
    except OSError as exc:  # an output that cannot be written: which path, and why
        sys.stderr.write("run.py: error: {}\n".format(os_error_message(exc)))
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("run.py: interrupted\n")
        return 130


def run(args, model_dir, runtime=None):
    """Run the pipeline over ``args.source``; ``runtime`` replaces the manifest's backend (host tools)."""
    from .draw import FPS_COVERS, draw_timings, fps_text
    from .manifest import load_manifest

    manifest = load_manifest(model_dir)
    from .sources import Source  # OpenCV: imported when frames are read, not for --help
    from .tasks import open_task

    warnings = {}  # frame index -> what is wrong with an image that could still be read

    def on_problem(index, name, problem, skipped):
        sys.stderr.write("warning: {}: {}{}\n".format(name, "skipped, " if skipped else "", problem))
        if not skipped:
            warnings[index] = problem
        elif lines is not None:
            lines.write(json.dumps({"frame": index, "source": name, "skipped": problem}) + "\n")

    source = Source(args.source, on_problem=on_problem)
    _check_out(args.out, source)
    outputs = RunOutputs()
    task = open_task(args, model_dir, manifest, runtime, source, outputs)
    warning = random_weights_warning(manifest, task.what)
    if warning:
        sys.stderr.write("run.py: warning: {}\n".format(warning))
    frames_out = _FrameWriter(args.out, source, outputs)
    lines = AtomicFile(args.json, "w") if args.json else None
    totals = {"pre": 0.0, "model": 0.0, "post": 0.0}
    count = 0
    try:
        for index, name, frame in source:
            if args.max_frames is not None and count >= args.max_frames:
                break
            result = task(index, name, frame)
            timings = result["timings"]
            total = sum(timings.values())
            fps = 1000.0 / total if total > 0 else 0.0
            for key in totals:
                totals[key] += timings[key]
            count += 1
            if lines is not None:
                record = {"frame": index, "source": name}
                record.update(task.fields(result))
                record.update(
                    {
                        "timings_ms": {k: round(v, 3) for k, v in timings.items()},
                        "fps": round(fps, 2),
                        "fps_covers": FPS_COVERS,
                    }
                )
                if index in warnings:
                    record["warning"] = warnings[index]
                lines.write(json.dumps(record) + "\n")
            task.save(index, name, result)
            if args.out or args.show:
                task.draw(frame, result)
                label = "RANDOM WEIGHTS: {} are meaningless".format(task.what) if warning else None
                draw_timings(frame, timings, fps, label)
                frames_out.write(frame, name)
                if args.show and _show(frame):
                    break
        frames_out.close()
        if lines is not None:
            lines.commit()
    except BaseException:  # Ctrl-C or a full disk too: no output of this run stays, whole or half
        frames_out.abort()
        if lines is not None:
            lines.abort()
        raise
    if not args.quiet:
        n = max(count, 1)
        per_frame = sum(totals.values()) / n
        print(
            "{} frame(s) with {}: pre {:.1f} ms, model {:.1f} ms, post {:.1f} ms per frame; {}".format(
                count,
                task.pipeline.runtime.describe(),
                totals["pre"] / n,
                totals["model"] / n,
                totals["post"] / n,
                fps_text(1000.0 / per_frame if per_frame > 0 else 0.0),
            )
        )
    if source.skipped:
        print(
            "skipped {} unreadable file(s): {}".format(
                len(source.skipped), ", ".join(name for _, name, _ in source.skipped)
            )
        )
        return SKIPPED
    return 0


def random_weights_warning(manifest, what="poses"):
    """The one-line warning for an artifact exported with random weights, else None."""
    weights = manifest["model"].get("weights")
    if weights is None or (isinstance(weights, dict) and weights.get("kind") == "random"):
        return "{} was exported with random weights: the {} it finds are meaningless".format(
            manifest["model"].get("name", "this model"), what
        )
    return None


def _check_out(out, source):
    """Refuse an --out that cannot hold what the source produces, before loading the model."""
    if not out:
        return
    ext = os.path.splitext(out)[1].lower()
    from .sources import IMAGE_EXTS

    if source.kind == "image" and ext not in IMAGE_EXTS:
        raise EdgeposeError(
            "--out for an image source must be an image file ({})".format(", ".join(IMAGE_EXTS))
        )
    if source.kind in ("video", "camera") and ext not in VIDEO_CODECS:
        raise EdgeposeError(
            "--out for a video/camera source must end in {}".format(", ".join(sorted(VIDEO_CODECS)))
        )
    if source.kind == "folder" and ext:
        raise EdgeposeError("--out for a folder source must be a folder, got {}".format(out))


def _show(frame):
    """Show ``frame``; True when the user asked to quit."""
    import cv2

    try:
        cv2.imshow("edgepose", frame)
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        raise EdgeposeError(
            "--show needs OpenCV with GUI support (opencv-python, not opencv-python-headless)"
        ) from None
    return key in (27, ord("q"))


class _FrameWriter(object):
    """Annotated output: one image, a folder of images, or a video; each file written whole (temp + rename).

    Every file and folder it makes is remembered in ``outputs`` (shared with the task's own files, such
    as ``--mask``), whose ``abort`` removes them when the run fails or is interrupted.
    """

    def __init__(self, out, source, outputs):
        self.out = out
        self.source = source
        self.outputs = outputs
        self.video = None
        self.tmp = None
        self.frames = 0

    def write(self, frame, name):
        if not self.out:
            return
        if self.source.kind in ("image", "folder"):
            self.outputs.image(
                self.out if self.source.kind == "image" else os.path.join(self.out, name), frame
            )
            return
        try:
            self._write_video(frame)
        except OSError as exc:  # name the output asked for, whatever step failed
            raise OSError(exc.errno, exc.strerror, self.out) from None

    def _write_video(self, frame):
        import cv2

        if self.video is None:
            self.outputs.folder(os.path.dirname(os.path.abspath(self.out)))
            ext = os.path.splitext(self.out)[1].lower()
            self.tmp = temp_name(self.out)
            open(self.tmp, "wb").close()  # a folder we cannot write to fails here, with its real cause
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[ext])
            fps = self.source.fps or 30.0
            self.video = cv2.VideoWriter(self.tmp, fourcc, fps, (frame.shape[1], frame.shape[0]))
            if not self.video.isOpened():
                discard(self.tmp)
                raise EdgeposeError(
                    "cannot write video {} (codec {} unavailable)".format(self.out, VIDEO_CODECS[ext])
                )
        self.video.write(frame)
        self.frames += 1

    def close(self):
        if self.video is not None:
            self.video.release()
            self.video = None
            _check_video(self.tmp, self.out, self.frames)  # OpenCV's writer fails silently on a full disk
            existed = os.path.lexists(self.out)
            publish(self.tmp, self.out)
            self.outputs.keep(self.out, existed)

    def abort(self):
        if self.video is not None:
            self.video.release()
            self.video = None
        discard(self.tmp)
        self.outputs.abort()


def _check_video(tmp, out, frames):
    """Raise (and remove ``tmp``) unless the video written to ``tmp`` reads back with all ``frames``."""
    import cv2

    capture = cv2.VideoCapture(tmp)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if count < frames:
        discard(tmp)
        raise EdgeposeError(
            "cannot write video {}: it came out incomplete ({} of {} frames; is the disk full?)".format(
                out, max(count, 0), frames
            )
        )
