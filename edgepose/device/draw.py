"""Draw on a frame with OpenCV: poses (joints, limbs of COCO-17, CrowdPose-14, MPII-16, boxes), a class
legend for segmentation overlays, and timings."""

import cv2

from .skeletons import SKELETONS, make_skeleton


def skeleton_for(manifest):
    """The skeleton (joints, limbs, colours) of the manifest's dataset, else one built from its limbs."""
    model = manifest["model"]
    known = SKELETONS.get(model.get("dataset"))
    if known is not None and len(known["joints"]) == int(model.get("num_joints", len(known["joints"]))):
        return known
    joints = model.get("joints") or ["joint_{}".format(i) for i in range(int(model["num_joints"]))]
    return make_skeleton(joints, [tuple(limb) for limb in model.get("limbs") or []])


def draw_poses(frame, people, skeleton, threshold=0.3, radius=None, thickness=None):
    """Draw every person of ``people`` (dicts with 'keypoints' [[x, y, score], ...] and maybe 'box') in place."""
    size = max(frame.shape[0], frame.shape[1])
    radius = radius or max(2, size // 200)
    thickness = thickness or max(1, size // 320)
    for person in people:
        kpts = person["keypoints"]
        box = person.get("box")
        if box is not None:
            cv2.rectangle(frame, _pt(box[0], box[1]), _pt(box[2], box[3]), (200, 200, 200), thickness)
        for (a, b), color in zip(skeleton["limbs"], skeleton["limb_colors"]):
            if kpts[a][2] >= threshold and kpts[b][2] >= threshold:
                cv2.line(frame, _pt(*kpts[a][:2]), _pt(*kpts[b][:2]), tuple(color), thickness, cv2.LINE_AA)
        for (x, y, score), color in zip(kpts, skeleton["joint_colors"]):
            if score >= threshold:
                cv2.circle(frame, _pt(x, y), radius, tuple(color), -1, cv2.LINE_AA)
    return frame


FPS_COVERS = "pre+model+post"  # what every FPS figure edgepose prints covers (overlay, JSON lines, summary)


def fps_text(fps):
    """The one way an FPS figure is written, with what it covers."""
    return "{:.1f} FPS ({})".format(fps, FPS_COVERS)


def draw_label(frame, lines, corner=(8, 8), swatches=None):
    """Write ``lines`` on a dark box sized by OpenCV itself (legible on OpenCV 4 and 5), its top-left at
    ``corner`` (negative coordinates count from the right / bottom edge). ``swatches``: one BGR colour
    per line, drawn as a square before it (a legend)."""
    scale = max(0.45, frame.shape[1] / 1400.0)
    thickness = max(1, int(round(scale * 1.5)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(line, font, scale, thickness) for line in lines]
    pad = max(3, int(6 * scale))
    square = sizes[0][0][1] if swatches else 0
    indent = square + pad if swatches else 0
    height = sum(h + base + pad for (_, h), base in sizes) + pad
    width = max(w for (w, _), _ in sizes) + 2 * pad + indent
    x0, y0 = corner
    x0 = x0 if x0 >= 0 else frame.shape[1] + x0 - width
    y0 = y0 if y0 >= 0 else frame.shape[0] + y0 - height
    cv2.rectangle(frame, (x0, y0), (x0 + width, y0 + height), (0, 0, 0), -1)
    y = y0
    for i, (line, ((_, h), base)) in enumerate(zip(lines, sizes)):
        y += pad + h
        if swatches:
            color = tuple(int(c) for c in swatches[i])
            cv2.rectangle(frame, (x0 + pad, y - square), (x0 + pad + square, y), color, -1)
        cv2.putText(frame, line, (x0 + pad + indent, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        y += base
    return frame


def draw_class_legend(frame, names, shares, colors_bgr, top=5):
    """The ``top`` classes by share of the frame, with their overlay colours, in the bottom-left corner."""
    order = sorted(range(len(names)), key=lambda i: -shares[i])[:top]
    order = [i for i in order if shares[i] > 0]
    if order:
        lines = ["{} {:.0f}%".format(names[i], 100.0 * shares[i]) for i in order]
        draw_label(frame, lines, corner=(8, -8), swatches=[colors_bgr[i] for i in order])
    return frame


def draw_timings(frame, timings, fps=None, warning=None):
    """Write 'pre/model/post ms', the FPS (with what it covers) and a warning line (e.g. random weights)."""
    text = "pre {:.1f} model {:.1f} post {:.1f} ms".format(timings["pre"], timings["model"], timings["post"])
    if fps:
        text += "  " + fps_text(fps)
    return draw_label(frame, [text] + ([warning] if warning else []))


def _pt(x, y):
    return int(round(float(x))), int(round(float(y)))
