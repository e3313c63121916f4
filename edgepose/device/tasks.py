"""What run.py does with each kind of model: its pipeline and options, a frame's JSON fields, the drawing
and any extra files. ``open_task`` picks the task of the manifest's model kind (through the pipeline
that kind has, ``pipeline.PIPELINES``), so the run loop in ``cli.py`` has no branch per kind.

A task is called with (index, name, frame) and returns the pipeline's result; ``fields(result)`` is
what the frame's JSON line holds besides the frame, source and timings; ``draw(frame, result)``
annotates the frame in place; ``save(index, name, result)`` writes any per-frame files.
"""

import os

from .errors import EdgeposeError
from .pipeline import PosePipeline, SegmentationPipeline, pipeline_class


class PoseTask(object):
    """Pose models (bottom-up and top-down): people with keypoints, drawn as skeletons."""

    what = "poses"  # what the model finds, in messages ("the poses it finds are meaningless")

    def __init__(self, args, model_dir, manifest, runtime, source, outputs):
        from .draw import skeleton_for
        from .sources import BoxFile

        model = manifest["model"]
        if args.mask:
            raise EdgeposeError(
                "--mask is for segmentation models; {} is a {} pose model".format(
                    model.get("name"), model.get("kind")
                )
            )
        self.boxes = BoxFile(args.boxes) if args.boxes else None
        if self.boxes is not None and model.get("kind") != "top-down":
            raise EdgeposeError("--boxes is for top-down models; {} is bottom-up".format(model.get("name")))
        self.pipeline = PosePipeline(
            model_dir,
            backend=args.backend,
            threads=args.threads,
            flip=args.flip,
            refine=args.refine,
            dark=args.dark,
            det_threshold=args.det_threshold,
            tag_threshold=args.tag_threshold,
            grouping=args.grouping,
            min_joints=args.min_joints,
            min_score=args.min_score,
            runtime=runtime,
            manifest=manifest,
        )
        self.skeleton = skeleton_for(manifest)
        self.threshold = args.kpt_threshold

    def __call__(self, index, name, frame):
        return self.pipeline(frame, self.boxes.for_frame(index, name) if self.boxes else None)

    def fields(self, result):
        return {"people": result["people"]}

    def draw(self, frame, result):
        from .draw import draw_poses

        draw_poses(frame, result["people"], self.skeleton, threshold=self.threshold)

    def save(self, index, name, result):
        pass


# Options of pose decoding that mean nothing for a segmentation model (refused rather than ignored).
POSE_ONLY = (("boxes", "--boxes"), ("refine", "--refine"), ("dark", "--dark"), ("min_joints", "--min-joints"))


class SegmentationTask(object):
    """Segmentation models: a class per pixel, drawn as a blended colour overlay with a class legend;
    the JSON line holds each class's share of the frame; ``--mask DIR`` writes the label maps."""

    what = "classes"

    def __init__(self, args, model_dir, manifest, runtime, source, outputs):
        name = manifest["model"].get("name")
        for attr, flag in POSE_ONLY:
            if getattr(args, attr, None):
                raise EdgeposeError("{} is for pose models; {} is a segmentation model".format(flag, name))
        self.alpha = float(args.alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise EdgeposeError("--alpha must be between 0 and 1, got {}".format(args.alpha))
        self.masks = MaskWriter(args.mask, source.kind, outputs) if args.mask else None
        self.pipeline = SegmentationPipeline(
            model_dir,
            backend=args.backend,
            threads=args.threads,
            flip=args.flip,
            runtime=runtime,
            manifest=manifest,
        )
        self.decoder = self.pipeline.decoder

    def __call__(self, index, name, frame):
        return self.pipeline(frame)

    def fields(self, result):
        return {"class_shares": self.decoder.named_shares(result["shares"])}

    def draw(self, frame, result):
        from .draw import draw_class_legend

        self.decoder.overlay(frame, result["labels"], self.alpha)
        draw_class_legend(frame, self.decoder.classes, result["shares"], self.decoder.palette_bgr)

    def save(self, index, name, result):
        if self.masks is not None:
            self.masks.write(index, name, result["labels"])


class MaskWriter(object):
    """``--mask DIR``: one single-channel PNG of class ids per frame (uint8; the manifest's class order).

    Images keep their name (photo.jpg -> photo.png); video and camera frames are frame_000000.png, ...
    Each file is written whole (temp + rename) and remembered in the run's ``outputs``, so a run that
    fails takes its masks (and a folder it made for them) away again.
    """

    def __init__(self, folder, source_kind, outputs):
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise EdgeposeError("--mask must be a folder, and {} is a file".format(folder))
        self.folder = folder
        self.by_name = source_kind in ("image", "folder")
        self.outputs = outputs

    def path(self, index, name):
        stem = os.path.splitext(os.path.basename(name))[0] if self.by_name else "frame_{:06d}".format(index)
        return os.path.join(self.folder, stem + ".png")

    def write(self, index, name, labels):
        self.outputs.image(self.path(index, name), labels, "mask")


TASKS = {PosePipeline: PoseTask, SegmentationPipeline: SegmentationTask}


def open_task(args, model_dir, manifest, runtime, source, outputs):
    """The task of the manifest's model kind, its options checked and its model loaded; files it writes
    besides the annotated frames go through ``outputs`` (``outputs.RunOutputs``)."""
    return TASKS[pipeline_class(manifest)](args, model_dir, manifest, runtime, source, outputs)
