"""The store's file formats, free of I/O: the snapshot, the journal's records, and reading them safely.

One of three parts of :mod:`imagecluster.store`'s I/O-free core: the formats
(here), the content in memory (:mod:`imagecluster._store_state`) and the
checks of what callers pass (:mod:`imagecluster._validation`). The store does
the file I/O, locking and logging around them.

Snapshot (``fingerprints.pk``), version 2: a pickle of builtins only (the
header), built by :meth:`~imagecluster._store_state.StoreState.to_snapshot`
and checked by :meth:`~imagecluster._store_state.StoreState.from_snapshot`,
then zero bytes up to the next multiple of :data:`ALIGN`, then each model's
matrix, raw::

    {"format": "imagecluster-store", "version": 2, "token": bytes,
     "models": {name: {"dim": d, "dtype": "float16", "paths": [...],
                       "sizes": [...], "mtimes": [...],
                       "offset": where the (n, d) little-endian array starts,
                                 counted from the end of the header's padding}}}

The matrices are outside the pickle so that a store can map them instead of
reading them (:mod:`imagecluster._mapped`): a million photos' 2.6 GB then
cost no copy to load and need not stay resident. Each starts at a multiple
of :data:`ALIGN` (:func:`region_layout`). Version 1 snapshots, written before,
are the same header with each matrix inline as ``"data": bytes``; they are
read as ever and written as version 2 at the next compaction.

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
``("capture", path, size, mtime_ns, fields)``
    What the photo's header says about when and where it was taken, read
    at that size and mtime, for every model alike: ``fields`` is the tuple
    of :class:`imagecluster._capture.Capture` (floats, ints and None). A
    ``del`` for every model or a ``move`` of the path applies to it too.
    (Added after version 1's first release, like ``fail``; a snapshot keeps
    them under the optional key ``"captures"``: ``{"paths", "sizes",
    "mtimes", "fields"}``. Stores without them load unchanged.)

Every pickle here is read with :class:`SafeUnpickler`, which refuses every
global, so a tampered file can at worst describe builtin containers, never run
code.
"""

import io
import pickle
import struct
import zlib
from collections.abc import Iterator

import numpy as np

from ._capture import capture_problem

__all__ = [
    "ALIGN", "DTYPES", "BadRecord", "SafeUnpickler", "all_finite", "all_relpaths", "align", "encode", "is_relpath",
    "iter_records", "region_layout", "safe_load",
]

FORMAT = "imagecluster-store"
VERSION = 2  # the snapshot version written
READ_VERSIONS = (1, 2)
#: Matrices in a snapshot start at multiples of this (a page), each mappable on its own.
ALIGN = 4096

HEADER = struct.Struct("<II")
DTYPES: dict[str, np.dtype] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
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


def align(offset):
    """The first multiple of :data:`ALIGN` at or after ``offset``."""
    return -(-offset // ALIGN) * ALIGN


def region_layout(sizes):
    """Offsets of regions of ``sizes`` bytes laid one after another, each at a multiple of :data:`ALIGN`."""
    offsets, end = [], 0
    for size in sizes:
        offsets.append(end)
        end = align(end + size)
    return offsets


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
    """An int that fits the store's int64 columns of sizes and times."""
    return type(value) is int and -(1 << 63) <= value < 1 << 63


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
    elif kind == "capture":
        if len(record) != 5:
            return "capture: wrong length"
        _, path, size, mtime_ns, fields = record
        if not (is_relpath(path) and _is_int(size) and size >= 0 and _is_int(mtime_ns)):
            return "malformed capture record"
        return capture_problem(fields)
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
