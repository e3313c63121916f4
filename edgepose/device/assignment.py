"""Optimal assignment (minimum-cost matching) in numpy, for associative-embedding grouping.

The official LitePose/HigherHRNet decoder calls the ``munkres`` package; scipy's
``linear_sum_assignment`` would do too, but neither is a device dependency. This is the
shortest-augmenting-path (Jonker-Volgenant style) algorithm with the inner loop vectorised over
columns. It starts from a greedy row-minimum matching with feasible duals, so the common case in
pose grouping (every candidate has its own best person) needs no augmentation at all; each
conflicting row then costs one Dijkstra search. The result is an optimal assignment; when several
assignments are optimal (ties) the one chosen may differ from munkres', the total cost does not.
"""

import numpy as np


def min_cost_assignment(cost):
    """Return ``col_for_row`` (int array, one column per row) minimising the summed cost.

    ``cost`` is a 2-D array with no more rows than columns; every row gets a distinct column.
    """
    cost = np.asarray(cost, dtype=np.float64)
    n_rows, n_cols = cost.shape
    if n_rows > n_cols:
        raise ValueError("min_cost_assignment needs rows <= columns, got {}x{}".format(n_rows, n_cols))
    if not np.all(np.isfinite(cost)):
        raise ValueError("min_cost_assignment needs a finite cost matrix")
    col_for_row = np.full(n_rows, -1, dtype=np.int64)
    row_for_col = np.full(n_cols, -1, dtype=np.int64)
    if n_rows == 0:
        return col_for_row
    # Feasible duals: u = row minima, v = 0 (every reduced cost >= 0).
    best = cost.argmin(axis=1)
    u = cost[np.arange(n_rows), best]
    v = np.zeros(n_cols)
    # Greedy start: the first row that wants a column takes it (that edge is tight).
    cols, rows = np.unique(best, return_index=True)
    row_for_col[cols] = rows
    col_for_row[rows] = cols
    for row in np.flatnonzero(col_for_row < 0):
        _augment(cost, u, v, row_for_col, col_for_row, int(row))
    return col_for_row


def _augment(cost, u, v, row_for_col, col_for_row, start):
    """Grow one shortest augmenting path from the free row ``start`` and flip it (Dijkstra on reduced costs)."""
    n_cols = cost.shape[1]
    shortest = np.full(n_cols, np.inf)
    path = np.full(n_cols, -1, dtype=np.int64)
    scanned = np.zeros(n_cols, dtype=bool)
    visited_rows = [start]
    row, reached, sink = start, 0.0, -1
    while sink < 0:
        reduced = reached + cost[row] - u[row] - v
        better = (~scanned) & (reduced < shortest)
        path[better] = row
        shortest[better] = reduced[better]
        candidates = np.where(scanned, np.inf, shortest)
        lowest = candidates.min()
        # Unreachable with finite costs and rows <= columns: a broken invariant raises instead of looping.
        if not np.isfinite(lowest):
            raise ValueError("min_cost_assignment: no feasible assignment")
        ties = np.flatnonzero(candidates == lowest)
        free = ties[row_for_col[ties] < 0]
        col = int(free[0]) if len(free) else int(ties[0])  # prefer ending the path
        reached = lowest
        scanned[col] = True
        if row_for_col[col] < 0:
            sink = col
        else:
            row = int(row_for_col[col])
            visited_rows.append(row)
    # Dual update keeps every reduced cost >= 0 and the new path tight.
    u[start] += reached
    for r in visited_rows[1:]:
        u[r] += reached - shortest[col_for_row[r]]
    v[scanned] -= reached - shortest[scanned]
    col = sink
    while True:
        row = int(path[col])
        row_for_col[col] = row
        col_for_row[row], col = col, col_for_row[row]
        if row == start:
            break
