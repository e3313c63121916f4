"""Bottom-up decoding for LitePose (associative embedding), following the official HigherHRNet parser.

Steps (litepose.md §3): upsample the 1/4-resolution output to the 1/2-resolution one and average the
heatmaps (and with the flip test, the flipped pass too), 5x5 max-pool NMS, the top peaks per joint,
grouping by tag distance with an optimal assignment (grouping.py: detection threshold 0.1, tag
threshold 1.0), the quarter-pixel adjust, and optionally ``refine`` (fill missing joints from the
person's mean tag). OpenCV does the resizing and max-pooling (per channel, on (C, H, W) maps);
everything else is vectorised numpy.

``grouping="official"`` is the official parser, exactly (top 30 peaks per joint, only 30 people may
take joints). The default ``grouping="crowd"`` lets every person take joints, keeps up to 500 peaks per
joint (with a warning past that) and drops people of fewer than ``min_joints`` (3) detected joints
before ``refine``; grouping.py and docs/inference.md say why.

Departures from the official code, on purpose: grouping runs on the 1/2-resolution maps by default
(like the official Jetson demo; ``project_to_input=True`` resizes to the input size first, as the
evaluation config does), and two candidates with bit-identical first tag values are not merged
(the official dict keyed by tag value would merge them).
"""

import warnings
from functools import partial

import cv2
import numpy as np

from .grouping import crowd_assign, group_peaks, official_assign

# The official parser's defaults (LitePose's configs): one source for the decoder, pipeline and CLI.
DET_THRESHOLD = 0.1
TAG_THRESHOLD = 1.0
MAX_PEOPLE = 30
# The crowd grouping's defaults: peaks kept per joint (far above any scene a 1/2-resolution map can
# resolve; a warning when reached) and the fewest detected joints that make a person.
GROUPINGS = ("crowd", "official")
GROUPING = "crowd"
CROWD_MAX_PEOPLE = 500
MIN_JOINTS = 3

# Joint visiting order of the official parser (first J entries are used).
JOINT_ORDER = [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16]


class BottomUpDecoder(object):
    """Turn LitePose outputs into poses: (P, J, 3) arrays of (x, y, score) in input-pixel coordinates."""

    def __init__(
        self,
        num_joints,
        flip_index=None,
        det_threshold=DET_THRESHOLD,
        tag_threshold=TAG_THRESHOLD,
        max_people=None,
        nms_kernel=5,
        adjust=True,
        refine=False,
        project_to_input=False,
        grouping=GROUPING,
        min_joints=None,
    ):
        if grouping not in GROUPINGS:
            raise ValueError("grouping must be one of {}, got {!r}".format(", ".join(GROUPINGS), grouping))
        official = grouping == "official"
        self.grouping = grouping
        self.num_joints = int(num_joints)
        self.flip_index = list(flip_index) if flip_index is not None else None
        self.det_threshold = float(det_threshold)
        self.tag_threshold = float(tag_threshold)
        # Peaks then score above 0, so every allowed crowd pair costs less than starting a new person
        # (grouping.py); the crowd cost divides by the tag threshold.
        if not self.det_threshold >= 0:
            raise ValueError("det_threshold must be at least 0, got {}".format(det_threshold))
        if not self.tag_threshold > 0:
            raise ValueError("tag_threshold must be above 0, got {}".format(tag_threshold))
        # official: peaks per joint and people that may take joints; crowd: peaks per joint only
        if max_people is None:
            max_people = MAX_PEOPLE if official else CROWD_MAX_PEOPLE
        self.max_people = int(max_people)
        # fewest detected joints (before refine) that make a person; the official parser keeps every group
        self.min_joints = int(min_joints if min_joints is not None else (1 if official else MIN_JOINTS))
        self.nms_kernel = np.ones((int(nms_kernel), int(nms_kernel)), np.uint8)
        self.adjust = bool(adjust)
        self.refine = bool(refine)
        self.project_to_input = bool(project_to_input)
        self._buffers = {}  # big work arrays reused across frames (fresh ones cost page faults)
        order = [j for j in JOINT_ORDER if j < self.num_joints]
        self.joint_order = order + [j for j in range(self.num_joints) if j not in order]

    def __call__(self, heatmaps_tags, heatmaps=None, flipped=None, input_size=None):
        """Decode one image.

        ``heatmaps_tags``: (2J, h4, w4) float32; ``heatmaps``: (J, h2, w2) or None; ``flipped``: the same
        pair from the horizontally flipped input, or None. ``input_size`` (H, W) scales the result to
        input pixels (None: map pixels). Returns (poses (P, J, 3), scores (P,)).
        """
        # Grouping reads tags only at the peaks: sample the 1/4 map there unless refine/projection need it all.
        lazy = not (self.refine or (self.project_to_input and input_size is not None))
        det, tags = self.aggregate(heatmaps_tags, heatmaps, flipped, lazy_tags=lazy)
        if self.project_to_input and input_size is not None:
            det = _resize_maps(det, input_size)
            tags = np.stack([_resize_maps(tags[..., d], input_size) for d in range(tags.shape[3])], axis=-1)
        poses, scores = self.group(det, tags)
        if input_size is not None and len(poses):
            poses[:, :, 0] *= float(input_size[1]) / det.shape[2]
            poses[:, :, 1] *= float(input_size[0]) / det.shape[1]
        return poses, scores

    def aggregate(self, heatmaps_tags, heatmaps=None, flipped=None, lazy_tags=False):
        """Average heatmaps over outputs (and the flipped pass); return det (J, H, W), tags (J, H, W, D).

        With ``lazy_tags`` the tags are a :class:`LazyTags` that samples the 1/4-resolution maps on demand
        (what a full resize would give at those pixels). The arrays may live in work buffers that the next
        call overwrites.
        """
        passes = [(heatmaps_tags, heatmaps, False)]
        if flipped is not None:
            if self.flip_index is None:
                raise ValueError("the flip test needs flip_index")
            passes.append((flipped[0], flipped[1], True))
        dets, tags = [], []
        for maps, half, flip in passes:
            det, tag = self._one_pass(maps, half, flip, lazy_tags)
            dets.append(det)
            tags.append(tag)
        det = dets[0] if len(dets) == 1 else (dets[0] + dets[1]) * 0.5
        size = det.shape[1:]
        # Tag dimension D = 2 with the flip test: the original and flipped tag of each joint, as officially.
        return det, LazyTags(tags, size, self.flip_index) if lazy_tags else np.stack(tags, axis=-1)

    def _buffer(self, name, shape):
        buf = self._buffers.get(name)
        if buf is None or buf.shape != tuple(shape):
            buf = self._buffers[name] = np.empty(shape, np.float32)
        return buf

    def _one_pass(self, heatmaps_tags, heatmaps, flip, lazy_tags):
        """One forward pass: det (J, H, W) flipped back if needed; tags (J, H, W), or the raw 1/4 tag maps."""
        joints = self.num_joints
        maps = np.asarray(heatmaps_tags, dtype=np.float32)
        tags4 = maps[joints : 2 * joints]
        if heatmaps is not None:
            half = np.asarray(heatmaps, dtype=np.float32)
            channels = joints if lazy_tags else 2 * joints
            out = self._buffer(("flipped" if flip else "maps", channels), (channels,) + half.shape[1:])
            maps = _resize_maps(maps[:channels], half.shape[1:], out)
            det = maps[:joints]
            det += half
            det *= 0.5
        else:
            det = maps[:joints]
        tags = tags4 if lazy_tags else maps[joints : 2 * joints]
        if flip:
            det = np.ascontiguousarray(det[self.flip_index, :, ::-1])
            if not lazy_tags:
                tags = np.ascontiguousarray(tags[self.flip_index, :, ::-1])
        return det, tags

    def top_k(self, det):
        """NMS + top-k per joint: arrays (joint, y, x, value) of the kept peaks, sorted by joint then value."""
        joints, height, width = det.shape
        pooled = self._buffer("pooled", det.shape)
        for j in range(joints):
            cv2.dilate(det[j], self.nms_kernel, dst=pooled[j])  # == 5x5 max-pool, stride 1, padding 2
        # A peak is above the threshold and the maximum of its window (whole-map tests: cheaper than
        # gathering the many pixels above the threshold around every person of a crowd).
        peak = det == pooled
        peak &= det > self.det_threshold
        flat = np.flatnonzero(peak)
        vals = det.reshape(-1)[flat]
        js = flat // (height * width)
        order = np.lexsort((-vals, js))
        flat, js, vals = flat[order], js[order], vals[order]
        first = np.searchsorted(js, np.arange(joints))
        keep = (np.arange(len(js)) - first[js]) < self.max_people
        if self.grouping != "official" and not keep.all():
            warnings.warn(
                "more than {} peaks of one joint above {}: kept the {} strongest (max_people)".format(
                    self.max_people, self.det_threshold, self.max_people
                ),
                RuntimeWarning,
                stacklevel=3,
            )
        flat, js, vals = flat[keep], js[keep], vals[keep]
        rest = flat - js * (height * width)
        return js, rest // width, rest % width, vals

    def group(self, det, tags):
        """Group peaks of det (J, H, W) by tags (J, H, W, D); returns (poses (P, J, 3) in map pixels, scores)."""
        lazy = isinstance(tags, LazyTags)
        js, ys, xs, vals = self.top_k(det)
        cand_tags = tags.at(js, ys, xs) if lazy else tags[js, ys, xs]  # (N, D)
        if self.grouping == "official":
            assign, max_groups = partial(official_assign, tag_threshold=self.tag_threshold), self.max_people
        else:
            assign, max_groups = partial(crowd_assign, tag_threshold=self.tag_threshold), None
        poses, count = group_peaks(
            js, xs, ys, vals, cand_tags, self.num_joints, self.joint_order, assign, max_groups
        )
        if self.min_joints > 1:
            poses = poses[count >= self.min_joints]
        n_groups = len(poses)
        if self.adjust and n_groups:
            _quarter_adjust(poses, det)
        scores = poses[:, :, 2].mean(axis=1) if n_groups else np.zeros(0)
        if self.refine and n_groups:
            if lazy:
                raise ValueError("refine needs full tag maps (aggregate with lazy_tags=False)")
            self._refine(poses, det, tags)
        return poses.astype(np.float32), scores.astype(np.float32)

    def _refine(self, poses, det, tags):
        """Fill each person's missing joints by argmax of heatmap - round(tag distance to the person's mean tag)."""
        height, width = det.shape[1:]
        for pose in poses:
            seen = np.flatnonzero(pose[:, 2] > 0)
            missing = np.flatnonzero(pose[:, 2] == 0)
            if not len(seen) or not len(missing):
                continue
            xs = np.clip(pose[seen, 0].astype(np.int64), 0, width - 1)
            ys = np.clip(pose[seen, 1].astype(np.int64), 0, height - 1)
            mean_tag = tags[seen, ys, xs].mean(axis=0)
            dist = np.sqrt(((tags[missing] - mean_tag) ** 2).sum(axis=3))  # (M, H, W)
            flat = (det[missing] - np.round(dist)).reshape(len(missing), -1).argmax(axis=1)
            py, px = flat // width, flat % width
            vals = det[missing, py, px]
            found = np.stack([px.astype(np.float64), py.astype(np.float64), vals], axis=1)
            _quarter_step(found, det, missing, py, px)
            found[:, :2] += 0.5
            fill = vals > 0
            pose[missing[fill]] = found[fill]


class LazyTags(object):
    """Tag maps at the grouping resolution without computing them: bilinear samples of the 1/4 maps.

    ``passes`` holds the (J, h, w) tag maps of each forward pass (the second one from the flipped
    input); ``at`` gives exactly what cv2.resize to ``size`` (then flipping back) would hold there.
    """

    def __init__(self, passes, size, flip_index=None):
        self.passes = passes
        self.size = (int(size[0]), int(size[1]))
        self.flip_index = np.asarray(flip_index) if flip_index is not None else None

    def at(self, js, ys, xs):
        """Tags (N, D) of joints ``js`` at map pixels (``ys``, ``xs``)."""
        height, width = self.size
        values = []
        for i, maps in enumerate(self.passes):
            ch, x = (self.flip_index[js], width - 1 - xs) if i == 1 else (js, xs)
            x0, x1, fx = _source_coords(x, maps.shape[2], width)
            y0, y1, fy = _source_coords(ys, maps.shape[1], height)
            top = maps[ch, y0, x0] * (1 - fx) + maps[ch, y0, x1] * fx
            bottom = maps[ch, y1, x0] * (1 - fx) + maps[ch, y1, x1] * fx
            values.append(top * (1 - fy) + bottom * fy)
        return np.stack(values, axis=-1)


def _source_coords(dst, n_src, n_dst):
    """cv2 INTER_LINEAR source pixels and weight for destination pixels ``dst`` (half-pixel centres)."""
    if n_src == n_dst:
        return dst, dst, np.zeros(len(dst))
    pos = (np.asarray(dst, np.float64) + 0.5) * (float(n_src) / n_dst) - 0.5
    i0 = np.floor(pos).astype(np.int64)
    frac = pos - i0
    frac[i0 < 0] = 0.0
    i0 = np.maximum(i0, 0)
    frac[i0 >= n_src - 1] = 0.0
    i0 = np.minimum(i0, n_src - 1)
    return i0, np.minimum(i0 + 1, n_src - 1), frac


def _quarter_adjust(poses, det):
    """Official ``adjust``: move each found joint 0.25 px towards its higher neighbour, then +0.5."""
    p, j = np.nonzero(poses[:, :, 2] > 0)
    px = poses[p, j, 0].astype(np.int64)
    py = poses[p, j, 1].astype(np.int64)
    pts = poses[p, j]
    _quarter_step(pts, det, j, py, px)
    pts[:, :2] += 0.5
    poses[p, j] = pts


def _quarter_step(pts, det, joint, py, px):
    """Add +-0.25 to pts[:, 0] / pts[:, 1] by the sign of the neighbour difference (ties go to -0.25)."""
    height, width = det.shape[1:]
    right = det[joint, py, np.minimum(px + 1, width - 1)]
    left = det[joint, py, np.maximum(px - 1, 0)]
    down = det[joint, np.minimum(py + 1, height - 1), px]
    up = det[joint, np.maximum(py - 1, 0), px]
    pts[:, 0] += np.where(right > left, 0.25, -0.25)
    pts[:, 1] += np.where(down > up, 0.25, -0.25)


def _resize_maps(maps, size, out=None):
    """Bilinear resize (align_corners=False, like torch) of (C, h, w) maps to (C, H, W), one channel at a time."""
    height, width = int(size[0]), int(size[1])
    if out is None:
        out = np.empty((maps.shape[0], height, width), np.float32)
    if maps.shape[1:] == (height, width):
        out[...] = maps
        return out
    for c in range(maps.shape[0]):
        cv2.resize(np.ascontiguousarray(maps[c]), (width, height), dst=out[c], interpolation=cv2.INTER_LINEAR)
    return out
