"""Segmentation label sets as data: class names and their display colours per dataset.

Cityscapes: the 19 evaluation classes in train-id order (0 = road ... 18 = bicycle), with the colours
of the official palette (cityscapesScripts ``labels.py``), as RGB triples. Plain lists and dicts, so
that it runs on Python 3.6 without torch; the host side (model registry) reads it too.
"""

CITYSCAPES_CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]

CITYSCAPES_PALETTE_RGB = [
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
]

# Label value that marks "no class" in Cityscapes train-id maps (not predicted, not coloured).
CITYSCAPES_IGNORE = 255

LABEL_SETS = {
    "cityscapes": {
        "name": "cityscapes",
        "classes": CITYSCAPES_CLASSES,
        "palette_rgb": CITYSCAPES_PALETTE_RGB,
        "ignore": CITYSCAPES_IGNORE,
    },
}


def get_classes(dataset):
    """Return the label set of ``dataset`` ('cityscapes'): class names, RGB palette, ignore label."""
    from .errors import EdgeposeError

    try:
        return LABEL_SETS[dataset]
    except KeyError:
        raise EdgeposeError(
            "unknown segmentation dataset {!r}; known: {}".format(dataset, ", ".join(sorted(LABEL_SETS)))
        ) from None
