"""Associative-embedding grouping: peaks of every joint -> people, by tag distance and optimal assignment.

Joints are visited in a fixed order; each joint's peaks are matched to the people found so far by the
distance between the peak's tag and the person's mean tag, and a peak that joins nobody starts a person.
Two ways to match (``BottomUpDecoder(grouping=...)``):

- ``official``: the HigherHRNet/LitePose parser, exactly. Only the first ``max_people`` people may take
  joints; the cost is ``round(dist) * 100 - score``, padded with 1e10 "new person" columns, and pairs
  further than the tag threshold are rejected *after* the assignment. Past 30 people every joint of a
  later person starts a one-joint "person", and a correct pair can be traded for pairs the threshold
  then rejects (the cost of a far pair is finite and rounded, so it competes).
- ``crowd``: every person may take joints; pairs at or beyond the tag threshold are left out of the
  assignment (they cannot be chosen), and the cost of a pair is ``(dist / threshold) ** 2 - score``
  (unrounded: the closer tag wins; the score decides which peak a person keeps when two want it,
  against a "new person" cost of 1 that every allowed pair beats). The distance is squared because
  with one-dimensional tags plain distances tie exactly: two peaks on the same side of two people cost
  the same whichever way they are paired, and float noise of 1e-6 (onnxruntime vs PyTorch) then picks
  the pairing. Squared, the order-keeping pairing is cheaper by 2 * (gap of the peaks) * (gap of the
  people).
"""

import numpy as np

from .assignment import min_cost_assignment

_PAD_COST = 1e10  # official: cost of "start a new person"
_NEW_PERSON = 1.0  # crowd: above every allowed pair's (dist / threshold) ** 2 - score (< 1 - det threshold)
_NOT_ALLOWED = 1e6  # crowd: a pair beyond the tag threshold; never worth more than starting new people


def official_assign(dist, scores, tag_threshold):
    """The official ``match_by_tag`` step: the group of each candidate (-1: starts a new person).

    ``dist`` (N, G): tag distances to the G groups that may take joints; ``scores`` (N,).
    """
    n, groups = dist.shape
    cost = np.round(dist) * 100.0 - scores[:, None]
    if n > groups:
        cost = np.concatenate([cost, np.full((n, n - groups), _PAD_COST)], axis=1)
    cols = min_cost_assignment(cost)
    rows = np.arange(n)
    ok = cols < groups
    ok[ok] = dist[rows[ok], cols[ok]] < tag_threshold
    return np.where(ok, cols, -1)


def crowd_assign(dist, scores, tag_threshold):
    """Optimal assignment over the pairs closer than ``tag_threshold`` only (-1: starts a new person)."""
    allowed = dist < tag_threshold
    per_row, per_col = allowed.sum(axis=1), allowed.sum(axis=0)
    if per_row.max() <= 1 and per_col.max() <= 1:  # the common case: nobody competes for a person
        return np.where(per_row > 0, allowed.argmax(axis=1), -1)
    out = np.full(dist.shape[0], -1, dtype=np.int64)
    rows = np.flatnonzero(per_row)
    if not len(rows):
        return out
    cols = np.flatnonzero(allowed.any(axis=0))
    sub = allowed[np.ix_(rows, cols)]
    # Most candidates have one allowed group that no other candidate may take: no assignment needed.
    single = (sub.sum(axis=1) == 1) & (sub.sum(axis=0)[sub.argmax(axis=1)] == 1)
    out[rows[single]] = cols[sub[single].argmax(axis=1)]
    rest = rows[~single]
    if not len(rest):
        return out
    cols = np.flatnonzero(allowed[rest].any(axis=0))
    k, m = len(rest), len(cols)
    cost = np.full((k, m + k), _NOT_ALLOWED)
    near = allowed[np.ix_(rest, cols)]
    scaled = dist[np.ix_(rest, cols)] / tag_threshold
    cost[:, :m] = np.where(near, scaled * scaled - scores[rest, None], _NOT_ALLOWED)
    cost[np.arange(k), m + np.arange(k)] = _NEW_PERSON  # each candidate's own "new person" column
    picked = min_cost_assignment(cost)
    joined = picked < m
    out[rest[joined]] = cols[picked[joined]]
    return out


def group_peaks(js, xs, ys, vals, cand_tags, num_joints, joint_order, assign, max_groups=None):
    """Group the peaks (sorted by joint) into people; ``assign(dist, scores)`` matches one joint's peaks.

    Only the first ``max_groups`` people may take joints (None: all). Returns poses (P, J, 3) of
    (x, y, score) at integer peak pixels, and the number of joints each person holds (P,).
    """
    dim = cand_tags.shape[1]
    starts = np.searchsorted(js, np.arange(num_joints + 1))
    peaks = np.stack([xs, ys, vals], axis=1).astype(np.float64)
    capacity = len(js)
    poses = np.zeros((capacity, num_joints, 3), np.float64)
    tag_sum = np.zeros((capacity, dim), np.float64)
    count = np.zeros(capacity, np.float64)
    n_groups = 0
    for joint in joint_order:
        lo, hi = starts[joint], starts[joint + 1]
        if hi == lo:
            continue
        found = peaks[lo:hi]
        ctags = cand_tags[lo:hi]
        new = np.ones(hi - lo, dtype=bool)
        if n_groups:
            matched = n_groups if max_groups is None else min(n_groups, max_groups)
            means = tag_sum[:matched] / count[:matched, None]
            if dim == 1:  # the same value: sqrt(x * x) == |x| in IEEE arithmetic
                dist = np.abs(ctags - means.T)
            else:
                dist = np.sqrt(((ctags[:, None, :] - means[None, :, :]) ** 2).sum(axis=2))
            group = assign(dist, found[:, 2])
            ok = group >= 0
            poses[group[ok], joint] = found[ok]
            tag_sum[group[ok]] += ctags[ok]
            count[group[ok]] += 1
            new = ~ok
        n_new = int(new.sum())
        poses[n_groups : n_groups + n_new, joint] = found[new]
        tag_sum[n_groups : n_groups + n_new] = ctags[new]
        count[n_groups : n_groups + n_new] = 1
        n_groups += n_new
    return poses[:n_groups], count[:n_groups]
