"""Fingerprint matrices in memory-mapped files, so that a long-running process's resident memory stays small.

A million photos' float16 fingerprints are 2.6 GB. Held as ordinary
(anonymous) memory they stay resident as long as the daemon runs. Held in a
mapped file, their pages belong to the page cache instead: the kernel may
drop and re-read them, and :func:`release` takes them out of the process's
resident set after a pass over the matrix (the next pass finds them in the
page cache, or reads them again).

Three kinds of mapping:

* the matrix region of a snapshot file, read-only (:func:`map_region`):
  loading a store copies nothing. The snapshot is never written in place (a
  compaction writes a new file and renames it), so the mapping stays valid
  however the store changes; only a file truncated by hand could break it.
* the same region mapped privately, followed by spare rows of private
  memory (:func:`map_region_growable`): new photos are appended after the
  loaded ones, and a loaded row can change, without copying the matrix.
  Pages never written stay shared with the page cache; a page written
  becomes the process's own, and :func:`release` must be told to keep it
  (``keep``), since dropping it would lose what was written to it.
* a writable matrix in an unlinked temporary file (:func:`file_backed_empty`)
  for the copy that a change of a loaded row (or appending beyond the spare
  rows) makes. It is ``MAP_SHARED``, so releasing its pages never loses a
  change. Its blocks are reserved when it is made, so a full disk is an
  error there (and the store falls back to ordinary memory), never a
  ``SIGBUS`` at a later write.
"""

import contextlib
import ctypes
import ctypes.util
import functools
import mmap
import os
import sys
import tempfile

import numpy as np

__all__ = ["OpenFile", "file_backed_empty", "map_region", "map_region_growable", "mapping_of", "read_region",
           "release", "trim_heap"]

_PAGE = mmap.PAGESIZE
_MAP_FIXED = 0x10  # the same on every Linux architecture; Python 3.11's mmap module does not name it

def map_region(fd, start, length):
    """Map ``length`` bytes of an open file from byte ``start``, read-only.

    Returns
    -------
    memoryview
        Exactly the region; it keeps the mapping alive. The caller checks
        first that the file holds the region: a mapping past the end of the
        file raises ``SIGBUS`` when read.
    """
    base = start - start % mmap.ALLOCATIONGRANULARITY
    mapping = mmap.mmap(fd, start - base + length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=base)
    return memoryview(mapping)[start - base :]


def map_region_growable(fd, start, length, spare):
    """Map ``length`` bytes of an open file from byte ``start`` privately, followed by ``spare`` writable bytes.

    One address range: the file's region, then ``spare`` bytes of zeroed
    private memory, so that an array over it can grow into the spare bytes
    while its first ``length`` bytes are the file's pages (no copy). All of
    it is writable; what is written is private (the file never changes).

    Returns
    -------
    memoryview or None
        ``length + spare`` writable bytes, keeping the mappings alive. None
        where this cannot be done (not Linux, no ``mmap`` in the C library,
        or the kernel refused): the caller maps the region read-only instead.
        :func:`release` must be told which written parts to keep.
    """
    mmap_call = _libc_mmap()
    if mmap_call is None or length <= 0 or spare <= 0:
        return None
    base = start - start % _PAGE
    lead = start - base
    try:
        reserved = mmap.mmap(-1, lead + length + spare, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:
        return None
    pointer = ctypes.c_char.from_buffer(reserved)
    address = ctypes.addressof(pointer)
    del pointer  # lets the mapping be closed again
    # The file's pages replace the first part of the reserved range; the range stays one Python mmap, which
    # unmaps all of it (both kinds of page) when it is collected.
    mapped = mmap_call(address, lead + length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | _MAP_FIXED,
                       fd, base)
    if mapped != address:
        reserved.close()
        return None
    return memoryview(reserved)[lead:]


@functools.cache
def _libc_mmap():
    """The C library's ``mmap`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mmap_call = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mmap
    except (OSError, AttributeError):
        return None
    mmap_call.restype = ctypes.c_void_p
    mmap_call.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    return mmap_call


class OpenFile:
    """A duplicate of an open file's descriptor, closed when collected: lets a matrix map its snapshot again.

    The snapshot may be replaced (a compaction renames a new file over it);
    the descriptor still reads the file the matrix was loaded from.
    """

    fd = -1  # until __init__ has one: __del__ runs even when os.dup fails

    def __init__(self, fd):
        self.fd = os.dup(fd)

    def __del__(self):
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)


def read_region(file, start, length):
    """Bytes ``[start, start + length)`` of an open file: mapped, or read where the file system cannot map files."""
    try:
        return map_region(file.fileno(), start, length)
    except OSError:  # ENODEV and the like: some network and FUSE file systems
        file.seek(start)
        return file.read(length)


def _unlinked_file(folder):
    """A new read-write file in ``folder`` that has no name (``O_TMPFILE``, or created and unlinked at once)."""
    with contextlib.suppress(OSError, AttributeError):  # file systems without O_TMPFILE
        return os.open(folder, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fd, name = tempfile.mkstemp(prefix=".matrix-", suffix=".tmp", dir=folder)
    os.unlink(name)
    return fd


def file_backed_empty(shape, dtype, folder):
    """A writable array in an unlinked temporary file in ``folder``, or None when one cannot be made.

    None when the folder is not writable, the disk has no room for the
    whole array, or the file system cannot map files: the caller then uses
    ordinary memory.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes == 0:
        return None
    try:
        fd = _unlinked_file(folder)
    except OSError:
        return None
    try:
        os.posix_fallocate(fd, 0, nbytes)
        mapping = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError:
        return None
    finally:
        os.close(fd)  # the mapping keeps the file
    return np.frombuffer(mapping, dtype).reshape(shape)


def mapping_of(array):
    """The ``mmap`` an array's memory lies in, or None for ordinary memory."""
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return None


def release(array, keep=None):
    """Take a mapped array's pages out of this process's resident memory; nothing for ordinary memory.

    ``MADV_DONTNEED``: pages of a file stay in the page cache (changed pages
    of a shared mapping are still written to their file) and are mapped
    again when next read. Arrays and views sharing the mapping stay valid.

    Parameters
    ----------
    array : ndarray
    keep : iterable of (int, int) or None, default=None
        Byte ranges ``[start, end)`` of ``array`` whose pages stay: what was
        written into a private mapping (:func:`map_region_growable`), which
        would otherwise be lost. None releases the whole mapping.
    """
    mapping = mapping_of(array)
    if mapping is None:
        return
    with contextlib.suppress(ValueError, OSError):  # a closed mapping; a kernel without madvise
        if keep is None:
            mapping.madvise(mmap.MADV_DONTNEED)
            return
        offset = array.ctypes.data - np.frombuffer(mapping, np.uint8).ctypes.data
        free = 0  # the first page not known to be kept
        for start, end in sorted(keep):
            first, last = (offset + start) // _PAGE, (offset + end - 1) // _PAGE
            if first > free:
                mapping.madvise(mmap.MADV_DONTNEED, free * _PAGE, (first - free) * _PAGE)
            free = max(free, last + 1)
        if free * _PAGE < len(mapping):
            mapping.madvise(mmap.MADV_DONTNEED, free * _PAGE, len(mapping) - free * _PAGE)


@functools.cache
def _malloc_trim():
    """The C library's ``malloc_trim`` (glibc), or None where there is none."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    return None


def trim_heap():
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``); nothing elsewhere.

    Freed blocks below the heap's top stay resident: after the similarity
    graph's first search at 1,000,000 photos that was 149 MB of a 588 MB
    process (439 MB after a trim). Costs about 10 ms; for after large work,
    not after every call.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
