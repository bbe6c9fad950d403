"""Approximate search for the pairs of photos at least ``floor`` similar, for very large libraries.

The exact search (:func:`imagecluster._edges.similarity_edges`) compares every
pair: ``n^2 d`` multiply-adds, about 2 minutes on 2 cores at 100,000 photos
and 100 times that at 1,000,000. Here the photos are first split into
``cells`` by spherical k-means (an inverted file, "IVF", as in faiss), and a
photo is compared only with the photos of the ``probes`` cells whose centres
are nearest to it: ``probes / cells`` of the work. A pair is found when
either photo's home cell is among the other's probes, so a pair of similar
photos is lost only when both sit far from each other's cell centres.

Unlike a per-query index scan, the comparisons are grouped by cell: every
photo that probes a cell is multiplied with that cell's members in one matrix
product, at BLAS speed. Each similarity found is exact (a float32 product of
the full vectors); only pairs may be missed. The share found (pair recall)
is measured against the exact search on a sample by
``benchmarks/cluster_scale.py --approximate``.
"""

import logging

import numpy as np
from scipy import sparse

from ._edges import Edges
from ._screen import fit_screen

__all__ = ["APPROXIMATE_ABOVE", "approximate_edges"]

logger = logging.getLogger(__name__)

#: Libraries larger than this are searched approximately; up to it, exactly.
#: At 250,000 photos the exact search is about 6 times the 100,000 one.
APPROXIMATE_ABOVE = 250_000

_ROWS = 8192  # rows per matrix product when every photo is compared with every centre
_TRAIN_PER_CELL = 48  # k-means sample: photos per cell
_ITERATIONS = 8


def _nearest_centres(points, centres, k, out_top):
    """Write, for each row, its ``k`` most similar centres (best first) into ``out_top``."""
    for start in range(0, len(points), _ROWS):
        scores = points[start : start + _ROWS] @ centres.T
        if k == 1:
            out_top[start : start + _ROWS, 0] = scores.argmax(axis=1)
            continue
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out_top[start : start + _ROWS] = np.take_along_axis(top, order, axis=1)


def train_centres(points, cells, *, seed=0, iterations=_ITERATIONS):
    """Spherical k-means centres (unit rows) from a sample of ``points``.

    Parameters
    ----------
    points : ndarray of shape (n_images, n_features), dtype float32
        L2-normalised rows.
    cells : int
        Number of centres.
    seed : int, default=0
        The sample and the first centres are drawn with it, so a library gives
        the same cells every time.
    iterations : int, default=8

    Returns
    -------
    ndarray of shape (cells, n_features), dtype float32
    """
    rng = np.random.default_rng(seed)
    n = len(points)
    sample = points[np.sort(rng.choice(n, min(n, cells * _TRAIN_PER_CELL), replace=False))]
    centres = sample[rng.choice(len(sample), cells, replace=False)].copy()
    home = np.empty((len(sample), 1), dtype=np.int64)
    for _ in range(iterations):
        _nearest_centres(sample, centres, 1, home)
        # Sum of each cell's photos: one sparse product (np.add.at is ~100x slower).
        members = sparse.csr_matrix((np.ones(len(sample), np.float32), (home[:, 0], np.arange(len(sample)))),
                                    shape=(cells, len(sample)))
        sums = np.asarray(members @ sample, dtype=np.float32)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        # An empty cell takes a random photo as its centre again rather than vanish.
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]
        norms[empty] = 1.0
        centres = (sums / norms).astype(np.float32)
    return centres


def default_cells(n):
    """Cells for ``n`` photos: about 500 photos each, at least 1."""
    return max(1, int(round(n / 500)))


def approximate_edges(points, floor, *, cells=None, probes=None, seed=0, progress=None):
    """The pairs of rows at least ``floor`` similar, most of them, fast.

    Parameters
    ----------
    points : ndarray of shape (n_images, n_features), dtype float32
        L2-normalised rows.
    floor : float
        Smallest similarity kept.
    cells : int, default=None
        k-means cells; ``None`` for about 500 photos per cell.
    probes : int, default=None
        Cells each photo is compared with; ``None`` for 1/32 of the cells (at
        least 8). More probes find more pairs at proportionally more work
        (library-like fingerprints, 1,000,000 photos: 1/64 of the cells found
        98.6% of the pairs).
    seed : int, default=0
    progress : callable, default=None
        ``progress(done, total)`` in cells.

    Returns
    -------
    Edges
        Each pair found once (``i < j``); similarities exact.
    """
    n = len(points)
    cells = min(default_cells(n) if cells is None else int(cells), n)
    probes = min(cells, max(8, cells // 32) if probes is None else int(probes))
    logger.info("approximate pair search: %d photos in %d cells, %d probed each", n, cells, probes)
    screen = fit_screen(points, floor, seed=seed)
    # Cells are found among the principal components when there is a screen: the same
    # neighbours, at a third of the work.
    space = points if screen is None else screen.projected
    centres = train_centres(space, cells, seed=seed)
    probed = np.empty((n, probes), dtype=np.int32)
    _nearest_centres(space, centres, probes, probed)
    del centres
    home = probed[:, 0].copy()
    members_order = np.argsort(home, kind="stable")
    members_start = np.searchsorted(home[members_order], np.arange(cells + 1))
    # Every (photo, probed cell) pair, grouped by cell.
    queries_order = np.argsort(probed.reshape(-1), kind="stable")
    queries_start = np.searchsorted(probed.reshape(-1)[queries_order], np.arange(cells + 1))
    del probed
    keys = []
    for c in range(cells):
        members = members_order[members_start[c] : members_start[c + 1]]
        cell_queries = queries_order[queries_start[c] : queries_start[c + 1]] // probes
        cell_points = points[members].T if len(members) and screen is None else None
        for start in range(0, len(cell_queries) if len(members) else 0, _ROWS):
            queries = cell_queries[start : start + _ROWS]
            if screen is None:
                block = points[queries] @ cell_points
                qi, mi = np.nonzero(block >= floor)
                s = block[qi, mi]
            else:
                qi, mi, s = screen.hits(queries, members)
            a, b = queries[qi], members[mi]
            keep = a != b
            a, b, s = a[keep], b[keep], s[keep]
            if len(s):
                lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
                keys.append((lo * n + hi, s))
        if progress is not None:
            progress(c + 1, cells)
    if not keys:
        return Edges.empty()
    key = np.concatenate([k for k, _ in keys])
    sim = np.concatenate([s for _, s in keys])
    del keys
    # A pair found from both ends (each in the other's probes) is kept once.
    key, first = np.unique(key, return_index=True)
    return Edges((key // n).astype(np.int32), (key % n).astype(np.int32), sim[first])
