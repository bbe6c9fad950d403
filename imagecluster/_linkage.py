"""Average linkage inside one connected component, cut at a similarity.

Two ways, with the same result:

**batched** (:func:`small_component_groups`): the many small components of a
library (bursts of a few photos) at once, as stacks of small similarity
matrices merged in lock step with the Lance-Williams rule of average linkage
(the merged group's similarity to a third is the size-weighted mean of its
parts'). One pass of numpy per merge step for thousands of components,
instead of one scipy call each.

**dense** (scipy): the component's full distance matrix, ``linkage`` and
``fcluster``. About ``24 m^2`` bytes for ``m`` photos (the float64 matrix, its
symmetric copy and the condensed form), so it is used only while that fits
the memory budget.

**bounded** (:func:`graph_average_linkage`): exact average linkage in
``O(m d + edges)`` memory, built on two facts:

* For L2-normalised fingerprints the average cosine similarity of two groups
  is ``s_A . s_B / (n_A n_B)``, where ``s`` is the sum of a group's
  fingerprints. A group is its sum and its size: the average over all
  ``n_A n_B`` pairs is one dot product, never a matrix.
* Two groups whose average similarity reaches the cut have at least one
  pair of photos at or above it (an average is at most its maximum). So only
  groups joined by an edge of the similarity graph can ever merge.

Merging the most similar joined pair first, until no joined pair reaches the
cut, is then exactly what average linkage cut at that height does (it has
no inversions: merge heights only grow). Only the arithmetic differs from
scipy's (sums instead of a matrix), so results agree except for pairs within
rounding of the cut; ``benchmarks/cluster_scale.py`` measures the agreement.
"""

import heapq

import numpy as np

__all__ = [
    "DEFAULT_DENSE_BUDGET", "batched_average_linkage", "component_groups", "dense_bytes", "graph_average_linkage",
    "small_component_groups",
]

#: Largest dense distance matrix (bytes, all copies) a component may get; larger
#: components use the bounded method.
DEFAULT_DENSE_BUDGET = 1 << 30

# Merges at average similarity >= sim - _TOLERANCE: two identical photos can
# come out a hair apart in float32 and must still count as identical at sim=1.
_TOLERANCE = 1e-6


#: Components of at most this many photos are clustered in batches (:func:`small_component_groups`).
SMALL_COMPONENT = 128

# Floats gathered at once when a batch of small components is stacked (128 MB of float64).
_BATCH_VALUES = 1 << 24


def dense_bytes(m):
    """Bytes the dense path needs for a component of ``m`` photos."""
    return 24 * m * m


def component_groups(unit, edges, sim, min_size, *, dense_budget=DEFAULT_DENSE_BUDGET):
    """The average-linkage groups of one connected component at ``sim``.

    Parameters
    ----------
    unit : ndarray of shape (m, n_features), dtype float32
        The component's L2-normalised fingerprints.
    edges : Edges
        Its pairs with similarity >= ``sim`` (local row numbers), used only by
        the bounded method.
    sim : float
        The cut: groups are, on average, at least this similar.
    min_size : int
        Smaller groups are left out.
    dense_budget : int, default=DEFAULT_DENSE_BUDGET
        Bytes the dense method may use; beyond it the bounded method runs.

    Returns
    -------
    list of ndarray of int
        Local row numbers of each group, sorted.
    """
    m = len(unit)
    if m <= 2:  # one photo, or two joined by an edge at or above the cut
        return [np.arange(m)] if m >= min_size else []
    if dense_bytes(m) <= dense_budget:
        labels = _dense_labels(unit, sim)
    else:
        labels = graph_average_linkage(unit, edges.i, edges.j, sim)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    groups = np.split(order, np.cumsum(counts[counts > 0])[:-1]) if len(order) else []
    return [np.sort(g) for g in groups if len(g) >= min_size]


def _dense_labels(unit, sim):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    points = unit.astype(np.float64)
    distances = points @ points.T
    np.subtract(1.0, distances, out=distances)
    np.clip(distances, 0.0, 2.0, out=distances)
    np.fill_diagonal(distances, 0.0)
    distances = np.maximum(distances, distances.T)  # exact symmetry for squareform
    tree = linkage(squareform(distances, checks=False), method="average")
    _, labels = np.unique(fcluster(tree, t=1.0 - sim + _TOLERANCE, criterion="distance"), return_inverse=True)
    return labels


def graph_average_linkage(unit, i, j, sim, *, merges=None):
    """Exact average linkage cut at ``sim``, in memory linear in photos and edges.

    Parameters
    ----------
    unit : ndarray of shape (m, n_features), dtype float32
        L2-normalised fingerprints.
    i, j : ndarray of shape (n_edges,), dtype int
        Every pair of rows with similarity >= ``sim`` (more pairs are harmless).
    sim : float
        The cut.
    merges : list, default=None
        When given, each merge is appended as ``(row_a, row_b, similarity)``:
        a row of each of the two groups and their average similarity, most
        similar first (the gallery replays them to cut at any sim above this one).

    Returns
    -------
    labels : ndarray of shape (m,), dtype int
        One label per row; rows with the same label form a group.
    """
    m = len(unit)
    cut = sim - _TOLERANCE
    owner = np.arange(m)  # row -> id of its group; a group's id is one of its rows
    members = {}  # group id -> rows, for groups of more than one row
    sums = {}  # group id -> float64 sum of its rows, for groups of more than one row
    size = np.ones(m, dtype=np.int64)
    version = np.zeros(m, dtype=np.int64)

    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    # Neighbours of each row (both directions), as CSR.
    both_i, both_j = np.concatenate([i, j]), np.concatenate([j, i])
    order = np.argsort(both_i, kind="stable")
    starts = np.searchsorted(both_i[order], np.arange(m + 1))
    adjacent = both_j[order]
    neighbours = {}  # group id -> rows next to it (any row of each neighbouring group), once merged

    heap = []
    step = 1 << 16
    for start in range(0, len(i), step):
        a, b = i[start : start + step], j[start : start + step]
        sims = np.einsum("ij,ij->i", unit[a].astype(np.float64), unit[b].astype(np.float64))
        keep = sims >= cut
        heap.extend(zip((-sims[keep]).tolist(), a[keep].tolist(), b[keep].tolist(),
                        [0] * int(keep.sum()), [0] * int(keep.sum())))
    heapq.heapify(heap)

    def vector(group):
        return sums[group] if group in sums else unit[group].astype(np.float64)

    while heap:
        negative, a, b, va, vb = heapq.heappop(heap)
        if -negative < cut:
            break
        if owner[a] != a or owner[b] != b or version[a] != va or version[b] != vb:
            continue  # one of them has merged since: a fresher entry stands for the pair
        big, small = (a, b) if size[a] >= size[b] else (b, a)
        if merges is not None:
            merges.append((big, small, -negative))
        small_rows = members.pop(small, np.array([small]))
        big_rows = members.get(big, np.array([big]))
        owner[small_rows] = big
        members[big] = np.concatenate([big_rows, small_rows])
        sums[big] = vector(big) + vector(small)
        sums.pop(small, None)
        size[big] += size[small]
        version[big] += 1
        near = np.concatenate([
            neighbours.pop(g) if g in neighbours else adjacent[starts[g] : starts[g + 1]] for g in (big, small)
        ])
        near = np.unique(owner[near])
        near = near[near != big]
        neighbours[big] = near
        if len(near):
            merged = np.array([g in sums for g in near.tolist()], dtype=bool)
            vectors = unit[near].astype(np.float64)
            for k in np.flatnonzero(merged):
                vectors[k] = sums[int(near[k])]
            averages = vectors @ sums[big] / (size[near] * size[big])
            for k in np.flatnonzero(averages >= cut):
                other = int(near[k])
                heapq.heappush(heap, (-float(averages[k]), big, other, int(version[big]), int(version[other])))
    return owner


def small_component_groups(unit, components, sim, min_size):
    """The groups of many small components at once (each of 3 to :data:`SMALL_COMPONENT` photos).

    Parameters
    ----------
    unit : ndarray of shape (n_images, n_features), dtype float32
        L2-normalised fingerprints of the whole library.
    components : list of ndarray of int
        Rows of each component, sorted, each of 3 to SMALL_COMPONENT rows.
    sim : float
        The cut.
    min_size : int
        Smaller groups are left out.

    Returns
    -------
    list of ndarray of int
        Rows of each group, sorted.
    """
    groups = []
    by_width = {}
    for members in components:
        by_width.setdefault(1 << int(len(members) - 1).bit_length(), []).append(members)
    for width, batch in sorted(by_width.items()):
        step = max(1, _BATCH_VALUES // (width * unit.shape[1]))
        for start in range(0, len(batch), step):
            groups.extend(_stacked_groups(unit, batch[start : start + step], width, sim, min_size))
    return groups


def _stacked_groups(unit, components, width, sim, min_size):
    counts = np.fromiter(map(len, components), np.int64, len(components))
    valid = np.arange(width)[None, :] < counts[:, None]
    rows = np.zeros((len(components), width), dtype=np.int64)
    rows[valid] = np.concatenate(components)
    points = unit[rows].astype(np.float64)
    sims = points @ points.transpose(0, 2, 1)
    sims[~(valid[:, :, None] & valid[:, None, :])] = -np.inf
    sims[:, np.arange(width), np.arange(width)] = -np.inf
    labels = batched_average_linkage(sims, valid.astype(np.float64), sim - _TOLERANCE)
    keys = (np.arange(len(components))[:, None] * width + labels)[valid]
    members = rows[valid]
    order = np.argsort(keys, kind="stable")  # rows of one component are sorted: groups stay sorted
    _, starts, sizes = np.unique(keys[order], return_index=True, return_counts=True)
    return [members[order[a : a + k]] for a, k in zip(starts.tolist(), sizes.tolist()) if k >= min_size]


def batched_average_linkage(sims, sizes, cut):
    """Average linkage of a stack of small similarity matrices, merged in lock step down to ``cut``.

    Parameters
    ----------
    sims : ndarray of shape (n_stacks, width, width), dtype float64
        Similarities; ``-inf`` on the diagonal and for padding. Changed in place.
    sizes : ndarray of shape (n_stacks, width), dtype float64
        1 for a photo, 0 for padding. Changed in place.
    cut : float
        Pairs of groups are merged, most similar first, while their average
        similarity is at least this.

    Returns
    -------
    labels : ndarray of shape (n_stacks, width), dtype int
        Within each stack, rows with the same label form a group.
    """
    n, width, _ = sims.shape
    labels = np.tile(np.arange(width), (n, 1))
    live = np.arange(n)
    flat = sims.reshape(n, width * width)
    for _ in range(width - 1):
        best = flat[live].argmax(axis=1)
        go = flat[live, best] >= cut
        live, best = live[go], best[go]
        if not len(live):
            break
        a, b = np.divmod(best, width)
        na, nb = sizes[live, a][:, None], sizes[live, b][:, None]
        merged = (na * sims[live, a, :] + nb * sims[live, b, :]) / (na + nb)  # Lance-Williams, average
        sims[live, a, :] = merged
        sims[live, :, a] = merged
        sims[live, a, a] = -np.inf
        sims[live, b, :] = -np.inf
        sims[live, :, b] = -np.inf
        sizes[live, a] += sizes[live, b]
        group = labels[live]
        labels[live] = np.where(group == b[:, None], a[:, None], group)
    return labels
