"""Per-library fingerprint store in ``<library>/.imagecluster/``.

Files in that folder (formats in :mod:`imagecluster._journal`):

``fingerprints.pk``
    Snapshot: a pickle of builtins only, loaded without resolving any global,
    so a tampered file raises :class:`~imagecluster.StoreCorrupt` instead of
    running code.
``journal.pk``
    Append-only changes since the snapshot.
    One batch of changes is one ``os.write`` and one ``fsync``.
``lock``
    ``fcntl.flock`` target: writers hold it exclusively, readers that must
    re-read hold it shared.

Everything is keyed by (model name, path), so fingerprints of two models
never mix. Each public method first catches up with changes other processes
made (two ``stat`` calls when nothing changed). A crash mid-append leaves a
torn record that replay skips and the next write cuts off; a crash during
:meth:`Store.compact` leaves either the old snapshot and journal or the new
snapshot and an old journal that its base token marks as already merged.
"""

import contextlib
import errno
import fcntl
import logging
import os
import pickle
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import _journal
from ._exceptions import InvalidParameter, LibraryNotFound, StoreCorrupt, StoreError, StoreLocked
from ._journal import DTYPES, Entry, State, check_int, check_iterable, check_model, check_path, check_vector

__all__ = ["Entry", "FingerprintView", "Store"]

logger = logging.getLogger(__name__)

FOLDER_NAME = ".imagecluster"
SNAPSHOT_NAME = "fingerprints.pk"
JOURNAL_NAME = "journal.pk"
LOCK_NAME = "lock"


def _sig(path):
    """Identity of a file's current version, or None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
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


class FingerprintView(NamedTuple):
    """One model's fingerprints as a store holds them (see :meth:`Store.view`)."""

    paths: list
    matrix: np.ndarray
    entries: dict


class Store:
    """Fingerprints of one photo library, kept in ``<library>/.imagecluster/``.

    Safe to use from several processes (a CLI run and the daemon) and threads
    at once: writes hold an exclusive lock on the store, and every call first
    catches up with what other processes wrote.

    Parameters
    ----------
    library : str or path-like
        The photo folder. Nothing is read or written until a method is called,
        and reading a library without a store writes nothing.
    dtype : {"float16", "float32"}, default="float16"
        How fingerprints are kept on disk and in memory. Callers always get
        float32; float16 halves disk and memory at ~3 significant digits.
    lock_timeout : float, default=10.0
        Seconds to wait for another process's write before raising
        :class:`~imagecluster.StoreLocked`.

    Raises
    ------
    InvalidParameter
        From any method, for a bad argument (also from the constructor).
    StoreCorrupt
        From any method, when the snapshot is not a valid store; deleting
        the folder rebuilds it. Damaged journal records are only logged.
    StoreLocked
        From writes, and from reads that must re-read files, when another
        process holds the lock longer than ``lock_timeout``.
    StoreError
        When the files cannot be read or written.

    Attributes
    ----------
    library : Path
        The photo folder.
    folder : Path
        ``library / ".imagecluster"``.
    """

    def __init__(self, library, *, dtype="float16", lock_timeout=10.0):
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in DTYPES:
            raise InvalidParameter(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or not lock_timeout >= 0:
            raise InvalidParameter(f"lock_timeout must be a number >= 0, got {lock_timeout!r}")
        self.library = Path(library)
        self.folder = self.library / FOLDER_NAME
        self.dtype = name
        self.lock_timeout = float(lock_timeout)
        self._mutex = threading.RLock()
        self._state = State(DTYPES[name])
        self._loaded = False
        self._snapshot_sig = None
        self._journal_sig = None
        self._journal_good = 0  # journal offset after the last good record: where the next append goes

    def __repr__(self):
        return f"Store({str(self.library)!r}, dtype={self.dtype!r})"

    # ----------------------------------------------------------------- reads

    def models(self):
        """Names of the models that have at least one fingerprint.

        Returns
        -------
        names : list of str
            Sorted.
        """
        with self._mutex:
            self._refresh()
            return sorted(self._state.models)

    def __len__(self):
        """Number of (model, path) fingerprints stored."""
        with self._mutex:
            self._refresh()
            return sum(len(m.rows) for m in self._state.models.values())

    def entries(self, model):
        """What is known about each fingerprinted photo of one model.

        Parameters
        ----------
        model : str
            Model name.

        Returns
        -------
        entries : dict of str to Entry
            Library-relative POSIX path -> ``Entry(size, mtime_ns)``; a new dict,
            empty for an unknown model.
        """
        model = check_model(model)
        with self._mutex:
            self._refresh()
            m = self._state.models.get(model)
            return dict(m.entries) if m else {}

    def fingerprints(self, model, paths=None):
        """Fingerprints of one model as one matrix.

        Parameters
        ----------
        model : str
            Model name.
        paths : iterable of str or None, default=None
            Library-relative paths wanted, in the order wanted; paths not in
            the store are left out. None means every path, sorted.

        Returns
        -------
        paths : list of str
            The paths found, one per row.
        fingerprints : ndarray of shape (n_images, n_features), dtype float32
            A new array; shape (0, 0) for an unknown model.
        """
        model = check_model(model)
        wanted = None if paths is None else [check_path(p) for p in check_iterable(paths, "paths")]
        with self._mutex:
            self._refresh()
            m = self._state.models.get(model)
            if m is None:
                return [], np.empty((0, 0), np.float32)
            found = sorted(m.rows) if wanted is None else [p for p in wanted if p in m.rows]
            return found, m.take(found).astype(np.float32)

    def view(self, model):
        """Every fingerprint of one model as it is held, without a copy: the fast path for clustering.

        Parameters
        ----------
        model : str
            Model name.

        Returns
        -------
        FingerprintView
            ``paths`` (list of str, in row order), ``matrix`` (read-only
            ndarray of shape (n_images, n_features), in the store's dtype,
            never changed afterwards: later writes copy it first) and
            ``entries`` (dict of path to Entry, a new dict). Empty for an
            unknown model (``matrix`` of shape (0, 0)).
        """
        model = check_model(model)
        with self._mutex:
            self._refresh()
            m = self._state.models.get(model)
            if m is None:
                return FingerprintView([], np.empty((0, 0), self._state.dtype), {})
            paths, matrix = m.view()
            return FingerprintView(paths, matrix, dict(m.entries))

    # ---------------------------------------------------------------- writes

    def put(self, model, items):
        """Add or replace fingerprints: one journal append and one fsync per call.

        Parameters
        ----------
        model : str
            Name of the model that made the fingerprints.
        items : iterable of (path, size, mtime_ns, fingerprint)
            ``path`` relative to the library; ``size`` in bytes and
            ``mtime_ns`` as from ``os.stat``; ``fingerprint`` a 1-D finite
            array-like whose length matches the model's other fingerprints.
            Later items win over earlier ones for the same path.

        Raises
        ------
        InvalidParameter
            Bad path, numbers or fingerprint, or a length that differs from
            the model's.
        StoreLocked
            Another process kept the store locked for ``lock_timeout`` seconds.
        """
        model = check_model(model)
        dtype = DTYPES[self.dtype]
        records, dims = [], set()
        for item in check_iterable(items, "items"):
            try:
                path, size, mtime_ns, fingerprint = item
            except (TypeError, ValueError) as exc:
                raise InvalidParameter("each item must be (path, size, mtime_ns, fingerprint)") from exc
            path = check_path(path)
            vector = check_vector(fingerprint, dtype, path)
            dims.add(vector.size)
            size, mtime_ns = check_int(size, "size", minimum=0), check_int(mtime_ns, "mtime_ns")
            records.append(("put", model, path, size, mtime_ns, self.dtype, vector.tobytes()))
        if len(dims) > 1:
            raise InvalidParameter(f"fingerprints of one call must have one length, got {sorted(dims)}")

        def build(state):
            m = state.models.get(model)
            if m is not None and dims and m.dim not in dims:
                raise InvalidParameter(f"model {model!r} stores {m.dim} values per fingerprint, got {next(iter(dims))}")
            return records

        self._write(build)

    def remove(self, paths, *, model=None):
        """Forget photos.

        Parameters
        ----------
        paths : iterable of str
            Library-relative paths; those not stored are ignored.
        model : str or None, default=None
            Forget them for this model only; None means for every model.
        """
        model = None if model is None else check_model(model)
        paths = [check_path(p) for p in check_iterable(paths, "paths")]

        def build(state):
            models = state.models.values() if model is None else [state.models.get(model)]
            return [("del", model, p) for p in dict.fromkeys(paths) if any(m and p in m.rows for m in models)]

        self._write(build)

    def move(self, old, new):
        """Rename one photo in every model (one journal append).

        Parameters
        ----------
        old, new : str
            Library-relative paths. The file at ``new`` is now the one that
            was at ``old``: ``new`` is forgotten in every model, then ``old``
            is renamed to ``new`` in the models that have it.
        """
        self.move_many([(old, new)])

    def move_many(self, moves):
        """Rename photos in every model, in order, with one journal append.

        Parameters
        ----------
        moves : iterable of (old, new)
            As for :meth:`move`; use it for a renamed folder.
        """
        pairs = []
        for pair in check_iterable(moves, "moves"):
            try:
                old, new = pair
            except (TypeError, ValueError) as exc:
                raise InvalidParameter("each move must be (old, new)") from exc
            pairs.append(("move", check_path(old, "old"), check_path(new, "new")))

        def build(state):
            known = set().union(*(m.rows for m in state.models.values()))
            records = []
            for record in pairs:  # simulate, to leave out no-ops
                _, old, new = record
                if old != new and (old in known or new in known):
                    known.discard(new)
                    if old in known:
                        known.discard(old)
                        known.add(new)
                    records.append(record)
            return records

        self._write(build)

    def compact(self):
        """Rewrite the snapshot with the current content and empty the journal.

        The new snapshot is written to a temporary file and renamed over the
        old one, so a crash at any point leaves a readable store. Does
        nothing for a library without a store, or when the journal is empty.
        """
        with self._mutex:
            if not self.folder.is_dir():
                return
            with self._lock(exclusive=True):
                self._refresh_locked()
                if self._snapshot_sig is not None and (self._journal_sig is None or self._journal_sig[1] == 0):
                    return  # nothing to merge
                token = os.urandom(16)
                snapshot = self._state.to_snapshot(token)
                path = self.folder / SNAPSHOT_NAME
                try:
                    for stale in self.folder.glob(".fingerprints-*.tmp"):  # from a crashed compaction
                        stale.unlink()
                    self._write_snapshot(snapshot, path)
                    with open(self.folder / JOURNAL_NAME, "ab") as f:
                        f.truncate(0)
                        os.fsync(f.fileno())
                except OSError as exc:
                    raise StoreError(f"cannot compact the store in {self.folder}: {exc}") from exc
                self._state = State.from_snapshot(snapshot, self._state.dtype)
                self._snapshot_sig = _sig(path)
                self._journal_sig = _sig(self.folder / JOURNAL_NAME)
                self._journal_good = 0

    # -------------------------------------------------------------- internals

    def _write_snapshot(self, snapshot, path):
        fd, tmp = tempfile.mkstemp(prefix=".fingerprints-", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(snapshot, f, protocol=5)
                f.flush()
                os.fchmod(f.fileno(), 0o644)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.folder)

    def _write(self, build):
        """Under the exclusive lock: catch up, ask ``build(state)`` for records, append them."""
        with self._mutex:
            if not self.folder.is_dir():  # no store yet: create it only if there is something to write
                self._refresh()
                if not build(self._state):
                    return
        with self._mutex, self._lock(exclusive=True):
            self._refresh_locked()
            records = build(self._state)
            if records:
                self._append(records)

    def _append(self, records):
        path = self.folder / JOURNAL_NAME
        start = self._journal_good
        data = _journal.encode([("base", self._state.token), *records] if start == 0 else records)
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
        for record in records:
            self._state.apply(record)
        self._journal_good = start + len(data)
        self._journal_sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _refresh(self):
        """Catch up with other processes; re-reads under a shared lock only if a file changed."""
        if self._loaded and _sig(self.folder / SNAPSHOT_NAME) == self._snapshot_sig:
            if _sig(self.folder / JOURNAL_NAME) == self._journal_sig:
                return
        with self._lock(exclusive=False):
            self._refresh_locked()

    def _refresh_locked(self):
        """Catch up, holding a lock: replay new journal bytes, or reload everything."""
        journal = self.folder / JOURNAL_NAME
        if not self._loaded or _sig(self.folder / SNAPSHOT_NAME) != self._snapshot_sig:
            self._reload()
            return
        sig, old = _sig(journal), self._journal_sig
        if sig == old:
            return
        if sig is None or (old is not None and sig[0] != old[0]) or sig[1] < self._journal_good:
            self._reload()  # journal deleted, replaced or truncated
            return
        self._journal_good, self._journal_sig = self._replay(self._state, self._journal_good)

    def _reload(self):
        path = self.folder / SNAPSHOT_NAME
        try:
            with open(path, "rb") as f:
                sig = os.fstat(f.fileno())
                obj = _journal.safe_load(f)
        except FileNotFoundError:
            state, snapshot_sig = State(self._state.dtype), None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        except MemoryError:
            raise
        except Exception as exc:  # anything else a hostile pickle can provoke
            raise self._corrupt(path, exc) from exc
        else:
            try:
                state = State.from_snapshot(obj, self._state.dtype)
            except ValueError as exc:
                raise self._corrupt(path, exc) from exc
            snapshot_sig = (sig.st_ino, sig.st_size, sig.st_mtime_ns, sig.st_ctime_ns)
        good, journal_sig = self._replay(state, 0)
        self._state, self._loaded = state, True
        self._snapshot_sig, self._journal_sig, self._journal_good = snapshot_sig, journal_sig, good

    def _corrupt(self, path, exc):
        return StoreCorrupt(f"{path} is not a valid imagecluster store ({exc}); delete {self.folder} to rebuild it")

    def _replay(self, state, start):
        """Apply journal records from byte ``start``; return (good end offset, journal sig)."""
        path = self.folder / JOURNAL_NAME
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                f.seek(start)
                data = f.read(st.st_size - start)
        except FileNotFoundError:
            return 0, None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        good = start
        try:
            for end, record in _journal.iter_records(data, start):
                if good == 0:
                    if record[0] != "base":
                        raise _journal.BadRecord(0, "no base record")
                    if record[1] != state.token:
                        logger.info("%s predates the snapshot (interrupted compaction); ignoring it", path)
                        return 0, sig
                else:
                    try:
                        state.apply(record)
                    except ValueError as exc:
                        raise _journal.BadRecord(good, str(exc)) from exc
                good = end
        except _journal.BadRecord as exc:
            logger.warning("%s: %s; ignoring the last %d bytes", path, exc, st.st_size - exc.offset)
        return good, sig

    @contextlib.contextmanager
    def _lock(self, *, exclusive):
        """Hold ``flock`` on the lock file; shared locks are skipped when there is no store."""
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
        try:
            os.mkdir(self.folder, 0o755)
        except FileExistsError:
            return
        except FileNotFoundError as exc:
            raise LibraryNotFound(f"library {self.library} does not exist") from exc
        except OSError as exc:
            raise StoreError(f"cannot create {self.folder}: {exc}") from exc
        try:
            _fsync_dir(self.library)
        except OSError as exc:
            raise StoreError(f"cannot sync {self.library}: {exc}") from exc
