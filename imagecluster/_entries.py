"""What the store knows about each fingerprinted photo, kept as columns.

A million photos' ``(size, mtime_ns)`` pairs as a dict of tuples take about
150 MB of Python objects (a dict, a tuple and two ints per photo); a daemon
held that, plus a dict copy of it per mirror and per graph. Here they are two
int64 arrays indexed by the store's row, beside the path -> row dict the
store needs anyway: 16 MB, shared (not copied) by every reader until the
store next changes.
"""

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["Entries", "Entry"]


class Entry(NamedTuple):
    """What the store knows about one photo file when it was fingerprinted."""

    size: int
    mtime_ns: int


_EMPTY = np.zeros(0, np.int64)


class Entries(Mapping):
    """Path -> :class:`Entry` of one model at one moment: a read-only mapping over the store's columns.

    ``rows`` maps each path to its row; ``sizes`` and ``mtimes`` hold the
    values by row (they may be longer than the number of paths: rows past
    them are unused). The store hands out its own dict and arrays and copies
    them before its next change (copy on write), so an ``Entries`` never
    changes once made and costs nothing to hand out. Compares equal to a
    dict with the same items.
    """

    __slots__ = ("_rows", "_sizes", "_mtimes")

    def __init__(self, rows=None, sizes=_EMPTY, mtimes=_EMPTY):
        self._rows = {} if rows is None else rows
        self._sizes = sizes
        self._mtimes = mtimes

    @classmethod
    def from_items(cls, items):
        """Entries of ``{path: (size, mtime_ns)}`` or an iterable of ``(path, (size, mtime_ns))``."""
        items = list(items.items() if isinstance(items, Mapping) else items)
        rows = {path: row for row, (path, _) in enumerate(items)}
        if len(rows) != len(items):
            raise ValueError("duplicate paths")
        sizes = np.array([size for _, (size, _) in items], np.int64).reshape(-1)
        mtimes = np.array([mtime for _, (_, mtime) in items], np.int64).reshape(-1)
        return cls(rows, sizes, mtimes)

    def _at(self, row):
        return tuple.__new__(Entry, (int(self._sizes[row]), int(self._mtimes[row])))

    def __getitem__(self, path):
        return self._at(self._rows[path])

    def get(self, path, default=None):
        row = self._rows.get(path)
        return default if row is None else self._at(row)

    def __contains__(self, path):
        return path in self._rows

    def __iter__(self):
        return iter(self._rows)

    def __len__(self):
        return len(self._rows)

    def __eq__(self, other):
        if isinstance(other, Entries):
            if len(self) != len(other) or self._rows.keys() != other._rows.keys():
                return False
            if self._rows is other._rows and self._sizes is other._sizes and self._mtimes is other._mtimes:
                return True
            mine = np.fromiter(self._rows.values(), np.intp, len(self))
            theirs = np.fromiter(map(other._rows.__getitem__, self._rows), np.intp, len(self))
            return bool(np.array_equal(self._sizes[mine], other._sizes[theirs])
                        and np.array_equal(self._mtimes[mine], other._mtimes[theirs]))
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self):
        return f"<Entries of {len(self)} photos>"

    def by_row(self):
        """``(sizes, mtimes)``: int64 arrays of the first ``len(self)`` rows.

        For entries from a :class:`~imagecluster.store.FingerprintView`, row
        ``r`` is the view's ``r``-th path (the store keeps its rows dense),
        so a reader can compare versions array to array, without a lookup
        per photo.
        """
        n = len(self)
        return self._sizes[:n], self._mtimes[:n]
