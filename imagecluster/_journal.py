"""The I/O-free core of :mod:`imagecluster.store`: file formats, checks, state.

Everything here works on bytes, builtins and arrays; :mod:`imagecluster.store`
does the file I/O, locking and logging around it.

Snapshot (``fingerprints.pk``): a pickle of builtins only, built by
:meth:`State.to_snapshot` and checked by :meth:`State.from_snapshot`::

    {"format": "imagecluster-store", "version": 1, "token": bytes,
     "models": {name: {"dim": d, "dtype": "float16", "paths": [...],
                       "sizes": [...], "mtimes": [...],
                       "data": bytes of the (n, d) little-endian array}}}

Journal: the journal (``journal.pk``) is a sequence of records, each framed as::

    struct.pack("<II", len(payload), zlib.crc32(payload)) + payload

where ``payload`` is a protocol-5 pickle of a tuple of builtins:

``("base", token)``
    Always the first record. ``token`` (bytes, or None when there is no
    snapshot yet) names the snapshot the journal extends, so a journal left
    over by a compaction that crashed before truncating it is recognised as
    already merged and ignored.
``("put", model, path, size, mtime_ns, dtype, fingerprint_bytes)``
    Add or replace one fingerprint; ``dtype`` is ``"float16"`` or ``"float32"``
    (little-endian).
``("del", model_or_None, path)``
    Forget ``path`` for one model, or for every model when ``None``.
``("move", old_path, new_path)``
    In every model: forget ``new_path``, then rename ``old_path`` (when
    present) to ``new_path``.
``("fail", model, path, size, mtime_ns, reason)``
    The file at ``path``, at that size and mtime, could not be read as a
    photo (``reason`` a short text): it is not tried again until it changes.
    A later ``put`` or ``del`` of the path forgets it. (Added after version
    1's first release; a snapshot keeps these under the optional key
    ``"failed"``: ``{model: {"paths", "sizes", "mtimes", "reasons"}}``.)

Every pickle here is read with :class:`SafeUnpickler`, which refuses every
global, so a tampered file can at worst describe builtin containers, never run
code.
"""

import io
import itertools
import os
import pickle
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import PurePath, PurePosixPath
from typing import NamedTuple

import numpy as np

from ._exceptions import InvalidParameter

__all__ = [
    "DTYPES", "BadRecord", "Entry", "Model", "SafeUnpickler", "State", "Unreadable", "all_finite", "all_relpaths",
    "check_int", "check_iterable", "check_model", "check_path", "check_vector", "encode", "is_relpath",
    "iter_records", "safe_load",
]

FORMAT = "imagecluster-store"
VERSION = 1

HEADER = struct.Struct("<II")
DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
_BAD_PARTS = frozenset({"", ".", ".."})
# With paths joined by NUL (and NUL at both ends), any of these marks a path that is
# absolute, empty, or has an empty, "." or ".." part.
_BAD_JOINED = (
    "\x00/", "\x00\x00", "//", "/\x00",
    "\x00./", "/./", "/.\x00", "\x00.\x00",
    "\x00../", "/../", "/..\x00", "\x00..\x00",
)
# High bytes of little-endian float16 values whose exponent is not all ones (finite values).
_F16_FINITE_HIGH_BYTES = bytes(b for b in range(256) if b & 0x7C != 0x7C)
_CHUNK = 1 << 20  # elements per step in whole-matrix scans
_MAX_RECORD = 1 << 26  # no record we write comes near 64 MB (one put is one batch of photos)
_PICKLE_START = b"\x80\x05"  # protocol 5


class BadRecord(Exception):
    """A journal record that cannot be used; replay stops at ``offset``.

    Never leaves the store: the store logs it and truncates the journal there
    on its next write.
    """

    def __init__(self, offset, reason, *, torn=False):
        super().__init__(f"bad journal record at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason
        self.torn = torn  # cut short by the end of the file: a crash during an append, not damage


class SafeUnpickler(pickle.Unpickler):
    """Unpickler for builtin containers only: every global is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def safe_load(file):
    """Unpickle one object from a binary file without resolving any global.

    Parameters
    ----------
    file : binary file object
        Open for reading.

    Returns
    -------
    obj : object
        Built from builtins only (dict, list, tuple, str, bytes, int, ...).

    Raises
    ------
    Exception
        Whatever the unpickler raises on bad input (``UnpicklingError``,
        ``EOFError``, ``ValueError``, ``MemoryError``, ...); callers wrap it.
    """
    return SafeUnpickler(file).load()


def is_relpath(path):
    """Tell whether ``path`` is a canonical POSIX path relative to the library.

    Parameters
    ----------
    path : object
        Candidate.

    Returns
    -------
    ok : bool
        True for a non-empty ``str`` that is not absolute and has no empty,
        ``.`` or ``..`` parts and no NUL.
    """
    return (
        type(path) is str
        and path != ""
        and path[0] != "/"
        and "\x00" not in path
        and _BAD_PARTS.isdisjoint(path.split("/"))
    )


def all_relpaths(paths):
    """:func:`is_relpath` for every item of a list, fast for long lists of good paths."""
    try:
        joined = "\x00" + "\x00".join(paths) + "\x00"
    except TypeError:
        return False
    if joined.count("\x00") == len(paths) + 1 and not any(bad in joined for bad in _BAD_JOINED):
        return True
    return all(map(is_relpath, paths))


def encode(records):
    """Frame records for one append.

    Parameters
    ----------
    records : iterable of tuple
        Records as described in the module docstring.

    Returns
    -------
    data : bytes
        The framed records, ready for a single ``os.write``.
    """
    chunks = []
    for record in records:
        payload = pickle.dumps(record, protocol=5)
        chunks.append(HEADER.pack(len(payload), zlib.crc32(payload)))
        chunks.append(payload)
    return b"".join(chunks)


def iter_records(data, start) -> Iterator[tuple[int, tuple]]:
    """Decode framed records, checking frame, CRC, pickle and record shape.

    Parameters
    ----------
    data : bytes
        Journal bytes beginning at file offset ``start``.
    start : int
        File offset of ``data[0]``, used for offsets in results and errors.

    Yields
    ------
    end : int
        File offset just after the record.
    record : tuple
        A checked record.

    Raises
    ------
    BadRecord
        At the first torn, CRC-bad, unreadable or malformed record.
    """
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        offset = start + pos
        if len(view) - pos < HEADER.size:
            raise BadRecord(offset, "torn record header", torn=True)
        length, crc = HEADER.unpack_from(view, pos)
        payload = view[pos + HEADER.size : pos + HEADER.size + length]
        if len(payload) < length:
            # An append cut short by a crash has a plausible length and starts like our pickles;
            # random bytes past the last record almost never do.
            torn = length <= _MAX_RECORD and bytes(payload[:2]) in (b"", b"\x80", _PICKLE_START)
            raise BadRecord(offset, "torn record" if torn else "damaged record (impossible length)", torn=torn)
        if zlib.crc32(payload) != crc:
            raise BadRecord(offset, "checksum mismatch")
        try:
            record = safe_load(io.BytesIO(payload))
        except Exception as exc:  # anything a hostile pickle can provoke
            raise BadRecord(offset, f"unreadable payload ({exc})") from exc
        reason = _record_problem(record)
        if reason:
            raise BadRecord(offset, reason)
        pos += HEADER.size + length
        yield start + pos, record


def _is_int(value):
    return type(value) is int


def _finite_bytes(raw, dtype):
    """True when little-endian floats in ``raw`` hold no inf or NaN."""
    if dtype == "float16":  # exponent bits all live in the high byte: a C-speed byte scan
        return not raw[1::2].translate(None, _F16_FINITE_HIGH_BYTES)
    return bool(np.isfinite(np.frombuffer(raw, DTYPES[dtype])).all())


def _record_problem(record):
    """Return why ``record`` is malformed, or an empty string."""
    if type(record) is not tuple or not record:
        return "not a tuple"
    kind = record[0]
    if kind == "base":
        ok = len(record) == 2 and (record[1] is None or type(record[1]) is bytes)
    elif kind == "put":
        if len(record) != 7:
            return "put: wrong length"
        _, model, path, size, mtime_ns, dtype, raw = record
        ok = (
            type(model) is str
            and model != ""
            and is_relpath(path)
            and _is_int(size)
            and size >= 0
            and _is_int(mtime_ns)
            and type(dtype) is str
            and dtype in DTYPES
            and type(raw) is bytes
            and len(raw) > 0
            and len(raw) % DTYPES[dtype].itemsize == 0
        )
        if ok and not _finite_bytes(raw, dtype):
            return "put: non-finite fingerprint"
    elif kind == "del":
        ok = len(record) == 3 and (record[1] is None or (type(record[1]) is str and record[1] != ""))
        ok = ok and is_relpath(record[2])
    elif kind == "move":
        ok = len(record) == 3 and is_relpath(record[1]) and is_relpath(record[2])
    elif kind == "fail":
        ok = (
            len(record) == 6
            and type(record[1]) is str
            and record[1] != ""
            and is_relpath(record[2])
            and _is_int(record[3])
            and record[3] >= 0
            and _is_int(record[4])
            and type(record[5]) is str
        )
    else:
        return f"unknown record kind {kind!r}"[:80]
    return "" if ok else f"malformed {kind} record"


class Entry(NamedTuple):
    """What the store knows about one photo file when it was fingerprinted."""

    size: int
    mtime_ns: int


class Model:
    """One model's fingerprints: a matrix whose first ``used`` rows are the photos, and path <-> row maps.

    Rows stay dense: removing a photo moves the last row into its place, so
    rows ``[0, used)`` are always exactly the stored photos and the matrix can
    be handed out as one view (:meth:`view`) without gathering. A view handed
    out is never changed afterwards: the next change of an existing row
    copies the matrix first (copy on write); appending a row does not touch
    the rows a view shows.
    """

    __slots__ = ("dim", "matrix", "shared", "paths", "rows", "entries")

    def __init__(self, dim, matrix, paths, entries):
        self.dim = dim
        self.matrix = matrix  # (capacity, dim), writable; rows [0, len(paths)) are live
        self.shared = False  # a view of the live rows was handed out
        self.paths = paths  # row -> path
        self.rows = dict(zip(paths, range(len(paths))))  # path -> row
        self.entries = entries  # path -> Entry

    @property
    def used(self):
        return len(self.paths)

    def _own(self):
        """Copy the matrix before changing a row that a handed-out view shows."""
        if self.shared:
            self.matrix = self.matrix.copy()
            self.shared = False

    def put(self, path, size, mtime_ns, vector):
        row = self.rows.get(path)
        if row is None:
            row = self.used
            if row >= len(self.matrix):  # grow by half: amortised O(1) per photo
                capacity = max(16, len(self.matrix) + len(self.matrix) // 2)
                matrix = np.empty((capacity, self.dim), self.matrix.dtype)
                matrix[:row] = self.matrix[:row]
                self.matrix, self.shared = matrix, False
            self.rows[path] = row
            self.paths.append(path)
        else:
            self._own()
        self.matrix[row] = vector
        self.entries[path] = tuple.__new__(Entry, (size, mtime_ns))

    def remove(self, path):
        row = self.rows.pop(path, None)
        if row is None:
            return
        del self.entries[path]
        last = self.used - 1
        if row != last:
            self._own()
            moved = self.paths[last]
            self.matrix[row] = self.matrix[last]
            self.paths[row] = moved
            self.rows[moved] = row
        self.paths.pop()

    def move(self, old, new):
        if old != new:
            self.remove(new)
            if old in self.rows:
                row = self.rows[new] = self.rows.pop(old)
                self.paths[row] = new
                self.entries[new] = self.entries.pop(old)

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


class Unreadable(NamedTuple):
    """A file that could not be read as a photo, at the size and mtime it had then."""

    size: int
    mtime_ns: int
    reason: str


class State:
    """The store's content in memory, free of I/O: models, unreadable files and the snapshot token."""

    def __init__(self, dtype, token=None):
        self.dtype = dtype
        self.token = token
        self.models = {}
        self.failed = {}  # model -> {path: Unreadable}

    @classmethod
    def from_snapshot(cls, obj, dtype):
        """Check an unpickled snapshot and build a state; ValueError says why not."""
        if type(obj) is not dict or obj.get("format") != FORMAT:
            raise ValueError("not an imagecluster store")
        if obj.get("version") != VERSION:
            raise ValueError(f"unsupported store version {obj.get('version')!r}")
        token, models = obj.get("token"), obj.get("models")
        if (token is not None and type(token) is not bytes) or type(models) is not dict:
            raise ValueError("bad token or models")
        state = cls(dtype, token)
        for name, m in models.items():
            if type(name) is not str or not name or type(m) is not dict:
                raise ValueError("bad model entry")
            state._load_model(name, *(m.get(k) for k in ("dim", "dtype", "paths", "sizes", "mtimes", "data")))
        failed = obj.get("failed", {})
        if type(failed) is not dict:
            raise ValueError("bad failed entry")
        for name, f in failed.items():
            state._load_failed(name, f)
        return state

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

    def _load_model(self, name, dim, dtype, paths, sizes, mtimes, data):
        where = f"model {name!r}"
        if type(dim) is not int or dim <= 0 or type(dtype) is not str or dtype not in DTYPES:
            raise ValueError(f"{where}: bad dim or dtype")
        if not (type(paths) is type(sizes) is type(mtimes) is list) or type(data) not in (bytes, bytearray):
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
        stored = np.frombuffer(data, DTYPES[dtype]).reshape(n, dim)
        # A writable copy with room to grow: the first put after loading costs no copy of the matrix.
        matrix = np.empty((n + max(16, n // 8), dim), self.dtype)
        with np.errstate(over="ignore"):
            matrix[:n] = stored
        if not all_finite(matrix[:n]):
            raise ValueError(f"{where}: non-finite fingerprint values")
        if n:
            entries = dict(zip(paths, map(tuple.__new__, itertools.repeat(Entry), zip(sizes, mtimes))))
            self.models[name] = Model(dim, matrix, list(paths), entries)

    def _forget_failure(self, model, path):
        failed = self.failed.get(model)
        if failed is not None and failed.pop(path, None) is not None and not failed:
            del self.failed[model]

    def to_snapshot(self, token):
        """The snapshot dict (builtins only) for the current content."""
        models = {}
        for name, m in sorted(self.models.items()):
            paths = sorted(m.rows)
            models[name] = {
                "dim": m.dim,
                "dtype": self.dtype.name,
                "paths": paths,
                "sizes": [m.entries[p].size for p in paths],
                "mtimes": [m.entries[p].mtime_ns for p in paths],
                "data": m.take(paths).astype(self.dtype, copy=False).tobytes(),
            }
        failed = {}
        for name, f in sorted(self.failed.items()):
            paths = sorted(f)
            failed[name] = {"paths": paths, "sizes": [f[p].size for p in paths],
                            "mtimes": [f[p].mtime_ns for p in paths], "reasons": [f[p].reason for p in paths]}
        snapshot = {"format": FORMAT, "version": VERSION, "token": token, "models": models}
        if failed:
            snapshot["failed"] = failed
        return snapshot

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
                m = self.models[model] = Model(vector.size, np.empty((0, vector.size), self.dtype), [], {})
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
        elif kind == "fail":
            _, model, path, size, mtime_ns, reason = record
            self.failed.setdefault(model, {})[path] = Unreadable(size, mtime_ns, reason)
        else:
            raise ValueError(f"unexpected {kind!r} record")


def all_finite(a):
    """True when no value of a float16/float32 array is inf or NaN (chunked: cache-friendly)."""
    flat = a.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        chunk = flat[i : i + _CHUNK]
        if chunk.dtype.itemsize == 2:
            if np.bitwise_and(chunk.view(np.uint16), 0x7C00).max() == 0x7C00:
                return False
        elif not np.isfinite(chunk).all():
            return False
    return True


def check_path(path, what="path"):
    """Normalise a library-relative path to its POSIX str; InvalidParameter otherwise."""
    if isinstance(path, PurePath):
        path = path.as_posix()
    elif isinstance(path, os.PathLike):
        path = os.fspath(path)
    if type(path) is not str:
        raise InvalidParameter(f"{what} must be a str or path, got {type(path).__name__}")
    if is_relpath(path):
        return path
    norm = PurePosixPath(path)
    if norm.is_absolute() or ".." in norm.parts or not norm.parts or "\x00" in path:
        raise InvalidParameter(f"{what} must be relative to the library, without '..': {path!r}")
    return norm.as_posix()


def check_model(model):
    """Return ``model`` if it is a non-empty str; InvalidParameter otherwise."""
    if type(model) is not str or not model:
        raise InvalidParameter(f"model must be a non-empty str, got {model!r}")
    return model


def check_int(value, what, *, minimum=None):
    """Return ``value`` as a Python int (not bool), at least ``minimum``; InvalidParameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameter(f"{what} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidParameter(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def check_vector(fingerprint, dtype, path):
    """Cast one fingerprint to the store dtype: 1-D, real, finite (also after the cast)."""
    try:
        a = np.asarray(fingerprint)
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"fingerprint of {path!r} is not an array: {exc}") from exc
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "fiu":
        raise InvalidParameter(f"fingerprint of {path!r} must be a non-empty 1-D real array, got {a.dtype} {a.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        cast = a.astype(dtype)
    if not np.isfinite(a).all() or not all_finite(cast):
        raise InvalidParameter(f"fingerprint of {path!r} has values that are not finite in {dtype.name}")
    return cast


def check_iterable(value, what):
    """Return ``value`` if it is an iterable other than str/bytes; InvalidParameter otherwise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidParameter(f"{what} must be an iterable of items, got {type(value).__name__}")
    return value
