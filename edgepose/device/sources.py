"""Frame sources: a camera index, a video file, an image, or a folder of images.

Each source yields (index, name, BGR frame). Missing or unreadable inputs are an EdgeposeError with
one clear line, checked before the model is loaded where possible. In a folder, one unreadable file does
not stop the others: it is skipped and reported (``on_problem``; a warning on stderr by default), and
only a folder with no readable image at all is an error. A JPEG cut short (no end-of-image marker) is
named as such: skipped where OpenCV refuses it (5.x), decoded as far as it goes with a warning where
OpenCV fills the rest with gray (4.x).
"""

import os
import sys

import cv2
import numpy as np

from .errors import EdgeposeError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Source(object):
    """Iterate over frames; ``kind`` is 'camera', 'video', 'image' or 'folder'; ``fps`` where known."""

    def __init__(self, spec, on_problem=None):
        self.spec = str(spec)
        self.on_problem = on_problem or _warn
        self.skipped = []  # (index, file name, reason) of the folder's files that could not be read
        self.fps = None
        self.paths = []
        self.capture = None
        if self.spec.isdigit():
            self.kind = "camera"
        elif os.path.isdir(self.spec):
            self.kind = "folder"
            self.paths = sorted(
                os.path.join(self.spec, f) for f in os.listdir(self.spec) if f.lower().endswith(IMAGE_EXTS)
            )
            if not self.paths:
                raise EdgeposeError("no images ({}) in folder {}".format(", ".join(IMAGE_EXTS), self.spec))
        elif not os.path.exists(self.spec):
            raise EdgeposeError("source not found: {}".format(self.spec))
        elif self.spec.lower().endswith(IMAGE_EXTS):
            self.kind = "image"
            self.paths = [self.spec]
        else:
            self.kind = "video"
        if self.kind in ("camera", "video"):
            self._open()

    def _open(self):
        target = int(self.spec) if self.kind == "camera" else self.spec
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            what = "camera {}".format(self.spec) if self.kind == "camera" else "video {}".format(self.spec)
            raise EdgeposeError("cannot open {} (not a readable camera/video)".format(what))
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        self.capture = capture

    def __iter__(self):
        if self.capture is not None:
            return self._frames()
        return self._images()

    def _frames(self):
        index = 0
        try:
            while True:
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    break
                yield index, "{}#{}".format(self.spec, index), frame
                index += 1
        finally:
            self.capture.release()
        if index == 0:
            raise EdgeposeError("no frames could be read from {}".format(self.spec))

    def _images(self):
        for index, path in enumerate(self.paths):
            name = os.path.basename(path)
            frame, problem = read_image(path)
            if frame is None:
                if self.kind != "folder":
                    raise EdgeposeError("cannot read image {}: {}".format(path, problem))
                self.skipped.append((index, name, problem))
                self.on_problem(index, name, problem, True)
                continue
            if problem:
                self.on_problem(index, name, problem, False)
            yield index, name, frame
        if self.kind == "folder" and len(self.skipped) == len(self.paths):
            raise EdgeposeError(
                "no readable image in folder {} ({} file(s) skipped)".format(self.spec, len(self.skipped))
            )

    def close(self):
        """Release the camera or video (iteration releases it too)."""
        if self.capture is not None:
            self.capture.release()


def read_image(path):
    """(BGR frame or None, problem or None): why a file cannot be read, or a warning about one that can."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return None, exc.strerror or str(exc)
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    truncated = data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9")
    if frame is None:
        if truncated:
            return None, "truncated JPEG (no end-of-image marker)"
        return None, "not an image OpenCV can decode" if data else "empty file"
    if truncated:  # older OpenCV decodes what is there and fills the rest with gray
        return frame, "truncated JPEG (no end-of-image marker): the missing part is gray"
    return frame, None


def _warn(index, name, problem, skipped):
    sys.stderr.write("warning: {}: {}{}\n".format(name, "skipped, " if skipped else "", problem))


class BoxFile(object):
    """Person boxes for top-down models, from a JSON file (the detector is the user's to supply).

    Accepted forms: ``[[x1, y1, x2, y2(, score)], ...]`` (the same boxes for every frame);
    ``{"boxes": [...]}`` (likewise); ``{"frames": {"0": [...], "photo.jpg": [...]}}`` (per frame index or
    image file name; frames not listed get no people). ``"format": "xywh"`` at the top level reads
    boxes as (x, y, width, height) instead of corners.
    """

    def __init__(self, path):
        import json

        if not os.path.isfile(path):
            raise EdgeposeError("boxes file not found: {}".format(path))
        try:
            with open(path, "r") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise EdgeposeError("cannot read boxes file {}: {}".format(path, exc)) from None
        self.path = path
        xywh = isinstance(data, dict) and data.get("format", "xyxy") == "xywh"
        if isinstance(data, dict) and data.get("format", "xyxy") not in ("xyxy", "xywh"):
            raise EdgeposeError("boxes file {}: format must be 'xyxy' or 'xywh'".format(path))
        self.every = None
        self.frames = {}
        if isinstance(data, list):
            self.every = self._boxes(data, xywh, "the list")
        elif isinstance(data, dict) and "boxes" in data:
            self.every = self._boxes(data["boxes"], xywh, "'boxes'")
        elif isinstance(data, dict) and isinstance(data.get("frames"), dict):
            self.frames = {
                str(k): self._boxes(v, xywh, "frame {!r}".format(k)) for k, v in data["frames"].items()
            }
        else:
            raise EdgeposeError(
                "boxes file {}: expected a list of [x1, y1, x2, y2] boxes, or {{'boxes': [...]}}, "
                "or {{'frames': {{frame: [...]}}}}".format(path)
            )

    def _boxes(self, boxes, xywh, where):
        out = []
        for box in boxes if isinstance(boxes, list) else [None]:
            if not isinstance(box, list) or len(box) not in (4, 5):
                raise EdgeposeError(
                    "boxes file {}: {} holds {!r}, expected [x1, y1, x2, y2(, score)]".format(
                        self.path, where, box
                    )
                )
            box = [float(v) for v in box]
            if xywh:
                box[2] += box[0]
                box[3] += box[1]
            if box[2] <= box[0] or box[3] <= box[1]:
                raise EdgeposeError("boxes file {}: {} has an empty box {}".format(self.path, where, box[:4]))
            out.append(box)
        return out

    def for_frame(self, index, name):
        """The boxes of frame ``index`` (or image ``name``)."""
        if self.every is not None:
            return self.every
        return self.frames.get(str(index), self.frames.get(os.path.basename(str(name)), []))
