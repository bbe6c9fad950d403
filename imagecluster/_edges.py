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

from ._row_chunks import CHUNK_ROWS, fill_by_chunks
from ._screen import fit_screen

__all__ = [
    "Edges", "UnitRows", "edges_against", "row_norms", "row_tiles", "similarities", "similarity_edges", "unit_rows",
]

# Rows and columns of one tile: 2048 x 8192 float32 similarities = 64 MB, plus
# an 16 MB mask. Square enough for OpenBLAS to reach its peak on 1280-d rows.
_TILE_ROWS = 2048
_TILE_COLS = 8192
# Query rows up to which a product with a tile runs in numpy's loop, not BLAS (see similarities).
_FEW_QUERIES = 4


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


def unit_rows(fingerprints, norms=None, *, out=None):
    """Rows scaled to length 1 (zero rows stay zero), as C-contiguous float32.

    Parameters
    ----------
    fingerprints : ndarray of shape (n_images, n_features)
    norms : ndarray of shape (n_images,), default=None
        The rows' lengths as :func:`row_norms` gives them, when the caller
        keeps them: the rows are then converted and divided in one pass
        (a quarter faster), on every core (:mod:`._row_chunks`), to the
        same bits.
    out : ndarray of shape (n_images, n_features), dtype float32, default=None
        Where to write them, with ``norms`` only: a buffer reused from one
        tile of rows to the next costs no fresh pages (at 100,000 photos,
        a third of the time of a new photo's product with the library).

    Returns
    -------
    ndarray of shape (n_images, n_features), dtype float32
        ``out`` when given.
    """
    if norms is not None:
        if out is None:
            out = np.empty(np.shape(fingerprints), dtype=np.float32)

        def fill(start, stop):
            # Cast, then divide in place: the same bits as one mixed-dtype divide, but a ufunc that
            # casts as it goes holds the GIL between its small buffers, and threads then barely help.
            part = out[start:stop]
            part[...] = fingerprints[start:stop]
            np.divide(part, norms[start:stop, None], out=part)

        fill_by_chunks(fill, len(out))
        return out
    points = np.asarray(fingerprints, dtype=np.float32)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(points / norms)


def row_norms(fingerprints, *, chunk_rows=CHUNK_ROWS):
    """Each row's length exactly as :func:`unit_rows` measures it (zero rows as 1).

    Kept beside a float16 matrix, they let a reader convert rows and scale
    them without measuring them again. Measured on every core
    (:mod:`._row_chunks`).

    Parameters
    ----------
    fingerprints : ndarray of shape (n_images, n_features)
    chunk_rows : int, default=CHUNK_ROWS
        Rows converted to float32 at once.

    Returns
    -------
    ndarray of shape (n_images,), dtype float32
    """
    norms = np.empty(len(fingerprints), dtype=np.float32)

    def fill(start, stop):
        norms[start:stop] = np.linalg.norm(np.asarray(fingerprints[start:stop], dtype=np.float32), axis=1)

    fill_by_chunks(fill, len(norms), chunk_rows=chunk_rows)
    norms[norms == 0] = 1.0
    return norms


class UnitRows:
    """A fingerprint matrix seen as L2-normalised float32 rows, converted only where read.

    The store keeps float16; converting all of a large library at once costs
    memory and time that a Cluster call over a kept graph does not need.

    Parameters
    ----------
    matrix : ndarray of shape (n_images, n_features)
        Fingerprints in any float dtype.
    norms : ndarray of shape (n_images,), default=None
        Each row's length as :func:`row_norms` gives it (zero rows as 1). A
        graph keeps them from one catch-up to the next, so a product of one
        new photo with the library converts the matrix but does not measure
        it again; without them each read measures the rows it converts.
    """

    def __init__(self, matrix, norms=None):
        self.matrix = matrix
        self.norms = norms

    def __len__(self):
        return len(self.matrix)

    @property
    def shape(self):
        """``(n_images, n_features)``, the shape of :attr:`matrix`."""
        return self.matrix.shape

    def __getitem__(self, index):
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.ndim != 1:
                return self[index.reshape(-1)].reshape(index.shape + (self.matrix.shape[1],))
        return unit_rows(self.matrix[index], None if self.norms is None else self.norms[index])

    def to_array(self):
        """Every row, as one float32 array (converted in chunks)."""
        if self.norms is not None:
            return unit_rows(self.matrix, self.norms)
        out = np.empty(self.matrix.shape, dtype=np.float32)
        for start, rows in self.tiles(_TILE_COLS):
            out[start : start + len(rows)] = rows
        return out

    def tiles(self, tile_rows):
        """``(start, rows)`` for consecutive tiles of rows, converted into one buffer.

        With :attr:`norms`, each tile is written over the one before: use
        its rows before asking for the next.
        """
        buffer = None
        if self.norms is not None and len(self):
            buffer = np.empty((min(tile_rows, len(self)), self.matrix.shape[1]), dtype=np.float32)
        for start in range(0, len(self), tile_rows):
            stop = min(start + tile_rows, len(self))
            if buffer is None:
                yield start, unit_rows(self.matrix[start:stop])
            else:
                yield start, unit_rows(self.matrix[start:stop], self.norms[start:stop], out=buffer[: stop - start])


def row_tiles(points, tile_rows):
    """``(start, rows)`` for consecutive tiles of float32 rows or of :class:`UnitRows`.

    A tile of :class:`UnitRows` is valid until the next one is asked for
    (:meth:`UnitRows.tiles`); a tile of an array is a view of it.
    """
    if isinstance(points, UnitRows):
        yield from points.tiles(tile_rows)
    else:
        for start in range(0, len(points), tile_rows):
            yield start, points[start : start + tile_rows]


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


def similarities(queries, columns):
    """``queries @ columns.T``: cosine similarities of unit rows; for a few queries in numpy's own loop, not BLAS.

    After each call OpenBLAS's threads keep spinning for a while, on the
    cores where the next tile of rows is being converted (:class:`UnitRows`).
    At 100,000 photos one new photo's product with the library took 460 ms
    with BLAS against 280 ms without; at 4 photos 500 against 400 ms, at 8
    BLAS was faster. A few rows against a tile are bound by reading the
    tile, which numpy's loop does as fast; many rows need BLAS. The two
    differ in the last bit at most.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features), dtype float32
    columns : ndarray of shape (n_columns, n_features), dtype float32

    Returns
    -------
    ndarray of shape (n_queries, n_columns), dtype float32
    """
    if len(queries) <= _FEW_QUERIES:
        return np.einsum("ij,kj->ik", queries, columns)
    return queries @ columns.T


def edges_against(points, rows, floor):
    """The pairs joining some rows to every row, with similarity >= ``floor``.

    What a new or changed photo costs: one product of its fingerprint with
    the library's matrix.

    Parameters
    ----------
    points : ndarray of shape (n_images, n_features), dtype float32, or UnitRows
        L2-normalised rows; :class:`UnitRows` are converted tile by tile.
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
        for c0, columns in row_tiles(points, _TILE_COLS):
            block = similarities(queries, columns)
            i, j, s = _hits(block, floor, mask)
            i = chunk[i]
            j = j + c0
            # A pair of two given rows is found from both ends: keep it from the smaller one.
            keep = (i != j) & (~given[j] | (i < j))
            i, j, s = i[keep], j[keep], s[keep]
            if len(s):
                parts.append(Edges(np.minimum(i, j), np.maximum(i, j), s))
    return Edges.concatenate(parts)
