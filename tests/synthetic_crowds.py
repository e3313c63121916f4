"""Synthetic crowds: LitePose-like heatmaps and tags of people whose joints are known (issue #14).

Every drawn joint is a Gaussian (sigma 2) on its joint's heatmap with a random peak, combined with the
other people's by max (as training targets are); the joint's tag map holds the person's tag on the
pixels within 4 px of the joint (the nearest joint's where two overlap). People's tags are 1.5 apart
(+-0.1) in random order. Heatmaps get Gaussian pixel noise of 0.005, tags of 0.05. Positions are in
map pixels where pixel i spans [i, i+1), the decoder's convention (its quarter-pixel step ends +0.5).

Layouts: a grid (one person per 20 px cell, joints 4 px or more inside it, so same-type joints of two
people are at least 8 px apart; peaks in [0.15, 1]) and clusters of 2-4 people side by side whose
same-type joints are 6-10 px apart. In clusters peaks are in [0.4, 1]: the official 5x5 NMS (not the
grouping) cannot keep a peak next to one 2.5 times stronger 6 px away, in any decoder.
"""

import numpy as np

SIGMA = 2.0
TAG_RADIUS = 4.0
TAG_SPACING = 1.5
HEAT_NOISE = 0.005
TAG_NOISE = 0.05
CELL = 20


class Scene:
    """``det`` (J, H, W) and ``tags`` (J, H, W, 1) at the grouping resolution; ``truth`` (P, J, 3):
    x, y and the drawn peak (0: the joint is not drawn); ``person_tags`` (P,)."""

    def __init__(self, det, tags, truth, person_tags):
        self.det, self.tags, self.truth, self.person_tags = det, tags, truth, person_tags


def grid_scene(n_people, num_joints, seed=0, missing=0.0, peaks=(0.15, 1.0), size=None):
    """``n_people`` on a square-ish grid; each joint is left out with probability ``missing``.

    ``size`` (H, W): a larger map to hold the grid (in its top-left corner); None: just the grid.
    """
    rng = np.random.RandomState(seed)
    cols = int(np.ceil(np.sqrt(n_people)))
    rows = (n_people - 1) // cols + 1
    index = np.arange(n_people)
    corner = np.stack([index % cols, index // cols], axis=1) * CELL
    truth = np.zeros((n_people, num_joints, 3))
    truth[:, :, :2] = corner[:, None, :] + rng.uniform(4, CELL - 4, (n_people, num_joints, 2))
    truth[:, :, 2] = rng.uniform(peaks[0], peaks[1], (n_people, num_joints))
    truth[rng.rand(n_people, num_joints) < missing, 2] = 0
    return _scene(truth, _size((rows * CELL, cols * CELL), size), rng)


def cluster_scene(n_people, num_joints, seed=0, missing=0.0, peaks=(0.4, 1.0), size=None):
    """Clusters of 2-4 people in a row, each in a 50 x 20 px cell: neighbours' same-type joints are 6-10
    px apart horizontally (+-1 px vertically)."""
    rng = np.random.RandomState(seed)
    sizes = []
    while sum(sizes) < n_people:
        sizes.append(min(rng.randint(2, 5), n_people - sum(sizes)))
    cols = int(np.ceil(np.sqrt(len(sizes) / 2.5)))  # cells are 2.5 times wider than high
    truth = np.zeros((n_people, num_joints, 3))
    person = 0
    for c, k in enumerate(sizes):
        x0, y0 = (c % cols) * 50, (c // cols) * CELL
        template = rng.uniform(5, 15, (num_joints, 2))
        steps = np.concatenate([np.zeros((1, num_joints)), rng.uniform(6, 10, (k - 1, num_joints))])
        block = truth[person : person + k]
        block[:, :, 0] = x0 + template[:, 0] + np.cumsum(steps, axis=0)
        block[:, :, 1] = y0 + template[:, 1] + rng.uniform(-1, 1, (k, num_joints))
        person += k
    truth[:, :, 2] = rng.uniform(peaks[0], peaks[1], (n_people, num_joints))
    truth[rng.rand(n_people, num_joints) < missing, 2] = 0
    rows = (len(sizes) - 1) // cols + 1
    return _scene(truth, _size((rows * CELL, cols * 50), size), rng)


def _size(needed, size):
    if size is None:
        return needed
    if size[0] < needed[0] or size[1] < needed[1]:
        raise ValueError("the scene needs a {}x{} map, more than {}x{}".format(needed[0], needed[1], *size))
    return tuple(size)


def _scene(truth, size, rng):
    n = len(truth)
    person_tags = TAG_SPACING * (rng.permutation(n) - n / 2.0) + rng.uniform(-0.1, 0.1, n)
    det = draw_heatmaps(truth, size, rng)
    tags = draw_tags(truth, person_tags, size, rng)[..., None]
    return Scene(det, tags, truth, person_tags)


def _patch(x, y, radius, size):
    """Pixel index ranges around (x, y) and the squared distances of their centres to it."""
    x0, x1 = max(int(x - radius), 0), min(int(x + radius) + 2, size[1])
    y0, y1 = max(int(y - radius), 0), min(int(y + radius) + 2, size[0])
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    return (slice(y0, y1), slice(x0, x1)), (xx - x) ** 2 + (yy - y) ** 2


def draw_heatmaps(truth, size, rng):
    det = np.zeros((truth.shape[1],) + tuple(size), np.float64)
    for p, j in zip(*np.nonzero(truth[:, :, 2] > 0)):
        x, y, peak = truth[p, j]
        window, d2 = _patch(x, y, 4 * SIGMA, size)
        np.maximum(det[j][window], peak * np.exp(-d2 / (2 * SIGMA**2)), out=det[j][window])
    return (det + rng.normal(0, HEAT_NOISE, det.shape)).astype(np.float32)


def draw_tags(truth, person_tags, size, rng, scale=1.0):
    """(J, H, W) tag maps at ``scale`` times the truth's resolution (0.5: the 1/4 output of a 1/2 map)."""
    tags = np.zeros((truth.shape[1],) + tuple(size), np.float64)
    nearest = np.full(tags.shape, np.inf)
    radius = TAG_RADIUS * scale
    for p, j in zip(*np.nonzero(truth[:, :, 2] > 0)):
        window, d2 = _patch(truth[p, j, 0] * scale, truth[p, j, 1] * scale, radius, size)
        mine = (d2 <= radius**2) & (d2 < nearest[j][window])
        tags[j][window][mine] = person_tags[p]
        nearest[j][window][mine] = d2[mine]
    return (tags + rng.normal(0, TAG_NOISE, tags.shape)).astype(np.float32)


def network_outputs(scene, seed=0):
    """What LitePose would output for the scene: (2J, H/2, W/2) heatmaps + tags and (J, H, W) heatmaps.

    The 1/4 heatmaps are zero and the 1/2 ones twice the scene's, so their average is the scene's det;
    the 1/4 tag maps are drawn at that resolution (upsampled by the decoder).
    """
    joints, height, width = scene.det.shape
    rng = np.random.RandomState(seed)
    quarter_tags = draw_tags(scene.truth, scene.person_tags, (height // 2, width // 2), rng, scale=0.5)
    quarter = np.concatenate([np.zeros_like(quarter_tags), quarter_tags])
    return quarter, 2 * scene.det


def check_people(poses, truth, min_joints=1, tol=1.0):
    """Compare decoded poses (Q, J, 3) with the truth: one list of problems, empty when every person with
    ``min_joints`` drawn joints is found once, with exactly its drawn joints, each within ``tol`` px,
    and nothing else is found."""
    poses = np.asarray(poses, np.float64)
    drawn = truth[:, :, 2] > 0
    found = poses[:, :, 2] > 0
    close = np.sqrt(((poses[:, None, :, :2] - truth[None, :, :, :2]) ** 2).sum(axis=3)) <= tol  # (Q, P, J)
    same = np.all(found[:, None, :] == drawn[None, :, :], axis=2) & np.all(close | ~drawn[None], axis=2)
    expected = drawn.sum(axis=1) >= min_joints
    problems = []
    for p in np.flatnonzero(expected & (same.sum(axis=0) != 1)):
        problems.append(f"person {p} found {int(same[:, p].sum())} times")
    for q in np.flatnonzero(~same[:, expected].any(axis=1)):
        problems.append(f"pose {q} ({int(found[q].sum())} joints) is nobody's")
    return problems
