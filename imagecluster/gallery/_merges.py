"""Every average-linkage merge above the graph's floor, so a page can cut at any sim without a server.

``imagecluster cluster --sim S`` joins two groups when their photos are, on
average, at least ``S`` similar. Average linkage merges the most similar pair
of groups first and its merge heights only fall, so the groups at *any*
``S`` are what the merges of height ``>= S`` join. Computing the merges once,
down to the graph's floor, and keeping them sorted by height therefore lets
a gallery regroup at any ``S >= floor`` by replaying a prefix of the list
with a union-find, instantly and offline.

Merges are found per connected component of the floor graph (average
linkage never joins groups that no pair at or above the height connects):
a pair by its edge, a component small enough for a dense matrix with scipy,
a larger one with the bounded method of :mod:`imagecluster._linkage`. A
merge is kept as ``(a row of one group, a row of the other, height)``; the
height recorded is the lowest on its path to the leaves, so the list stays
monotone even where float rounding makes scipy's heights dip by a hair (the
same rule ``fcluster`` applies). The cut compares ``height >= S - 1e-6``, the
tolerance :mod:`imagecluster.cluster` uses, so a ``S`` equal to a merge height
joins it in both.
"""

import numpy as np

from .._edges import Edges
from .._linkage import DEFAULT_DENSE_BUDGET, dense_bytes, graph_average_linkage

__all__ = ["TOLERANCE", "Merges", "cut_merges", "library_merges"]

#: As :mod:`imagecluster.cluster`: merges at height >= sim - TOLERANCE are made.
TOLERANCE = 1e-6


class Merges:
    """Merges of a library's photos, most similar first.

    Parameters
    ----------
    a, b : ndarray of shape (n_merges,), dtype int
        A photo (row) of each of the two groups merged.
    sim : ndarray of shape (n_merges,), dtype float64
        The merge's height in similarity, non-increasing.
    """

    def __init__(self, a, b, sim):
        self.a = np.asarray(a, dtype=np.int64)
        self.b = np.asarray(b, dtype=np.int64)
        self.sim = np.asarray(sim, dtype=np.float64)

    def __len__(self):
        return len(self.sim)


def library_merges(unit, edges, floor, *, dense_budget=DEFAULT_DENSE_BUDGET):
    """Every average-linkage merge at or above ``floor``, the whole library's, most similar first.

    Parameters
    ----------
    unit : ndarray or UnitRows of shape (n_images, n_features)
        L2-normalised fingerprints (rows are read per component).
    edges : Edges
        At least every pair with similarity >= ``floor``.
    floor : float
        Lowest height kept (the lowest sim the gallery offers).
    dense_budget : int, default=DEFAULT_DENSE_BUDGET
        Bytes one component may take as a dense matrix; larger ones use the
        bounded method.

    Returns
    -------
    Merges
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(unit)
    edges = edges.at_least(floor - TOLERANCE)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges.i, edges.j)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=count)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    parts = []
    pairs = sizes == 2
    if pairs.any():  # a pair is one merge, at its edge's similarity (as the cut's components see it)
        two = sizes[labels[edges.i]] == 2
        parts.append((edges.i[two], edges.j[two], edges.sim[two].astype(np.float64)))
    for label in np.flatnonzero(sizes > 2).tolist():
        members = order[starts[label] : starts[label + 1]]
        if dense_bytes(len(members)) <= dense_budget:
            a, b, sim = _dense_merges(unit[members], floor)
        else:
            a, b, sim = _bounded_merges(unit[members], members, edges, labels, label, floor)
        parts.append((members[a], members[b], sim))
    if not parts:
        return Merges([], [], [])
    a, b, sim = (np.concatenate(column) for column in zip(*parts))
    keep = sim >= floor - TOLERANCE
    a, b, sim = a[keep], b[keep], sim[keep]
    by_height = np.argsort(-sim, kind="stable")
    return Merges(a[by_height], b[by_height], sim[by_height])


def _dense_merges(unit, floor):
    """Scipy's average linkage of one component; merges as (leaf row, leaf row, monotone height)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    m = len(unit)
    points = np.asarray(unit, dtype=np.float64)
    distances = points @ points.T
    np.subtract(1.0, distances, out=distances)
    np.clip(distances, 0.0, 2.0, out=distances)
    np.fill_diagonal(distances, 0.0)
    distances = np.maximum(distances, distances.T)
    tree = linkage(squareform(distances, checks=False), method="average")
    # A leaf of each node (its first), and the lowest similarity below it (fcluster's rule for inversions).
    leaf = np.concatenate([np.arange(m), np.zeros(m - 1, dtype=np.int64)])
    low = np.concatenate([np.full(m, np.inf), np.zeros(m - 1)])
    left, right = tree[:, 0].astype(np.int64), tree[:, 1].astype(np.int64)
    heights = 1.0 - tree[:, 2]
    for k in range(m - 1):
        leaf[m + k] = leaf[left[k]]
        low[m + k] = min(heights[k], low[left[k]], low[right[k]])
    return leaf[left], leaf[right], low[m:]


def _bounded_merges(unit, members, edges, labels, label, floor):
    """The bounded method's merges of one component too large for a dense matrix."""
    mine = labels[edges.i] == label
    position = np.empty(int(members.max()) + 1, dtype=np.int64)
    position[members] = np.arange(len(members))
    local = Edges(position[edges.i[mine]], position[edges.j[mine]], edges.sim[mine])
    merges = []
    graph_average_linkage(unit, local.i, local.j, floor, merges=merges)
    if not merges:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    a, b, sim = (np.array(column) for column in zip(*merges))
    return a.astype(np.int64), b.astype(np.int64), np.minimum.accumulate(sim.astype(np.float64))


def cut_merges(merges, n, sim, min_size=2):
    """The groups at ``sim``: replay the merges at or above it (what the gallery's page does).

    Parameters
    ----------
    merges : Merges
    n : int
        Number of photos (rows).
    sim : float
        The cut, at or above the floor the merges were made down to.
    min_size : int, default=2
        Smaller groups are left out.

    Returns
    -------
    list of list of int
        Rows of each group, sorted; largest first, ties by first row.
    """
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    made = int(np.searchsorted(-merges.sim, -(sim - TOLERANCE), side="right"))
    for a, b in zip(merges.a[:made].tolist(), merges.b[:made].tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups = {}
    for row in range(n):
        groups.setdefault(find(row), []).append(row)
    out = [g for g in groups.values() if len(g) >= min_size]
    out.sort(key=lambda g: (-len(g), g[0]))
    return out
