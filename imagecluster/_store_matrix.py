"""One model's fingerprints in memory: a matrix of rows, path <-> row maps, sizes and mtimes, copied only on write.

Part of :mod:`imagecluster._store_state`, which holds one of these per
model; free of I/O (the snapshot's mappings come from
:mod:`imagecluster._mapped`).
"""

import numpy as np

from ._entries import Entries

__all__ = ["ModelMatrix"]


class ModelMatrix:
    """One model's fingerprints: a matrix whose first ``used`` rows are the photos, and path <-> row maps.

    Rows stay dense: removing a photo moves the last row into its place, so
    rows ``[0, used)`` are always exactly the stored photos and the matrix can
    be handed out as one view (:meth:`view`) without gathering. A view handed
    out is never changed afterwards: the next change of an existing row
    copies the matrix first (copy on write); appending a row does not touch
    the rows a view shows.

    A matrix loaded from a snapshot is the snapshot's own bytes (a mapping of
    its file: no copy), its first ``frozen`` rows. Where the file could be
    mapped with spare rows after them
    (:func:`~imagecluster._mapped.map_region_growable`), new photos are
    appended there without a copy. The first change of a loaded row, or an
    append beyond the spare rows, copies the matrix into memory from
    ``allocate`` with room to grow; ``frozen`` is then 0.

    Each photo's size and mtime are kept by row in two arrays (``sizes``,
    ``mtimes``) and handed out with the path -> row dict as
    :class:`~imagecluster._entries.Entries`, copy on write as well.
    """

    __slots__ = ("dim", "matrix", "frozen", "shared", "paths", "rows", "sizes", "mtimes", "table_shared", "allocate")

    def __init__(self, dim, matrix, paths, sizes, mtimes, *, frozen=0, allocate=np.empty):
        self.dim = dim
        self.matrix = matrix  # (capacity, dim); rows [0, len(paths)) are live
        self.frozen = frozen  # rows [0, frozen) are a loaded snapshot's bytes: never written
        self.shared = False  # a view of the live rows was handed out
        self.paths = paths  # row -> path
        self.rows = dict(zip(paths, range(len(paths))))  # path -> row
        self.sizes = sizes  # row -> size, int64, at least len(paths) long
        self.mtimes = mtimes  # row -> mtime_ns, int64, as long as sizes
        self.table_shared = False  # rows, sizes and mtimes were handed out as Entries
        self.allocate = allocate  # (shape, dtype) -> writable array, for copies

    @property
    def used(self):
        return len(self.paths)

    def _copy(self, capacity):
        matrix = self.allocate((capacity, self.dim), self.matrix.dtype)
        matrix[: self.used] = self.matrix[: self.used]
        self.matrix, self.frozen, self.shared = matrix, 0, False

    def _headroom(self):
        """Rows for a copy: a loaded snapshot gets 1/8 more room than it holds, a full matrix grows by half."""
        return self.used + max(16, self.used // 8 if self.frozen else self.used // 2)

    def _own(self, row):
        """Copy the matrix before changing ``row`` if the snapshot's bytes or a handed-out view show it."""
        if row < self.frozen:
            self._copy(self._headroom())
        elif self.shared:
            self._copy(len(self.matrix))

    def _own_table(self, rows=0):
        """Copy the path -> row dict and the size and mtime columns before a change, if they were handed out.

        ``rows``: how many rows the columns must hold afterwards (they grow by half).
        """
        grow = rows > len(self.sizes)
        if self.table_shared:
            self.rows = dict(self.rows)
        if self.table_shared or grow:
            capacity = rows + rows // 2 + 16 if grow else len(self.sizes)
            sizes, mtimes = np.zeros(capacity, np.int64), np.zeros(capacity, np.int64)
            sizes[: self.used], mtimes[: self.used] = self.sizes[: self.used], self.mtimes[: self.used]
            self.sizes, self.mtimes = sizes, mtimes
        self.table_shared = False

    def put(self, path, size, mtime_ns, vector):
        row = self.rows.get(path)
        self._own_table(self.used + 1)
        if row is None:
            row = self.used
            if row >= len(self.matrix) or not self.matrix.flags.writeable:  # growth by a share: amortised O(1)
                self._copy(self._headroom())
            self.rows[path] = row
            self.paths.append(path)
        else:
            self._own(row)
        self.matrix[row] = vector
        self.sizes[row], self.mtimes[row] = size, mtime_ns

    def remove(self, path):
        if path not in self.rows:
            return
        self._own_table()
        row = self.rows.pop(path)
        last = self.used - 1
        if row != last:
            self._own(row)
            moved = self.paths[last]
            self.matrix[row] = self.matrix[last]
            self.sizes[row], self.mtimes[row] = self.sizes[last], self.mtimes[last]
            self.paths[row] = moved
            self.rows[moved] = row
        self.paths.pop()

    def move(self, old, new):
        if old != new:
            self.remove(new)
            if old in self.rows:
                self._own_table()
                row = self.rows[new] = self.rows.pop(old)
                self.paths[row] = new

    def entries(self):
        """The photos' :class:`~imagecluster._entries.Entries` now (no copy: the next change copies)."""
        self.table_shared = True
        return Entries(self.rows, self.sizes, self.mtimes)

    def take(self, paths):
        """Rows of ``paths`` (all present), shape (len(paths), dim); may be a view."""
        idx = np.fromiter(map(self.rows.__getitem__, paths), np.intp, len(paths))
        if np.array_equal(idx, np.arange(len(idx))):
            return self.matrix[: len(idx)]
        return self.matrix[idx]

    def view(self):
        """``(paths, matrix)``: the live rows, read-only, and their paths (a copy), in row order."""
        self.shared = True
        matrix = self.matrix[: self.used]
        matrix.flags.writeable = False
        return list(self.paths), matrix
