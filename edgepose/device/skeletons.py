"""Keypoint sets as data: joint names, flip permutation, limbs and colours per dataset.

Used by the exporters (written into the manifest), the decoders (flip test) and drawing.
Plain dicts and lists so that it runs on Python 3.6 without torch.
"""

# BGR colours for OpenCV drawing, by body side.
LEFT = (0, 165, 255)
RIGHT = (255, 128, 0)
CENTER = (80, 220, 80)


def _side(name):
    if name.startswith("left_") or name.startswith("l_"):
        return LEFT
    if name.startswith("right_") or name.startswith("r_"):
        return RIGHT
    return CENTER


def _flip_index(names):
    """The permutation that swaps every left joint with its right twin."""
    index = []
    for name in names:
        if name.startswith("left_"):
            twin = "right_" + name[5:]
        elif name.startswith("right_"):
            twin = "left_" + name[6:]
        elif name.startswith("l_"):
            twin = "r_" + name[2:]
        elif name.startswith("r_"):
            twin = "l_" + name[2:]
        else:
            twin = name
        index.append(names.index(twin))
    return index


def make_skeleton(names, limbs):
    """A keypoint set (names, flip permutation, limbs, colours) from joint names and limb pairs."""
    return {
        "name": None,
        "joints": list(names),
        "flip_index": _flip_index(names),
        "limbs": [list(pair) for pair in limbs],
        "joint_colors": [list(_side(n)) for n in names],
        # A limb takes the colour of its second joint (the one further from the torso).
        "limb_colors": [list(_side(names[b])) for _, b in limbs],
    }


COCO_JOINTS = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
COCO_LIMBS = [
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
]

CROWDPOSE_JOINTS = [
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "head",
    "neck",
]
CROWDPOSE_LIMBS = [
    (12, 13),
    (13, 0),
    (13, 1),
    (0, 2),
    (2, 4),
    (1, 3),
    (3, 5),
    (0, 6),
    (1, 7),
    (6, 7),
    (6, 8),
    (8, 10),
    (7, 9),
    (9, 11),
]

MPII_JOINTS = [
    "r_ankle",
    "r_knee",
    "r_hip",
    "l_hip",
    "l_knee",
    "l_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "r_wrist",
    "r_elbow",
    "r_shoulder",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
]
MPII_LIMBS = [
    (0, 1),
    (1, 2),
    (2, 6),
    (6, 3),
    (3, 4),
    (4, 5),
    (6, 7),
    (7, 8),
    (8, 9),
    (7, 12),
    (12, 11),
    (11, 10),
    (7, 13),
    (13, 14),
    (14, 15),
]

SKELETONS = {
    "coco": make_skeleton(COCO_JOINTS, COCO_LIMBS),
    "crowdpose": make_skeleton(CROWDPOSE_JOINTS, CROWDPOSE_LIMBS),
    "mpii": make_skeleton(MPII_JOINTS, MPII_LIMBS),
}
for _name, _sk in SKELETONS.items():
    _sk["name"] = _name


def get_skeleton(dataset):
    """Return the keypoint set of ``dataset`` ('coco', 'crowdpose' or 'mpii')."""
    from .errors import EdgeposeError

    try:
        return SKELETONS[dataset]
    except KeyError:
        raise EdgeposeError(
            "unknown dataset {!r}; known: {}".format(dataset, ", ".join(sorted(SKELETONS)))
        ) from None
