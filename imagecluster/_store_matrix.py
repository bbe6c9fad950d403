"""One model's fingerprints in memory: a matrix of rows, path <-> row maps, sizes and mtimes, copied only on write.

Part of :mod:`imagecluster._store_state`, which holds one of these per
model; free of I/O (the snapshot's mappings come from
:mod:`imagecluster._mapped`).
"""

import numpy as np

from ._entries import Entries
from ._row_chunks import fill_by_chunks

__all__ = ["MAX_DIRTY", "ModelMatrix"]

#: Loaded rows a matrix mapped from its snapshot may change in place (in private memory, ~2.5 kB each) before
#: it is copied whole instead. Bounds the memory that cannot be released and the work of carrying them over.
MAX_DIRTY = 4096


class ModelMatrix:
    """One model's fingerprints: a matrix whose first ``used`` rows are the photos, and path <-> row maps.

    Rows stay dense: removing a photo moves the last row into its place, so
    rows ``[0, used)`` are always exactly the stored photos and the matrix can
    be handed out as one view (:meth:`view`) without gathering. A view handed
    out is never changed afterwards: a write to a row that a view may show
    (``shown``: a change, or a new photo in the place of removed ones) first
    gives the matrix new memory (copy on write); appending after those rows
    does not touch them.

    A matrix loaded from a snapshot is the snapshot's own bytes (a private
    mapping of its file: no copy), its first ``frozen`` rows, with spare
    rows after them where the file could be mapped that way
    (:func:`~imagecluster._mapped.map_region_growable`). New photos go into
    the spare rows; a loaded row that changes (a photo changed, or the last
    row moved into a removed photo's place) is written in place, in private
    memory, and remembered in ``dirty``: pages holding such rows, or the
    appended ones, must never be released (:meth:`private_ranges`), or their
    content would fall back to the file's. When a view shows the matrix, a
    change first maps the snapshot again (``remap``) and carries the changed
    and appended rows over, instead of copying every row. Beyond the spare
    rows, or after ``MAX_DIRTY`` changed rows, the matrix is copied into
    memory from ``allocate`` with room to grow, and ``frozen`` is then 0.

    Each photo's size and mtime are kept by row in two arrays (``sizes``,
    ``mtimes``) and handed out with the path -> row dict as
    :class:`~imagecluster._entries.Entries`, copy on write as well.
    """

    __slots__ = ("dim", "matrix", "frozen", "dirty", "remap", "shown", "paths", "rows", "sizes", "mtimes",
                 "table_shared", "allocate")

    def __init__(self, dim, matrix, paths, sizes, mtimes, *, frozen=0, remap=None, allocate=np.empty):
        self.dim = dim
        self.matrix = matrix  # (capacity, dim); rows [0, len(paths)) are live
        self.frozen = frozen  # rows [0, frozen) are a loaded snapshot's bytes, mapped privately
        self.dirty = set()  # rows below frozen written since loading: in private memory only
        self.remap = remap  # spare bytes -> the snapshot's region mapped again with that room; None once copied
        self.shown = 0  # rows [0, shown) may be shown by a view handed out: never written in place
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
        self.matrix, self.frozen, self.dirty, self.remap, self.shown = matrix, 0, set(), None, 0

    def _headroom(self):
        """Rows for a copy: a loaded snapshot gets 1/8 more room than it holds, a full matrix grows by half."""
        return self.used + max(16, self.used // 8 if self.frozen else self.used // 2)

    def _mapped_again(self):
        """A new private mapping of the snapshot with this matrix's changed and appended rows; None if none."""
        grown = self.remap((len(self.matrix) - self.frozen) * self.matrix[0].nbytes)
        if grown is None:
            return None
        matrix = np.frombuffer(grown, self.matrix.dtype).reshape(self.matrix.shape)
        changed = np.fromiter(self.dirty, np.intp, len(self.dirty))
        matrix[changed] = self.matrix[changed]
        matrix[self.frozen : self.used] = self.matrix[self.frozen : self.used]
        return matrix

    def _own(self, row):
        """Make ``row`` writable without changing what a handed-out view or the snapshot shows."""
        if not self.matrix.flags.writeable:  # a snapshot that could only be read (no private mapping)
            self._copy(self._headroom())
            return
        if row < self.shown:
            matrix = None if self.remap is None else self._mapped_again()
            if matrix is None:
                self._copy(self._headroom() if self.frozen else len(self.matrix))
            else:
                self.matrix, self.shown = matrix, 0
        if row < self.frozen:
            if len(self.dirty) >= MAX_DIRTY:
                self._copy(self._headroom())
            else:
                self.dirty.add(row)

    def private_ranges(self):
        """Byte ranges of the matrix held only in private memory: releasing their pages would lose them.

        None when the matrix is not a loaded snapshot's (its mapping, if
        any, is shared with a file and can be released whole).
        """
        if not self.frozen:
            return None
        size = self.matrix[0].nbytes
        ranges = [(row * size, (row + 1) * size) for row in self.dirty if row < self.used]
        if self.used > self.frozen:
            ranges.append((self.frozen * size, self.used * size))
        return ranges

    def _own_table(self, rows=0):
        """Copy the path -> row dict and the size and mtime columns before a change, if they were handed out.

        ``rows``: how many rows the columns must hold afterwards (they grow by half).
        """
        grow = rows > len(self.sizes)
        if self.table_shared:
            self.rows = self.rows.copy()  # a clone of the table, unlike dict(), even after deletions
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
            if row >= len(self.matrix):  # growth by a share: amortised O(1) per photo
                self._copy(self._headroom())
            else:  # after removals, the place may be a loaded row's, or one a view shows
                self._own(row)
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

    def _row_index(self, paths):
        """The rows of ``paths`` (all present) as an index array, or None when they are rows 0, 1, 2, ... in order."""
        idx = np.fromiter(map(self.rows.__getitem__, paths), np.intp, len(paths))
        return None if np.array_equal(idx, np.arange(len(idx))) else idx

    def take(self, paths):
        """Rows of ``paths`` (all present), shape (len(paths), dim); may be a view."""
        idx = self._row_index(paths)
        return self.matrix[: len(paths)] if idx is None else self.matrix[idx]

    def take_float32(self, paths):
        """Rows of ``paths`` (all present) as a new float32 array, converted on every core.

        See :mod:`imagecluster._row_chunks`: no float16 copy of the whole
        result is made first.
        """
        idx = self._row_index(paths)
        out = np.empty((len(paths), self.matrix.shape[1]), np.float32)

        def fill(start, stop):
            out[start:stop] = self.matrix[start:stop] if idx is None else self.matrix[idx[start:stop]]

        fill_by_chunks(fill, len(out))
        return out

    def view(self):
        """``(paths, matrix)``: the live rows, read-only, and their paths (a copy), in row order."""
        self.shown = max(self.shown, self.used)
        matrix = self.matrix[: self.used]
        matrix.flags.writeable = False
        return list(self.paths), matrix
