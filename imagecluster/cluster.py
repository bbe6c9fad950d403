"""Grouping fingerprints by similarity: average-linkage clustering cut at ``sim``.

The default, **absolute** cut works on cosine distance ``1 - cos(a, b)`` of the
fingerprints and cuts the dendrogram at ``1 - sim``: two groups are merged when
their photos are, on average, at least ``sim`` similar. The same ``sim`` gives
the same groups whether the library holds 100 photos or 100,000.

The **relative** cut is the original imagecluster's rule: euclidean distances,
cut at ``(1 - sim) * max(pairwise distance)``, so its meaning shifts with the
most different pair of photos in the library.

Neither needs the full ``n x n`` distance matrix. Average linkage never merges
two groups that single linkage would keep apart at the same height (the
smallest distance between two groups is at most their average distance), so the
groups are found inside the connected components of the graph "distance <=
threshold". For the absolute cut that graph is the pairs at least ``sim``
similar (:mod:`imagecluster._edges`, exact, in tiles at BLAS speed), which a
library keeps from run to run (:mod:`imagecluster.graph`, :func:`cluster_graph`).
Inside the components (:mod:`imagecluster._linkage`): the many small ones in
batches, larger ones with scipy on their own distance matrix, and one too
large for a dense matrix within ``dense_budget`` with an exact method whose
memory grows only with its photos and edges. For photo libraries, where
similar photos come in bursts, the components are small.
"""

import logging

import numpy as np

from ._edges import Edges, similarity_edges, unit_rows
from ._exceptions import InvalidParameter
from ._linkage import DEFAULT_DENSE_BUDGET, SMALL_COMPONENT, component_groups, dense_bytes, small_component_groups
from ._validation import check_count, check_sim

__all__ = [
    "CUTS", "DEFAULT_DENSE_BUDGET", "DEFAULT_SIM", "check_cut", "check_dense_budget", "check_fingerprints",
    "check_min_size", "check_sim", "cluster", "cluster_graph",
]

logger = logging.getLogger(__name__)

#: The ways of turning ``sim`` into a dendrogram cut.
CUTS = ("absolute", "relative")

#: Default similarity index, chosen from measurements on real photo bursts
#: (see the README's quality table): the middle of the range where F1 is best.
DEFAULT_SIM = 0.7

# Distances are computed in float32; two identical photos can come out a hair
# apart, which must still count as "identical" at sim=1.
_TOLERANCE = 1e-6

# Elements of one block of the distance matrix held at once (32 MB of float32).
_BLOCK_ELEMENTS = 1 << 23


def check_fingerprints(fingerprints):
    """Return fingerprints as a C-contiguous float32 array of shape (n_images, n_features).

    Raises InvalidParameter for anything that is not a finite 2-D numeric array.
    """
    try:
        array = np.asarray(fingerprints, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"fingerprints must be a numeric array: {exc}") from exc
    if array.ndim != 2:
        raise InvalidParameter(
            f"fingerprints must have shape (n_images, n_features), got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InvalidParameter("fingerprints contain NaN or infinite values")
    return np.ascontiguousarray(array)


def check_min_size(min_size):
    """Return ``min_size`` as an int >= 1, or raise InvalidParameter."""
    return check_count(min_size, "min_size")


def check_cut(cut):
    """Return ``cut`` if it is one of :data:`CUTS`, or raise InvalidParameter."""
    if cut not in CUTS:
        raise InvalidParameter(f"cut must be one of {', '.join(CUTS)}, got {cut!r}")
    return cut


def cluster(fingerprints, sim=DEFAULT_SIM, min_size=2, *, cut="absolute", dense_budget=DEFAULT_DENSE_BUDGET):
    """Group similar photos.

    Parameters
    ----------
    fingerprints : array-like of shape (n_images, n_features)
        One fingerprint per photo (need not be normalised).
    sim : float, default=DEFAULT_SIM
        Similarity index in 0..1. Higher means stricter: ``sim=1`` groups only
        identical photos, ``sim=0`` puts every photo into one group.
    min_size : int, default=2
        Groups with fewer photos are not reported.
    cut : {"absolute", "relative"}, default="absolute"
        ``"absolute"`` cuts at cosine distance ``1 - sim``; ``"relative"`` is the
        original imagecluster's rule, euclidean distance ``(1 - sim)`` times the
        largest pairwise distance.
    dense_budget : int, default=DEFAULT_DENSE_BUDGET
        Bytes a group of similar photos may take as a dense distance matrix
        (absolute cut). Larger groups are clustered by the bounded method of
        :mod:`imagecluster._linkage`, in memory linear in their size.

    Returns
    -------
    list of list of int
        Row indices of ``fingerprints``, one list per group, largest group
        first (ties: the group with the smallest index first), each sorted.
    """
    fps = check_fingerprints(fingerprints)
    sim, min_size, cut = check_sim(sim), check_min_size(min_size), check_cut(cut)
    dense_budget = check_dense_budget(dense_budget)
    if cut == "relative":
        return _cluster_relative(fps, sim, min_size)
    n = fps.shape[0]
    if n < min_size:
        return []
    if sim == 0.0 or n == 1:
        return [list(range(n))]
    unit = unit_rows(fps)
    return _cluster_edges(unit, similarity_edges(unit, sim - _TOLERANCE), sim, min_size, dense_budget)


def cluster_graph(unit, edges, sim=DEFAULT_SIM, min_size=2, *, dense_budget=DEFAULT_DENSE_BUDGET):
    """Group photos from their similarity graph (absolute cut), as :func:`cluster` does.

    The fast path for a library whose graph is kept (:mod:`imagecluster.graph`):
    only the edges at or above ``sim`` are looked at, and each component's
    fingerprints.

    Parameters
    ----------
    unit : ndarray of shape (n_images, n_features), dtype float32
        L2-normalised fingerprints.
    edges : Edges
        At least every pair with similarity >= ``sim`` (rows of ``unit``).
    sim : float, default=DEFAULT_SIM
        Similarity index in 0..1; must not be 0 (every photo in one group
        needs no graph).
    min_size : int, default=2
    dense_budget : int, default=DEFAULT_DENSE_BUDGET

    Returns
    -------
    list of list of int
        As :func:`cluster`.
    """
    sim, min_size = check_sim(sim), check_min_size(min_size)
    if len(unit) < min_size:
        return []
    if sim == 0.0:
        return [list(range(len(unit)))]
    return _cluster_edges(unit, edges.at_least(sim - _TOLERANCE), sim, min_size, check_dense_budget(dense_budget))


def check_dense_budget(dense_budget):
    """Return ``dense_budget`` as an int >= 0 (bytes), or raise InvalidParameter."""
    if isinstance(dense_budget, bool) or not isinstance(dense_budget, (int, np.integer)) or dense_budget < 0:
        raise InvalidParameter(f"dense_budget must be a whole number of bytes >= 0, got {dense_budget!r}")
    return int(dense_budget)


def _cluster_edges(unit, edges, sim, min_size, dense_budget):
    """Groups of the connected components of ``edges`` (all >= the cut), largest first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(unit)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges.i, edges.j)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=count)
    order = np.argsort(labels, kind="stable")
    components = np.split(order, np.cumsum(sizes)[:-1])
    by_component = None
    groups, small = [], []
    for label, members in enumerate(components):
        if len(members) < min_size:
            continue
        if len(members) <= 2:  # one photo, or two joined by an edge at or above the cut
            groups.append(members.tolist())
            continue
        if len(members) <= SMALL_COMPONENT:
            small.append(members)
            continue
        local = Edges.empty()
        if dense_bytes(len(members)) > dense_budget:
            if by_component is None:  # the edges of each component, for the bounded method
                edge_order = np.argsort(labels[edges.i], kind="stable")
                bounds = np.searchsorted(labels[edges.i][edge_order], np.arange(count + 1))
                by_component = (edge_order, bounds)
            edge_order, bounds = by_component
            mine = edges.take(edge_order[bounds[label] : bounds[label + 1]])
            position = np.empty(n, dtype=np.int64)
            position[members] = np.arange(len(members))
            local = Edges(position[mine.i], position[mine.j], mine.sim)
            logger.info("a group of %d similar photos is clustered by the bounded method", len(members))
        for group in component_groups(unit[members], local, sim, min_size, dense_budget=dense_budget):
            groups.append(members[group].tolist())
    groups.extend(g.tolist() for g in small_component_groups(unit, small, sim, min_size))
    groups.sort(key=lambda g: (-len(g), g[0]))
    return groups


def _cluster_relative(fps, sim, min_size):
    """The original imagecluster's rule: euclidean distances cut relative to the largest one."""
    n = fps.shape[0]
    if n < max(min_size, 1):
        return []
    if sim == 0.0 or n == 1:
        return [list(range(n))] if n >= min_size else []
    threshold = (1.0 - sim) * _max_euclidean_distance(fps) + _TOLERANCE
    groups = []
    for members in _components(fps, threshold, _euclidean_distances):
        if len(members) < min_size:
            continue
        groups.extend(_average_linkage(fps[members], members, threshold, _euclidean_distances, min_size))
    groups.sort(key=lambda g: (-len(g), g[0]))
    return groups


def _euclidean_distances(a, b):
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def _row_blocks(n):
    step = max(1, min(n, _BLOCK_ELEMENTS // max(n, 1)))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _max_euclidean_distance(points):
    return max(float(_euclidean_distances(points[a:b], points).max()) for a, b in _row_blocks(len(points)))


def _components(points, threshold, metric):
    """Connected components of the graph 'distance <= threshold', one block of rows at a time."""
    # SciPy is imported here, not at module level: it is ~35 MB of resident memory that a
    # process importing only DEFAULT_SIM or check_sim (the daemon's config) need not carry.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(points)
    row_parts, col_parts = [], []
    for start, stop in _row_blocks(n):
        close = metric(points[start:stop], points[start:]) <= threshold
        i, j = np.nonzero(close)
        keep = j > i  # upper triangle: each pair once, no self-loops
        row_parts.append(i[keep] + start)
        col_parts.append(j[keep] + start)
    rows = np.concatenate(row_parts)
    cols = np.concatenate(col_parts)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    splits = np.cumsum(np.bincount(labels, minlength=count))[:-1]
    return np.split(order, splits)


def _average_linkage(points, members, threshold, metric, min_size):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if len(members) <= 2:
        return [sorted(int(m) for m in members)]  # one photo, or two joined by an edge below threshold
    distances = metric(points.astype(np.float64), points.astype(np.float64))
    np.fill_diagonal(distances, 0.0)
    distances = np.maximum(distances, distances.T)  # exact symmetry for squareform
    tree = linkage(squareform(distances, checks=False), method="average")
    labels = fcluster(tree, t=threshold, criterion="distance")
    groups = []
    for label in np.unique(labels):
        group = members[labels == label]
        if len(group) >= min_size:
            groups.append(sorted(int(m) for m in group))
    return groups
