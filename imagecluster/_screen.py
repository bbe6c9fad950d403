"""A cheap, exact pre-filter for the pair search: principal components plus Cauchy-Schwarz.

Split each unit fingerprint ``a`` into its part ``a_p`` in the span of the
top ``k`` principal components and the rest ``a_r``. Then::

    a . b = a_p . b_p + a_r . b_r    and    |a_r . b_r| <= |a_r| |b_r|

so ``a_p . b_p + |a_r| |b_r| < floor`` proves ``a . b < floor`` without
looking at the other ``d - k`` values. Only the pairs that this bound cannot
rule out (candidates) are computed in full, so no pair at or above the floor
is ever missed: the search stays exact. With library-like fingerprints (the
top 384 of 1280 components hold ~70% of the energy) fewer than one pair in
10,000 is a candidate.

The bound is itself a dot product: of ``(a_p, |a_r|)`` with ``(b_p, |b_r|)``.
So each row is kept "lifted" to those ``k + 1`` values, and a tile's bounds
are one matrix product, ``(k + 1) / d`` of the full one, plus one pass to
find the candidates. (Adding the residual term in a second and third pass
over the tile made it 1.15x slower at ``k`` = 384.)

Whether it pays depends on the fingerprints, so :func:`fit_screen` measures
the candidate share on a sample for several ``k`` and returns ``None`` (use
the plain product) when no ``k`` is clearly cheaper.
"""

import numpy as np

__all__ = ["Screen", "fit_screen"]

# Rounding in float32 products over up to a few thousand values stays far below this.
_MARGIN = 1e-4
_SAMPLE = 16384
# Relative cost of one candidate (gathering two full rows and their product: measured,
# about 300 pairs of a tile's product) and
# of the pass over a tile that finds them, in units of one value of the product
# (measured: 8 ms of a 2048 x 8192 tile's 197 ms at k = 384).
_CANDIDATE_COST = 300
_PASS_COST = 16
# The screen must cost at most this share of the plain product to be used.
_WORTH_IT = 0.7
# Below this many rows the plain product is fast enough.
SCREEN_MIN_ROWS = 50_000


class Screen:
    """Projections and residual lengths of a matrix's rows, for the bound above.

    Parameters
    ----------
    points : ndarray of shape (n_images, n_features), dtype float32
        The full rows (kept by reference: candidates are computed from them).
    basis : ndarray of shape (n_features, k), dtype float32
        Orthonormal columns.
    floor : float

    Attributes
    ----------
    lifted : ndarray of shape (n_images, k + 1), dtype float32
        Each row's projection on ``basis``, then the length of the rest
        (rounded up): the product of two lifted rows is their bound.
    """

    def __init__(self, points, basis, floor):
        self.points = points
        self.floor = float(floor)
        self.k = basis.shape[1]
        n = len(points)
        self.lifted = np.empty((n, self.k + 1), dtype=np.float32)
        self._buffers = None
        for start in range(0, n, _SAMPLE):
            rows = points[start : start + _SAMPLE]
            p = rows @ basis
            self.lifted[start : start + _SAMPLE, : self.k] = p
            rest = np.einsum("ij,ij->i", rows, rows) - np.einsum("ij,ij->i", p, p)
            # Rounded up: a bound too large costs a candidate, one too small a missed pair.
            self.lifted[start : start + _SAMPLE, self.k] = np.sqrt(np.maximum(rest, 0) + 1e-6)

    def __repr__(self):
        return f"Screen(k={self.k}, floor={self.floor})"

    @property
    def projected(self):
        """The rows on the top ``k`` principal components, shape (n_images, k) (a view of :attr:`lifted`)."""
        return self.lifted[:, : self.k]

    @property
    def residual(self):
        """The length of each row's rest, rounded up, shape (n_images,) (a view of :attr:`lifted`)."""
        return self.lifted[:, self.k]

    def hits(self, rows, cols):
        """Pairs ``(rows[a], cols[b])`` with similarity >= the floor, exactly.

        Parameters
        ----------
        rows, cols : slice or ndarray of int
            Row selections of the matrix.

        Returns
        -------
        a, b : ndarray of int
            Positions in ``rows`` and ``cols``.
        sim : ndarray of float32
            The full cosine similarity of each pair.
        """
        lifted_rows, lifted_cols = self.lifted[rows], self.lifted[cols]
        bound, mask = self._scratch(len(lifted_rows) * len(lifted_cols))
        bound = np.matmul(lifted_rows, lifted_cols.T, out=bound.reshape(len(lifted_rows), len(lifted_cols)))
        flat = np.flatnonzero(np.greater_equal(bound, self.floor - _MARGIN, out=mask.reshape(bound.shape)))
        a, b = np.divmod(flat, bound.shape[1])
        if not len(a):
            return a, b, np.empty(0, dtype=np.float32)
        left = self.points[rows][a] if isinstance(rows, slice) else self.points[rows[a]]
        right = self.points[cols][b] if isinstance(cols, slice) else self.points[cols[b]]
        sim = np.einsum("ij,ij->i", left, right)
        keep = sim >= self.floor
        return a[keep], b[keep], sim[keep]

    def _scratch(self, size):
        """Reusable buffers for one tile's bound and mask (tiles repeat their size)."""
        if self._buffers is None or len(self._buffers[1]) < size:
            self._buffers = (np.empty(size, dtype=np.float32), np.empty(size, dtype=bool))
        return self._buffers[0][:size], self._buffers[1][:size]


def _candidate_shares(projected, lengths, ks, floor):
    """Share of the sample's pairs (first half against second) that the bound keeps, for each ``k`` in ``ks``.

    A generator: each share is computed when asked for, so that the caller
    can stop once larger ``k`` cannot pay. ``projected`` holds the sample's
    projections on the top ``max(ks)`` components, ``lengths`` their
    squared lengths. The projection on the top ``k`` is its first ``k``
    columns, so one projection and a product grown by the columns added
    from one ``k`` to the next serve every ``k``:
    at 50,000 photos, fitting with one product per ``k`` took 7.7 s of a
    26 s search.
    """
    half = min(len(projected), 8192) // 2
    first, second = projected[:half], projected[half : 2 * half]
    kept = np.cumsum(projected * projected, axis=1)
    product = np.zeros((half, half), dtype=np.float32)
    done = 0
    for k in ks:
        product += first[:, done:k] @ second[:, done:k].T
        done = k
        residual = np.sqrt(np.maximum(lengths - kept[:, k - 1], 0) + 1e-6)
        bound = product + np.multiply.outer(residual[:half], residual[half : 2 * half])
        yield float((bound >= floor - _MARGIN).mean())


def fit_screen(points, floor, *, seed=0, min_rows=SCREEN_MIN_ROWS):
    """A :class:`Screen` for ``points`` at ``floor``, or None when it would not pay.

    Parameters
    ----------
    points : ndarray of shape (n_images, n_features), dtype float32
        L2-normalised rows.
    floor : float
    seed : int, default=0
        Draws the sample the principal components come from.
    min_rows : int, default=SCREEN_MIN_ROWS
        Fewer rows than this are searched with the plain product.

    Returns
    -------
    Screen or None
    """
    n, d = points.shape
    if n < max(min_rows, 2) or d < 256:
        return None
    rng = np.random.default_rng(seed)
    drawn = rng.permutation(n)[: 2 * _SAMPLE]
    # The components come from one half of the sample and are judged on the other: judged
    # on the rows they were fitted to, they would look better than they are.
    fit, sample = points[np.sort(drawn[::2])], points[np.sort(drawn[1::2])]
    covariance = (fit.T @ fit).astype(np.float64)
    _, vectors = np.linalg.eigh(covariance)
    order = vectors[:, ::-1].astype(np.float32)
    ks = range(128, d // 2 + 1, 64)
    shares = _candidate_shares(sample @ order[:, : ks[-1]], np.einsum("ij,ij->i", sample, sample), ks, floor)
    best, best_cost = None, _WORTH_IT * d
    for k, share in zip(ks, shares):
        cost = k + 1 + _PASS_COST + share * d * _CANDIDATE_COST
        if cost < best_cost:
            best, best_cost = k, cost
        if share * d * _CANDIDATE_COST < ks.step:
            break  # the candidates cost less than the next k's columns would: no larger k pays
    del shares  # ends the generator: its 64 MB product must not stay while the screen is built
    if best is None:
        return None
    return Screen(points, np.ascontiguousarray(order[:, :best]), floor)
