"""The files of one library's store folder: the lock, the snapshot, the journal, and damaged stores kept aside.

Plain file work for :class:`~imagecluster.store.Store`, which holds the
content (:class:`~imagecluster._store_state.StoreState`) and decides when
to read, write and catch up. Formats are in :mod:`imagecluster._journal`;
every write here is made durable (``fsync`` of the file, and of the folder
when a name appears or moves) before it returns.
"""

import contextlib
import errno
import fcntl
import functools
import hashlib
import logging
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

from . import _journal, _mapped
from ._exceptions import LibraryNotFound, StoreCorrupt, StoreError, StoreLocked
from ._store_state import StoreState
from ._xdg import xdg_data_home
from .images import STORE_DIRNAME

__all__ = ["DAMAGED_PREFIX", "JOURNAL_NAME", "LOCK_NAME", "SNAPSHOT_NAME", "StoreFiles", "file_version",
           "store_folder"]

logger = logging.getLogger(__name__)

FOLDER_NAME = STORE_DIRNAME
SNAPSHOT_NAME = "fingerprints.pk"
JOURNAL_NAME = "journal.pk"
LOCK_NAME = "lock"
DAMAGED_PREFIX = "damaged-"


def store_folder(library, environ=None):
    """Where a library's store lives: ``<library>/.imagecluster``, or for a read-only library the user's data folder.

    A library on a read-only medium (a mounted archive, a DVD) or in a folder
    the user may not write gets its store under
    ``$XDG_DATA_HOME/imagecluster/stores/<name>-<hash of the path>``. A store
    folder that already exists in the library is always used.

    Parameters
    ----------
    library : path-like
        The photo folder (absolute).
    environ : mapping, default=None
        Environment to read ``XDG_DATA_HOME`` from; None means ``os.environ``.

    Returns
    -------
    pathlib.Path
    """
    library = Path(library)
    inside = library / FOLDER_NAME
    if inside.is_dir() or not library.is_dir() or os.access(library, os.W_OK):
        return inside
    digest = hashlib.sha256(os.fsencode(library)).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in library.name)[:40] or "root"
    return xdg_data_home(environ) / "imagecluster" / "stores" / f"{name}-{digest}"


def file_version(path):
    """Identity of a file's current version ``(inode, size, mtime_ns, ctime_ns)``, or None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return _version_of(st)


def _version_of(st):
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fsync_dir(path):
    """Make a folder's new or renamed entries durable (where the file system can)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _grow(file, start, offset, length, spare):
    """A matrix region of the snapshot ``file`` (an ``OpenFile``; regions from byte ``start``), with room to grow."""
    return _mapped.map_region_growable(file.fd, start + offset, length, spare)


class StoreFiles:
    """The files of one store folder. Holds no content; remembers only which damaged journal it copied aside.

    Parameters
    ----------
    library : Path
        The photo folder (for messages, and to refuse making a store for a
        library that is not there).
    folder : Path
        The store folder (:func:`store_folder`).
    lock_timeout : float
        Seconds to wait for another process's lock before
        :class:`~imagecluster.StoreLocked`.
    """

    def __init__(self, library, folder, lock_timeout):
        self.library = library
        self.folder = folder
        self.lock_timeout = lock_timeout
        self._kept_damage = None  # (journal version, offset) of the damage last copied aside

    @property
    def snapshot(self):
        return self.folder / SNAPSHOT_NAME

    @property
    def journal(self):
        return self.folder / JOURNAL_NAME

    def versions(self):
        """``(snapshot version, journal version)``, each None when the file is missing (two ``stat`` calls)."""
        return file_version(self.snapshot), file_version(self.journal)

    # ------------------------------------------------------------- snapshot

    def read_snapshot(self, dtype, allocate):
        """``(state, version)`` of the snapshot; an empty state and None when there is none.

        Raises StoreCorrupt when the file is not a valid store, StoreError
        when it cannot be read.
        """
        path = self.snapshot
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return StoreState(dtype, allocate=allocate), None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        with f:
            try:
                st = os.fstat(f.fileno())
                obj = _journal.safe_load(f)
                start = _journal.align(f.tell())  # the unpickler stops at the header's end
                regions = _mapped.read_region(f, start, st.st_size - start) if st.st_size > start else b""
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc}") from exc
            except MemoryError:
                raise
            except Exception as exc:  # anything else a hostile pickle can provoke
                raise self._corrupt(exc) from exc
            grow = None
            if not isinstance(regions, bytes):  # mapped: the matrices may grow into spare rows
                with contextlib.suppress(OSError):  # no descriptor left: mapped read-only, copied when changed
                    grow = functools.partial(_grow, _mapped.OpenFile(f.fileno()), start)
            try:
                state = StoreState.from_snapshot(obj, dtype, regions, allocate, grow)
            except ValueError as exc:
                raise self._corrupt(exc) from exc
        return state, _version_of(st)

    def write_snapshot(self, header, matrices):
        """Write a snapshot (``StoreState.to_snapshot``) to a temporary file, then rename it over the old one."""
        for stale in self.folder.glob(".fingerprints-*.tmp"):  # from a crashed compaction
            stale.unlink()
        fd, tmp = tempfile.mkstemp(prefix=".fingerprints-", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                blob = pickle.dumps(header, protocol=5)
                f.write(blob)
                start = _journal.align(len(blob))
                for offset, chunks in matrices:
                    f.write(bytes(start + offset - f.tell()))
                    for chunk in chunks:
                        f.write(chunk)
                f.flush()
                os.fchmod(f.fileno(), 0o644)
                os.fsync(f.fileno())
            os.replace(tmp, self.snapshot)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.folder)

    def _corrupt(self, exc):
        return StoreCorrupt(f"{self.snapshot} is not a valid imagecluster store ({exc}); "
                            f"delete {self.folder} to rebuild it")

    # -------------------------------------------------------------- journal

    def read_journal(self, start):
        """``(bytes from offset start, version)`` of the journal; ``(None, None)`` when there is none."""
        try:
            with open(self.journal, "rb") as f:
                st = os.fstat(f.fileno())
                f.seek(start)
                return f.read(st.st_size - start), _version_of(st)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StoreError(f"cannot read {self.journal}: {exc}") from exc

    def append_journal(self, data, start):
        """Write ``data`` at offset ``start`` (cutting what lies beyond: damage, or a merged journal); its version."""
        path = self.journal
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size != start:
                    logger.info(
                        "%s: cutting %d bytes of damaged or merged journal at byte %d", path, size - start, start
                    )
                    os.ftruncate(fd, start)
                os.lseek(fd, start, os.SEEK_SET)
                view = memoryview(data)
                while view:  # one write unless the kernel writes short
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if size == 0:
                _fsync_dir(self.folder)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc
        return _version_of(st)

    def empty_journal(self):
        """Cut the journal to nothing (after a compaction merged it); its version."""
        with open(self.journal, "ab") as f:
            f.truncate(0)
            os.fsync(f.fileno())
        return file_version(self.journal)

    # ----------------------------------------------------- damaged stores

    def set_aside(self, reason):
        """Move the damaged snapshot and journal to a ``damaged-<time>`` folder (exclusive lock held)."""
        try:
            aside = self._damaged_folder()
            for name in (SNAPSHOT_NAME, JOURNAL_NAME):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.folder / name, aside / name)
            _fsync_dir(self.folder)
        except OSError as exc:
            raise StoreCorrupt(
                f"the store in {self.folder} is damaged ({reason}) and cannot be moved aside ({exc}); "
                f"delete {self.folder} to rebuild it"
            ) from exc
        logger.warning(
            "the fingerprint store of %s was damaged (%s); it is kept in %s and rebuilt: "
            "its photos are fingerprinted again", self.library, reason, aside,
        )

    def keep_damaged_journal(self, version, bad):
        """Copy a journal with damage after good records aside once, so nothing is dropped silently."""
        if self._kept_damage == (version, bad.offset):
            return
        self._kept_damage = (version, bad.offset)
        path = self.journal
        try:
            aside = self._damaged_folder()
            shutil.copyfile(path, aside / JOURNAL_NAME)
        except (OSError, StoreError) as exc:
            logger.warning("%s: %s; the records before it are kept (a copy could not be made: %s)", path, bad, exc)
            return
        logger.warning("%s: %s; the records before it are kept, a copy of the whole journal is in %s",
                       path, bad, aside)

    def _damaged_folder(self):
        """A new ``damaged-<time>`` folder in the store folder, for files kept for the user."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for n in range(100):
            folder = self.folder / f"{DAMAGED_PREFIX}{stamp}{'' if n == 0 else f'-{n}'}"
            try:
                os.mkdir(folder, 0o755)
                return folder
            except FileExistsError:
                continue
        raise StoreError(f"cannot make a folder for the damaged store in {self.folder}")

    # ----------------------------------------------------------------- lock

    @contextlib.contextmanager
    def lock(self, *, exclusive):
        """Hold ``flock`` on the lock file; an exclusive lock makes the folder, a shared one is skipped without it."""
        path = self.folder / LOCK_NAME
        flags = os.O_RDONLY
        if exclusive:
            self._make_folder()
            flags = os.O_RDWR | os.O_CREAT
        try:
            fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        except FileNotFoundError as exc:
            if exclusive:
                raise StoreError(f"cannot open {path}: {exc}") from exc
            fd = None
        except OSError as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        if fd is None:
            yield
            return
        try:
            self._acquire(fd, exclusive)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _acquire(self, fd, exclusive):
        op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, op)
                return
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.1)
            except OSError as exc:
                raise StoreError(f"cannot lock {self.folder / LOCK_NAME}: {exc}") from exc
        raise StoreLocked(
            f"another imagecluster process is writing to {self.library}; try again when it finishes "
            f"(waited {self.lock_timeout:g} s)"
        )

    def _make_folder(self):
        if self.folder.is_dir():
            return
        if not self.library.is_dir():
            raise LibraryNotFound(f"library {self.library} does not exist")
        try:
            os.makedirs(self.folder.parent, exist_ok=True)  # the user's data folder, for a read-only library
            os.mkdir(self.folder, 0o755)
        except FileExistsError:
            return
        except OSError as exc:
            raise StoreError(f"cannot create {self.folder}: {exc}") from exc
        try:
            _fsync_dir(self.folder.parent)
        except OSError as exc:
            raise StoreError(f"cannot sync {self.folder.parent}: {exc}") from exc
