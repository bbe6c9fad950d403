"""The store's content in memory, free of I/O: each model's fingerprint matrix, unreadable files, capture data.

Built from a snapshot (:meth:`StoreState.from_snapshot`) and changed by the
journal's records (:meth:`StoreState.apply`), both in the formats of
:mod:`imagecluster._journal`; one model's matrix is a
:class:`~imagecluster._store_matrix.ModelMatrix`. (``ModelMatrix`` and ``StoreState`` were
``_journal.Model`` and ``_journal.State``: named apart from the
:mod:`imagecluster.models` package and the D-Bus ``Model``/``State`` properties.)
"""

import functools
from typing import NamedTuple

import numpy as np

from ._capture import Capture, capture_problem
from ._entries import Entries, Entry
from ._journal import DTYPES, FORMAT, READ_VERSIONS, VERSION, all_finite, all_relpaths, region_layout
from ._store_matrix import ModelMatrix

__all__ = ["Captured", "Entries", "Entry", "ModelMatrix", "StoreState", "Unreadable"]

#: Most bytes of spare rows a matrix loaded from a snapshot gets for new photos (n/8 rows up to this). They are
#: private memory that stays resident, so they are bounded; appending beyond them copies the matrix.
SPARE_BYTES = 32 << 20


def _row_chunks(m, paths, dtype, rows=8192):
    """A model's rows in the order of ``paths``, as bytes, ``rows`` at a time."""
    for start in range(0, len(paths), rows):
        yield m.take(paths[start : start + rows]).astype(dtype, copy=False).tobytes()


def _region(name, model, regions):
    """A version 2 model's matrix bytes: ``n * dim * itemsize`` bytes of ``regions`` from its offset."""
    offset, dim, dtype, paths = (model.get(k) for k in ("offset", "dim", "dtype", "paths"))
    if type(offset) is not int or type(dim) is not int or type(paths) is not list or dtype not in DTYPES:
        raise ValueError(f"model {name!r}: bad offset, dim, dtype or paths")
    end = offset + len(paths) * dim * DTYPES[dtype].itemsize
    if offset < 0 or dim <= 0 or end > len(regions):
        raise ValueError(f"model {name!r}: its matrix lies outside the file ({end} bytes needed, {len(regions)} there)")
    return regions[offset:end]


class Unreadable(NamedTuple):
    """A file that could not be read as a photo, at the size and mtime it had then."""

    size: int
    mtime_ns: int
    reason: str


class Captured(NamedTuple):
    """A photo's capture data (:class:`~imagecluster._capture.Capture`), read at that size and mtime."""

    size: int
    mtime_ns: int
    capture: Capture


class StoreState:
    """The store's content in memory, free of I/O: models, unreadable files and the snapshot token."""

    def __init__(self, dtype, token=None, allocate=np.empty):
        self.dtype = dtype
        self.token = token
        self.allocate = allocate  # (shape, dtype) -> writable array: where matrices go when they change
        self.models = {}
        self.failed = {}  # model -> {path: Unreadable}
        self.captures = {}  # path -> Captured, for every model

    @classmethod
    def from_snapshot(cls, obj, dtype, regions=b"", allocate=np.empty, grow=None):
        """Check an unpickled snapshot header and build a state; ValueError says why not.

        Parameters
        ----------
        obj : object
            The unpickled header.
        dtype : numpy.dtype
            The store's dtype.
        regions : bytes-like, default=b""
            The file's bytes after the header (from its first aligned offset):
            where a version 2 snapshot's matrices are. A matrix in the store's
            dtype is used in place (a mapping of the file costs no copy).
        allocate : callable, default=numpy.empty
            ``allocate(shape, dtype)``, for the matrices' copies.
        grow : callable or None, default=None
            ``grow(offset, length, spare)``: the ``length`` bytes of
            ``regions`` from ``offset`` as a writable buffer with ``spare``
            bytes of room after them, or None
            (:func:`~imagecluster._mapped.map_region_growable`). A matrix
            given room this way takes new and changed photos without a copy,
            and keeps ``grow`` to map its region again.
        """
        if type(obj) is not dict or obj.get("format") != FORMAT:
            raise ValueError("not an imagecluster store")
        version = obj.get("version")
        if type(version) is not int or version not in READ_VERSIONS:
            raise ValueError(f"unsupported store version {version!r}")
        token, models = obj.get("token"), obj.get("models")
        if (token is not None and type(token) is not bytes) or type(models) is not dict:
            raise ValueError("bad token or models")
        state = cls(dtype, token, allocate)
        for name, m in models.items():
            if type(name) is not str or not name or type(m) is not dict:
                raise ValueError("bad model entry")
            if version == 1:
                data, room = m.get("data"), None
            else:
                data = _region(name, m, regions)
                room = None if grow is None else functools.partial(grow, m["offset"], len(data))
            dim, dt, paths, sizes, mtimes = (m.get(k) for k in ("dim", "dtype", "paths", "sizes", "mtimes"))
            state._load_model(name, dim, dt, paths, sizes, mtimes, data, room)
        failed = obj.get("failed", {})
        if type(failed) is not dict:
            raise ValueError("bad failed entry")
        for name, f in failed.items():
            state._load_failed(name, f)
        state._load_captures(obj.get("captures", {}))
        return state

    def _load_captures(self, captures):
        if type(captures) is not dict:
            raise ValueError("bad captures entry")
        if not captures:
            return
        paths, sizes, mtimes, fields = (captures.get(k) for k in ("paths", "sizes", "mtimes", "fields"))
        if not (type(paths) is type(sizes) is type(mtimes) is type(fields) is list):
            raise ValueError("capture data: bad field types")
        if not len(paths) == len(sizes) == len(mtimes) == len(fields) or not all_relpaths(paths):
            raise ValueError("capture data: fields disagree or a path is not relative")
        if not all(type(v) is int for v in sizes + mtimes) or any(map(capture_problem, fields)):
            raise ValueError("capture data: bad values")
        self.captures = {p: Captured(s, m, Capture(*f)) for p, s, m, f in zip(paths, sizes, mtimes, fields)}

    def _load_failed(self, name, failed):
        if type(name) is not str or not name or type(failed) is not dict:
            raise ValueError("bad failed entry")
        paths, sizes, mtimes, reasons = (failed.get(k) for k in ("paths", "sizes", "mtimes", "reasons"))
        if not (type(paths) is type(sizes) is type(mtimes) is type(reasons) is list):
            raise ValueError(f"unreadable files of {name!r}: bad field types")
        if not len(paths) == len(sizes) == len(mtimes) == len(reasons) or not all_relpaths(paths):
            raise ValueError(f"unreadable files of {name!r}: fields disagree or a path is not relative")
        if not (all(type(v) is int for v in sizes + mtimes) and all(type(r) is str for r in reasons)):
            raise ValueError(f"unreadable files of {name!r}: bad values")
        if paths:
            self.failed[name] = {p: Unreadable(*t) for p, t in zip(paths, zip(sizes, mtimes, reasons))}

    def _load_model(self, name, dim, dtype, paths, sizes, mtimes, data, room=None):
        where = f"model {name!r}"
        if type(dim) is not int or dim <= 0 or type(dtype) is not str or dtype not in DTYPES:
            raise ValueError(f"{where}: bad dim or dtype")
        if not (type(paths) is type(sizes) is type(mtimes) is list) or type(data) not in (bytes, bytearray, memoryview):
            raise ValueError(f"{where}: bad field types")
        n = len(paths)
        if len(sizes) != n or len(mtimes) != n or len(data) != n * dim * DTYPES[dtype].itemsize:
            raise ValueError(f"{where}: field lengths disagree")
        if not all_relpaths(paths):
            raise ValueError(f"{where}: a path is not relative to the library")
        ints = all(type(v) is int for v in sizes) and all(type(v) is int for v in mtimes)
        if not ints or min(sizes, default=0) < 0:
            raise ValueError(f"{where}: bad sizes or mtimes")
        if len(set(paths)) != n:
            raise ValueError(f"{where}: duplicate paths")
        matrix = np.frombuffer(data, DTYPES[dtype]).reshape(n, dim)
        frozen, remap = n, None
        if matrix.dtype != self.dtype:  # written by a store of the other dtype: converted once, with room to grow
            converted = self.allocate((n + max(16, n // 8), dim), self.dtype)
            with np.errstate(over="ignore"):
                converted[:n] = matrix
            matrix, frozen = converted, 0
        elif room is not None and n:
            spare = min(n // 8 + 16, max(16, SPARE_BYTES // matrix[0].nbytes))
            grown = room(spare * matrix[0].nbytes)
            if grown is not None:
                matrix, remap = np.frombuffer(grown, matrix.dtype).reshape(n + spare, dim), room
        if not all_finite(matrix[:n]):
            raise ValueError(f"{where}: non-finite fingerprint values")
        if n:
            try:
                columns = np.array(sizes, np.int64), np.array(mtimes, np.int64)
            except OverflowError:
                raise ValueError(f"{where}: a size or mtime out of range") from None
            self.models[name] = ModelMatrix(dim, matrix, list(paths), *columns, frozen=frozen, remap=remap,
                                            allocate=self.allocate)

    def _forget_failure(self, model, path):
        failed = self.failed.get(model)
        if failed is not None and failed.pop(path, None) is not None and not failed:
            del self.failed[model]

    def to_snapshot(self, token):
        """The snapshot of the current content: ``(header, matrices)``.

        ``header`` is the dict of builtins pickled at the start of the file.
        ``matrices`` holds, per model in the header, ``(offset, chunks)``:
        where its matrix starts in the file's regions, and an iterator of its
        rows' bytes in the order of the header's (sorted) paths, a few
        thousand rows at a time, so that writing a million photos never
        holds a second copy of their matrix.
        """
        models, matrices = {}, []
        names = sorted(self.models)
        offsets = region_layout([self.models[name].used * self.models[name].dim * self.dtype.itemsize
                                 for name in names])
        for name, offset in zip(names, offsets):
            m = self.models[name]
            paths = sorted(m.rows)
            rows = np.fromiter(map(m.rows.__getitem__, paths), np.intp, len(paths))
            models[name] = {
                "dim": m.dim,
                "dtype": self.dtype.name,
                "paths": paths,
                "sizes": m.sizes[rows].tolist(),
                "mtimes": m.mtimes[rows].tolist(),
                "offset": offset,
            }
            matrices.append((offset, _row_chunks(m, paths, self.dtype)))
        failed = {}
        for name, f in sorted(self.failed.items()):
            paths = sorted(f)
            failed[name] = {"paths": paths, "sizes": [f[p].size for p in paths],
                            "mtimes": [f[p].mtime_ns for p in paths], "reasons": [f[p].reason for p in paths]}
        header = {"format": FORMAT, "version": VERSION, "token": token, "models": models}
        if failed:
            header["failed"] = failed
        if self.captures:
            paths = sorted(self.captures)
            header["captures"] = {
                "paths": paths, "sizes": [self.captures[p].size for p in paths],
                "mtimes": [self.captures[p].mtime_ns for p in paths],
                "fields": [tuple(self.captures[p].capture) for p in paths],
            }
        return header, matrices

    def apply(self, record):
        """Apply one checked journal record; ValueError (nothing changed) if it conflicts."""
        kind = record[0]
        if kind == "put":
            _, model, path, size, mtime_ns, dtype, raw = record
            vector = np.frombuffer(raw, DTYPES[dtype])
            if vector.dtype != self.dtype:  # written by a store with the other dtype
                with np.errstate(over="ignore"):
                    vector = vector.astype(self.dtype)
                if not np.isfinite(vector).all():
                    raise ValueError(f"fingerprint of {path!r} does not fit in {self.dtype.name}")
            m = self.models.get(model)
            if m is None:
                m = self.models[model] = ModelMatrix(vector.size, np.empty((0, vector.size), self.dtype), [],
                                                     np.zeros(0, np.int64), np.zeros(0, np.int64),
                                                     allocate=self.allocate)
            elif m.dim != vector.size:
                raise ValueError(f"{path!r} has {vector.size} values but model {model!r} has {m.dim}")
            m.put(path, size, mtime_ns, vector)
            self._forget_failure(model, path)
        elif kind == "del":
            _, model, path = record
            for name in list(self.models) if model is None else [model]:
                m = self.models.get(name)
                if m is not None:
                    m.remove(path)
                    if not m.rows:
                        del self.models[name]
            for name in list(self.failed) if model is None else [model]:
                self._forget_failure(name, path)
            if model is None:
                self.captures.pop(path, None)
        elif kind == "move":
            _, old, new = record
            for name, m in list(self.models.items()):
                m.move(old, new)
                if not m.rows:
                    del self.models[name]
            for name in list(self.failed):
                self._forget_failure(name, new)
                moved = self.failed.get(name, {}).pop(old, None)
                if moved is not None:
                    self.failed[name][new] = moved
            if old != new:
                self.captures.pop(new, None)
                if old in self.captures:
                    self.captures[new] = self.captures.pop(old)
        elif kind == "fail":
            _, model, path, size, mtime_ns, reason = record
            self.failed.setdefault(model, {})[path] = Unreadable(size, mtime_ns, reason)
        elif kind == "capture":
            _, path, size, mtime_ns, fields = record
            self.captures[path] = Captured(size, mtime_ns, Capture(*fields))
        else:
            raise ValueError(f"unexpected {kind!r} record")
