"""Exact search for every pair of photos at least ``floor`` similar (cosine).

The graph "cosine similarity >= floor" is what clustering at any ``sim >=
floor`` needs: average linkage never merges two groups that no pair of
photos at ``sim`` or above joins (the average of the pairs' similarities is
at most their maximum), so its connected components bound every cluster.

The search is an exact all-pairs scan in float32, tiled so that each
matrix product is square enough to run at BLAS speed (a skinny block of rows
against all columns would re-read the whole matrix from memory for every
few rows) and small enough to stay in a few tens of MB. Only tiles on or
above the diagonal are computed: each pair once.

Everything here takes L2-normalised float32 rows (see :func:`unit_rows`).
"""

import numpy as np

from ._screen import fit_screen

__all__ = ["Edges", "edges_against", "row_norms", "similarity_edges", "unit_rows"]

# Rows and columns of one tile: 2048 x 8192 float32 similarities = 64 MB, plus
# an 16 MB mask. Square enough for OpenBLAS to reach its peak on 1280-d rows.
_TILE_ROWS = 2048
_TILE_COLS = 8192


class Edges:
    """Pairs of rows and their cosine similarity: ``i < j``, ``sim[k] = cos(row i, row j)``.

    Parameters
    ----------
    i, j : ndarray of shape (n_edges,), dtype int32
        Row numbers; ``i < j`` for every edge.
    sim : ndarray of shape (n_edges,), dtype float32
        Their cosine similarity.
    """

    __slots__ = ("i", "j", "sim")

    def __init__(self, i, j, sim):
        self.i = np.asarray(i, dtype=np.int32)  # half the memory of int64; libraries stay below 2**31
        self.j = np.asarray(j, dtype=np.int32)
        self.sim = np.asarray(sim, dtype=np.float32)

    def __len__(self):
        return len(self.sim)

    def __repr__(self):
        return f"Edges({len(self)} pairs)"

    @classmethod
    def empty(cls):
        """No pairs."""
        return cls(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32))

    @classmethod
    def concatenate(cls, parts):
        """One :class:`Edges` of several."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.i for p in parts]), np.concatenate([p.j for p in parts]),
                   np.concatenate([p.sim for p in parts]))

    def at_least(self, sim):
        """The edges whose similarity is at least ``sim``."""
        keep = self.sim >= sim
        if keep.all():
            return self
        return Edges(self.i[keep], self.j[keep], self.sim[keep])

    def take(self, keep):
        """The edges selected by a boolean mask or index array."""
        return Edges(self.i[keep], self.j[keep], self.sim[keep])


def unit_rows(fingerprints, norms=None):
    """Rows scaled to length 1 (zero rows stay zero), as C-contiguous float32.

    Parameters
    ----------
    fingerprints : ndarray of shape (n_images, n_features)
    norms : ndarray of shape (n_images,), default=None
        The rows' lengths as :func:`row_norms` gives them, when the caller
        keeps them: the rows are then converted and divided in one pass
        (a quarter faster), to the same bits.

    Returns
    -------
    ndarray of shape (n_images, n_features), dtype float32
    """
    if norms is not None:
        out = np.empty(np.shape(fingerprints), dtype=np.float32)
        return np.divide(fingerprints, norms[:, None], out=out, dtype=np.float32)
    points = np.asarray(fingerprints, dtype=np.float32)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(points / norms)


def row_norms(fingerprints, *, chunk_rows=8192):
    """Each row's length exactly as :func:`unit_rows` measures it (zero rows as 1).

    Kept beside a float16 matrix, they let a reader convert rows and scale
    them without measuring them again.

    Parameters
    ----------
    fingerprints : ndarray of shape (n_images, n_features)
    chunk_rows : int, default=8192
        Rows converted to float32 at once.

    Returns
    -------
    ndarray of shape (n_images,), dtype float32
    """
    norms = np.empty(len(fingerprints), dtype=np.float32)
    for start in range(0, len(norms), chunk_rows):
        points = np.asarray(fingerprints[start : start + chunk_rows], dtype=np.float32)
        norms[start : start + chunk_rows] = np.linalg.norm(points, axis=1)
    norms[norms == 0] = 1.0
    return norms


def _hits(block, floor, mask):
    """(rows, cols, values) of a tile's entries >= floor, with a reusable mask buffer."""
    out = mask[: block.size].reshape(block.shape)
    np.greater_equal(block, floor, out=out)
    flat = np.flatnonzero(out)
    rows, cols = np.divmod(flat, block.shape[1])
    return rows, cols, block.reshape(-1)[flat]


def similarity_edges(points, floor, *, progress=None, screen=None):
    """Every pair of rows with cosine similarity >= ``floor``, exactly.

    Parameters
    ----------
    points : ndarray of shape (n_images, n_features), dtype float32
        L2-normalised rows (:func:`unit_rows`).
    floor : float
        Smallest similarity kept.
    screen : Screen or False, default=None
        The exact pre-filter of :mod:`imagecluster._screen`; ``None`` fits one
        when it pays (large libraries), ``False`` never uses it.
    progress : callable, default=None
        ``progress(done, total)`` after each tile, in pairs of rows compared.

    Returns
    -------
    Edges
        Each pair once (``i < j``), in no particular order.
    """
    n = len(points)
    total = n * (n - 1) // 2
    done = 0
    if screen is None:
        screen = fit_screen(points, floor)
    elif screen is False:
        screen = None
    mask = None if screen else np.empty(_TILE_ROWS * _TILE_COLS, dtype=bool)
    parts = []
    for r0 in range(0, n, _TILE_ROWS):
        r1 = min(n, r0 + _TILE_ROWS)
        rows_block = points[r0:r1]
        for c0 in range(r0, n, _TILE_COLS):
            c1 = min(n, c0 + _TILE_COLS)
            if screen:
                i, j, s = screen.hits(slice(r0, r1), slice(c0, c1))
            else:
                i, j, s = _hits(rows_block @ points[c0:c1].T, floor, mask)
            i += r0
            j += c0
            if c0 < r1:  # the tile crosses the diagonal: each pair once, no self-pairs
                keep = j > i
                i, j, s = i[keep], j[keep], s[keep]
            if len(s):
                parts.append(Edges(i, j, s))
        done += (r1 - r0) * (n - r0) - (r1 - r0) * (r1 - r0 + 1) // 2
        if progress is not None:
            progress(min(done, total), total)
    return Edges.concatenate(parts)


def edges_against(points, rows, floor):
    """The pairs joining some rows to every row, with similarity >= ``floor``.

    What a new or changed photo costs: one product of its fingerprint with
    the library's matrix.

    Parameters
    ----------
    points : ndarray of shape (n_images, n_features), dtype float32
        L2-normalised rows.
    rows : array-like of int
        The rows whose pairs are wanted.
    floor : float

    Returns
    -------
    Edges
        Each pair once, as ``(min, max)``; pairs of two given rows once too.
    """
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if not len(rows) or not len(points):
        return Edges.empty()
    mask = np.empty(_TILE_ROWS * _TILE_COLS, dtype=bool)
    given = np.zeros(len(points), dtype=bool)
    given[rows] = True
    parts = []
    for r0 in range(0, len(rows), _TILE_ROWS):
        chunk = rows[r0 : r0 + _TILE_ROWS]
        queries = points[chunk]
        for c0 in range(0, len(points), _TILE_COLS):
            block = queries @ points[c0 : c0 + _TILE_COLS].T
            i, j, s = _hits(block, floor, mask)
            i = chunk[i]
            j = j + c0
            # A pair of two given rows is found from both ends: keep it from the smaller one.
            keep = (i != j) & (~given[j] | (i < j))
            i, j, s = i[keep], j[keep], s[keep]
            if len(s):
                parts.append(Edges(np.minimum(i, j), np.maximum(i, j), s))
    return Edges.concatenate(parts)
