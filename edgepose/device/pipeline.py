"""The inference pipelines: pre-process -> runtime -> decode -> back to image pixels, timed per step.

``PosePipeline(model_dir)(frame_bgr, boxes=None)`` returns
``{"people": [{"keypoints": [[x, y, score], ...], "score": s, "box": [x1, y1, x2, y2] or None}],
"timings": {"pre": ms, "model": ms, "post": ms}}`` for one frame. Bottom-up models (LitePose) see the
whole letterboxed frame; top-down models (Lite-HRNet) see one crop per person box (the whole frame
when no boxes are given: the person detector is the caller's to supply).

``SegmentationPipeline(model_dir)(frame_bgr)`` returns ``{"labels": (H, W) uint8 class ids of the
frame, "shares": fraction of the frame per class, "timings": ...}``; the model sees the whole
letterboxed frame. ``open_pipeline`` picks the pipeline of the manifest's model kind (:data:`PIPELINES`).
"""

import time

import numpy as np

from .decode_bottomup import DET_THRESHOLD, GROUPING, TAG_THRESHOLD, BottomUpDecoder
from .decode_segmentation import SegmentationDecoder
from .decode_topdown import TopDownDecoder
from .errors import EdgeposeError
from .manifest import input_hw, load_manifest, output_by_role
from .preprocess import Normalizer, box_matrix, letterbox_matrix, to_image, warp
from .runtime import open_runtime


class PosePipeline(object):
    """Everything between a BGR frame and the poses in it, for one artifact folder."""

    def __init__(
        self,
        model_dir,
        backend=None,
        threads=None,
        flip=False,
        refine=False,
        dark=False,
        det_threshold=DET_THRESHOLD,
        tag_threshold=TAG_THRESHOLD,
        max_people=None,
        min_score=0.0,
        grouping=GROUPING,
        min_joints=None,
        peaks_per_joint=None,
        runtime=None,
        manifest=None,
    ):
        self.manifest = manifest if manifest is not None else load_manifest(model_dir)
        model = self.manifest["model"]
        self.kind = model.get("kind")
        self.flip = bool(flip)
        self.min_score = float(min_score)
        # People kept per frame, best first (None: all). COCO's AP scores 20 per image; the decoder's
        # own caps (peaks per joint, groups) are its business.
        self.max_people = None if max_people is None else int(max_people)
        flip_index = model.get("flip_index")
        if self.flip and not flip_index:
            raise EdgeposeError("--flip needs the joints' flip_index, which this manifest lacks")
        self.input_hw = input_hw(self.manifest)
        self.normalize = Normalizer(self.manifest["input"])
        if self.kind == "bottom-up":
            tags = output_by_role(self.manifest, "heatmaps_tags")
            if tags is None:
                raise EdgeposeError("a bottom-up manifest needs an output with role 'heatmaps_tags'")
            heat = output_by_role(self.manifest, "heatmaps")
            self.out_names = (tags["name"], heat["name"] if heat else None)
            if min_joints is not None and int(min_joints) < 1:
                raise EdgeposeError("--min-joints must be at least 1, got {}".format(min_joints))
            try:
                self.decoder = BottomUpDecoder(
                    int(model["num_joints"]),
                    flip_index,
                    det_threshold=det_threshold,
                    tag_threshold=tag_threshold,
                    refine=refine,
                    grouping=grouping,
                    min_joints=min_joints,
                    max_people=peaks_per_joint,  # the decoder's cap on peaks per joint (None: its default)
                )
            except ValueError as exc:  # an option out of range: the decoder's one line
                raise EdgeposeError(str(exc)) from None
        elif self.kind == "top-down":
            heat = output_by_role(self.manifest, "heatmaps")
            if heat is None:
                raise EdgeposeError("a top-down manifest needs an output with role 'heatmaps'")
            self.out_names = (heat["name"],)
            self.decoder = TopDownDecoder(flip_index, dark=dark)
        elif self.kind == "segmentation":
            raise EdgeposeError(
                "{} is a segmentation model: it has classes per pixel, not poses (SegmentationPipeline, "
                "or open_pipeline, which picks by the manifest)".format(model.get("name"))
            )
        else:
            raise EdgeposeError("unknown model kind {!r} in the manifest".format(self.kind))
        # Load the model last: bad options fail fast, before a slow engine load.
        self.runtime = (
            runtime if runtime is not None else open_runtime(model_dir, self.manifest, backend, threads)
        )

    def __call__(self, frame, boxes=None):
        """Find the poses in one BGR frame; ``boxes`` (top-down only): [[x1, y1, x2, y2(, score)], ...]."""
        if self.kind == "bottom-up":
            return self._bottom_up(frame)
        return self._top_down(frame, boxes)

    def _bottom_up(self, frame):
        t0 = time.perf_counter()
        matrix = letterbox_matrix(frame.shape[:2], self.input_hw)
        crop = warp(frame, matrix, self.input_hw)
        batch = self.normalize([crop, crop[:, ::-1]] if self.flip else [crop])
        t1 = time.perf_counter()
        out = self.runtime.run(batch)
        t2 = time.perf_counter()
        tags_name, heat_name = self.out_names
        heat = out[heat_name] if heat_name else None
        flipped = (out[tags_name][1], heat[1] if heat is not None else None) if self.flip else None
        poses, scores = self.decoder(
            out[tags_name][0], heat[0] if heat is not None else None, flipped, input_size=self.input_hw
        )
        if len(poses):
            poses[:, :, :2] = to_image(poses[:, :, :2], matrix)
        # Every person the decoder found, best first (no cut: crowds have more than 30 people).
        order = np.argsort(-scores, kind="stable")
        people = [_person(poses[i], scores[i], None) for i in order if scores[i] >= self.min_score]
        if self.max_people is not None:
            del people[self.max_people :]
        t3 = time.perf_counter()
        return {"people": people, "timings": _timings(t0, t1, t2, t3)}

    def _top_down(self, frame, boxes):
        t0 = time.perf_counter()
        if boxes is None:
            boxes = [[0.0, 0.0, float(frame.shape[1]), float(frame.shape[0])]]
        if not len(boxes):
            return {"people": [], "timings": _timings(t0, t0, t0, t0)}
        matrices = [box_matrix(b, self.input_hw) for b in boxes]
        crops = [warp(frame, m, self.input_hw) for m in matrices]
        if self.flip:
            crops += [c[:, ::-1] for c in crops]
        batch = self.normalize(crops)
        t1 = time.perf_counter()
        heat = self.runtime.run(batch)[self.out_names[0]]
        t2 = time.perf_counter()
        n = len(boxes)
        kpts = self.decoder(heat[:n], heat[n:] if self.flip else None, input_size=self.input_hw)
        people = []
        for box, matrix, points in zip(boxes, matrices, kpts):
            points[:, :2] = to_image(points[:, :2], matrix)
            box_score = float(box[4]) if len(box) > 4 else 1.0
            score = box_score * float(points[:, 2].mean())
            if score >= self.min_score:
                people.append(_person(points, score, [float(v) for v in box[:4]]))
        t3 = time.perf_counter()
        return {"people": people, "timings": _timings(t0, t1, t2, t3)}


class SegmentationPipeline(object):
    """Everything between a BGR frame and the class of each of its pixels, for one artifact folder."""

    def __init__(self, model_dir, backend=None, threads=None, flip=False, runtime=None, manifest=None):
        self.manifest = manifest if manifest is not None else load_manifest(model_dir)
        model = self.manifest["model"]
        logits = output_by_role(self.manifest, "logits")
        if logits is None:
            raise EdgeposeError("a segmentation manifest needs an output with role 'logits'")
        self.out_name = logits["name"]
        self.decoder = SegmentationDecoder(model.get("classes"), model.get("palette_rgb"), logits["stride"])
        self.flip = bool(flip)
        self.input_hw = input_hw(self.manifest)
        self.normalize = Normalizer(self.manifest["input"])
        self.runtime = (
            runtime if runtime is not None else open_runtime(model_dir, self.manifest, backend, threads)
        )

    def __call__(self, frame):
        """Label every pixel of one BGR frame."""
        t0 = time.perf_counter()
        matrix = letterbox_matrix(frame.shape[:2], self.input_hw)
        crop = warp(frame, matrix, self.input_hw)
        batch = self.normalize([crop, crop[:, ::-1]] if self.flip else [crop])
        t1 = time.perf_counter()
        logits = self.runtime.run(batch)[self.out_name]
        t2 = time.perf_counter()
        # Flip test: the mirrored input's logits, mirrored back (exact on the grid: W is a multiple of
        # the stride), averaged with the plain ones.
        scores = (logits[0] + logits[1][:, :, ::-1]) * 0.5 if self.flip else logits[0]
        labels = self.decoder(scores, matrix, frame.shape[:2])
        shares = self.decoder.shares(labels)
        t3 = time.perf_counter()
        return {"labels": labels, "shares": shares, "timings": _timings(t0, t1, t2, t3)}


# The pipeline of each model kind (the manifest's model.kind).
PIPELINES = {"bottom-up": PosePipeline, "top-down": PosePipeline, "segmentation": SegmentationPipeline}


def pipeline_class(manifest):
    """The pipeline class for the manifest's model kind; an unknown kind is one clear line."""
    kind = manifest["model"].get("kind")
    try:
        return PIPELINES[kind]
    except KeyError:
        raise EdgeposeError(
            "unknown model kind {!r} in the manifest (known: {})".format(kind, ", ".join(sorted(PIPELINES)))
        ) from None


def open_pipeline(model_dir, manifest=None, **options):
    """The pipeline of the artifact folder's model kind, with its default options unless given."""
    manifest = manifest if manifest is not None else load_manifest(model_dir)
    return pipeline_class(manifest)(model_dir, manifest=manifest, **options)


def _person(points, score, box):
    return {
        "keypoints": [
            [round(x, 2), round(y, 2), round(s, 4)] for x, y, s in np.asarray(points, np.float64).tolist()
        ],
        "score": round(float(score), 4),
        "box": box,
    }


def _timings(t0, t1, t2, t3):
    return {"pre": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
