"""Fingerprint matrices in memory-mapped files, so that a long-running process's resident memory stays small.

A million photos' float16 fingerprints are 2.6 GB. Held as ordinary
(anonymous) memory they stay resident as long as the daemon runs. Held in a
mapped file, their pages belong to the page cache instead: the kernel may
drop and re-read them, and :func:`release` takes them out of the process's
resident set after a pass over the matrix (the next pass finds them in the
page cache, or reads them again).

Two kinds of mapping, both ``MAP_SHARED``, so that releasing pages never
loses a change:

* the matrix region of a snapshot file, read-only (:func:`map_region`):
  loading a store copies nothing. The snapshot is never written in place (a
  compaction writes a new file and renames it), so the mapping stays valid
  however the store changes; only a file truncated by hand could break it.
* a writable matrix in an unlinked temporary file (:func:`file_backed_empty`)
  for the copy that the first change after loading makes. Its blocks are
  reserved when it is made, so a full disk is an error there (and the store
  falls back to ordinary memory), never a ``SIGBUS`` at a later write.
"""

import contextlib
import ctypes
import ctypes.util
import functools
import mmap
import os
import tempfile

import numpy as np

__all__ = ["file_backed_empty", "map_region", "mapping_of", "read_region", "release", "trim_heap"]

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


def release(array):
    """Take a mapped array's pages out of this process's resident memory; nothing for ordinary memory.

    ``MADV_DONTNEED`` on a shared mapping: the pages stay in the page cache
    (changed ones are still written to their file) and are mapped again when
    next read. Arrays and views sharing the mapping stay valid.
    """
    mapping = mapping_of(array)
    if mapping is not None:
        with contextlib.suppress(ValueError, OSError):  # a closed mapping; a kernel without madvise
            mapping.madvise(mmap.MADV_DONTNEED)


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
