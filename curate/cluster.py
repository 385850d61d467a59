"""Near-duplicate clustering that cannot chain dissimilar rows together.

Candidate edges (verified pairs above the threshold) give connected components. Inside a
component, rows are visited best-first (by the stage's rank rule); a row joins the first
center it is *itself* similar to (checked with the real similarity, not through a chain),
otherwise it becomes a new center. So every dropped row is above the threshold with the row
that represents it, and the kept row is the best of its cluster.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def cluster_by_centers(n: int, edges: np.ndarray, rank: np.ndarray,
                       similar: Callable[[int, int], bool]) -> np.ndarray:
    """rep[i] = index of the representative of row i (rep[i] == i for kept rows).

    edges: (m, 2) int array of verified similar pairs; rank: higher is better.
    """
    rep = np.arange(n)
    if len(edges) == 0:
        return rep
    g = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    adj: dict[int, set[int]] = {}
    for a, b in edges.tolist():
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    order = np.lexsort((np.arange(n), -rank))  # best first, ties by position
    comp_members: dict[int, list[int]] = {}
    for i in order.tolist():
        if i in adj:
            comp_members.setdefault(int(labels[i]), []).append(i)
    for members in comp_members.values():
        centers: list[int] = []
        for i in members:
            for c in centers:
                if c in adj[i] or similar(i, c):
                    rep[i] = c
                    break
            else:
                centers.append(i)
    return rep
