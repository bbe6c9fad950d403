"""Per-library fingerprint store in ``<library>/.imagecluster/``.

Files in that folder (formats in :mod:`imagecluster._journal`):

``fingerprints.pk``
    Snapshot: a pickle of builtins only, loaded without resolving any global,
    so a tampered file raises :class:`~imagecluster.StoreCorrupt` instead of
    running code; then the fingerprint matrices, raw. Those are mapped, not
    read: loading copies nothing, new photos go into spare rows mapped after
    them and changed ones into private pages (a copy only once those are
    used up), and a process that asks for it (``file_backed``) keeps them
    out of its resident memory (:mod:`imagecluster._mapped`).
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

:class:`Store` is the public face and decides when to read, write and catch
up; the content in memory is :mod:`imagecluster._store_state`, the file work
(lock, snapshot, journal, damaged stores set aside) :mod:`imagecluster._store_files`.
"""

import logging
import os
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import _journal, _mapped
from ._capture import Capture, capture_problem
from ._exceptions import InvalidParameter, StoreCorrupt, StoreError
from ._journal import DTYPES
from ._store_files import StoreFiles, file_version, store_folder
from ._store_state import Captured, Entries, Entry, StoreState, Unreadable
from ._validation import check_int, check_iterable, check_model_key, check_relpath, check_share, check_vector

__all__ = ["Captured", "Entries", "Entry", "FingerprintView", "Store", "Unreadable", "store_folder"]

logger = logging.getLogger(__name__)

#: Smallest changed matrix a ``file_backed`` store keeps in a temporary file rather than in ordinary memory.
FILE_BACKED_MIN_BYTES = 64 << 20


class FingerprintView(NamedTuple):
    """One model's fingerprints as a store holds them (see :meth:`Store.view`)."""

    paths: list
    matrix: np.ndarray
    entries: Entries


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
    file_backed : bool, default=False
        For a long-running process over a large library (the daemon): keep
        a matrix copied since loading (from 64 MB up) in an unlinked
        temporary file in the store folder, mapped, rather than in ordinary
        memory, so that :meth:`release_memory` can take it out of the
        process's resident memory as it does the snapshot's. Costs that
        file's disk space (as much as the snapshot's matrices) while the
        process runs; without room on the disk, ordinary memory is used.

    Raises
    ------
    InvalidParameter
        From any method, for a bad argument (also from the constructor).
    StoreCorrupt
        From any method, when the snapshot is not a valid store and cannot
        be moved aside (a read-only store folder). Otherwise a damaged or
        tampered store is never an error: its files are moved to
        ``<folder>/damaged-<time>/`` (kept for the user, reported with one
        warning) and the store starts empty, so the photos are fingerprinted
        again. A journal damaged after some good records keeps those, and a
        copy of it goes to the same kind of folder.
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
        ``library / ".imagecluster"``, or for a read-only library a folder in
        the user's data folder (:func:`store_folder`).
    """

    def __init__(self, library, *, dtype="float16", lock_timeout=10.0, file_backed=False):
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in DTYPES:
            raise InvalidParameter(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or not lock_timeout >= 0:
            raise InvalidParameter(f"lock_timeout must be a number >= 0, got {lock_timeout!r}")
        self.library = Path(library)
        self.folder = store_folder(self.library)
        self.dtype = name
        self.lock_timeout = float(lock_timeout)
        self.file_backed = bool(file_backed)
        self._files = StoreFiles(self.library, self.folder, self.lock_timeout)
        self._mutex = threading.RLock()
        self._state = StoreState(DTYPES[name], allocate=self._allocate)
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
        entries : Entries
            A read-only mapping of library-relative POSIX path ->
            ``Entry(size, mtime_ns)``, as the store is now (later changes
            do not show in it); empty for an unknown model. It compares
            equal to a dict of the same items; ``dict(entries)`` makes one.
        """
        model = check_model_key(model)
        with self._mutex:
            self._refresh()
            m = self._state.models.get(model)
            return m.entries() if m else Entries()

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
        model = check_model_key(model)
        wanted = None if paths is None else [check_relpath(p) for p in check_iterable(paths, "paths")]
        with self._mutex:
            self._refresh()
            m = self._state.models.get(model)
            if m is None:
                return [], np.empty((0, 0), np.float32)
            found = sorted(m.rows) if wanted is None else [p for p in wanted if p in m.rows]
            return found, m.take_float32(found)

    def version(self):
        """An opaque value that changes whenever the store's content may have changed (two ``stat`` calls).

        Lets a cache built from the store (the similarity graph) skip its
        catch-up when nothing was written, by this process or another.
        """
        with self._mutex:
            self._refresh()
            return (self._snapshot_sig, self._journal_sig, self._journal_good)

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
            ``entries`` (:class:`Entries` as :meth:`entries` gives, with
            :meth:`Entries.by_row` in the order of ``paths``). Empty for an
            unknown model (``matrix`` of shape (0, 0)).
        """
        model = check_model_key(model)
        with self._mutex:
            self._refresh()
            m = self._state.models.get(model)
            if m is None:
                return FingerprintView([], np.empty((0, 0), self._state.dtype), Entries())
            paths, matrix = m.view()
            return FingerprintView(paths, matrix, m.entries())

    def release_memory(self):
        """Take the mapped fingerprint matrices out of this process's resident memory.

        Their pages stay in the page cache, so the next pass over them costs
        page faults, not reads, unless the kernel needed the memory. Call it
        after work that went over a whole matrix (a search, a Cluster) when
        the process then waits. Matrices in ordinary memory (a store without
        ``file_backed`` that changed since loading, or a small one) are not
        touched.
        """
        with self._mutex:
            for m in self._state.models.values():
                _mapped.release(m.matrix, keep=m.private_ranges())

    def unreadable(self, model):
        """Files that could not be read as photos, at the size and mtime they had then.

        Parameters
        ----------
        model : str
            Model name.

        Returns
        -------
        dict of str to Unreadable
            Library-relative path -> ``Unreadable(size, mtime_ns, reason)``; a new dict.
        """
        model = check_model_key(model)
        with self._mutex:
            self._refresh()
            return self._state.failed.get(model, {}).copy()  # a clone: dict() rebuilds one with deletions key by key

    def captures(self):
        """When and where each photo was taken, as read from its header (for every model alike).

        Returns
        -------
        dict of str to Captured
            Library-relative path -> ``Captured(size, mtime_ns, capture)``,
            the file's size and mtime when it was read; a new dict. A photo
            whose file changed since has a stale entry: compare them.
        """
        with self._mutex:
            self._refresh()
            return self._state.captures.copy()

    # ---------------------------------------------------------------- writes

    def put_captures(self, items):
        """Store photos' capture data (:func:`imagecluster._capture.read_capture`): one journal append.

        Parameters
        ----------
        items : iterable of (path, size, mtime_ns, Capture)
            ``size`` and ``mtime_ns`` of the file that was read. Entries that
            equal what is stored are not written again.
        """
        records = []
        for item in check_iterable(items, "items"):
            try:
                path, size, mtime_ns, capture = item
            except (TypeError, ValueError) as exc:
                raise InvalidParameter("each item must be (path, size, mtime_ns, capture)") from exc
            fields = tuple(capture) if isinstance(capture, tuple) else capture
            problem = capture_problem(fields)
            if problem:
                raise InvalidParameter(f"capture data of {path!r}: {problem}")
            records.append(("capture", check_relpath(path), check_int(size, "size", minimum=0),
                            check_int(mtime_ns, "mtime_ns"), fields))

        def build(state):
            return [r for r in records if state.captures.get(r[1]) != (r[2], r[3], Capture(*r[4]))]

        self._write(build)


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
        model = check_model_key(model)
        dtype = DTYPES[self.dtype]
        records, dims = [], set()
        for item in check_iterable(items, "items"):
            try:
                path, size, mtime_ns, fingerprint = item
            except (TypeError, ValueError) as exc:
                raise InvalidParameter("each item must be (path, size, mtime_ns, fingerprint)") from exc
            path = check_relpath(path)
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

    def mark_unreadable(self, model, items):
        """Remember files that could not be read, so they are not tried again until they change.

        Parameters
        ----------
        model : str
        items : iterable of (path, size, mtime_ns, reason)
            ``reason`` a short text for the user. A fingerprint stored for
            the path is kept until :meth:`remove`.
        """
        model = check_model_key(model)
        records = []
        for item in check_iterable(items, "items"):
            try:
                path, size, mtime_ns, reason = item
            except (TypeError, ValueError) as exc:
                raise InvalidParameter("each item must be (path, size, mtime_ns, reason)") from exc
            if not isinstance(reason, str):
                raise InvalidParameter(f"reason must be a str, got {type(reason).__name__}")
            records.append(("fail", model, check_relpath(path), check_int(size, "size", minimum=0),
                            check_int(mtime_ns, "mtime_ns"), reason[:500]))
        self._write(lambda state: records)

    def remove(self, paths, *, model=None):
        """Forget photos.

        Parameters
        ----------
        paths : iterable of str
            Library-relative paths; those not stored are ignored.
        model : str or None, default=None
            Forget them for this model only; None means for every model.
        """
        model = None if model is None else check_model_key(model)
        paths = [check_relpath(p) for p in check_iterable(paths, "paths")]

        def build(state):
            models = state.models.values() if model is None else [state.models.get(model)]
            failed = state.failed.values() if model is None else [state.failed.get(model)]
            return [("del", model, p) for p in dict.fromkeys(paths)
                    if any(m and p in m.rows for m in models) or any(f and p in f for f in failed)
                    or (model is None and p in state.captures)]

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
            pairs.append(("move", check_relpath(old, "old"), check_relpath(new, "new")))

        def build(state):
            known = set().union(*(m.rows for m in state.models.values()), *state.failed.values(), state.captures)
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

    def compact(self, *, min_journal_share=0.0):
        """Rewrite the snapshot with the current content and empty the journal.

        The new snapshot is written to a temporary file and renamed over the
        old one, so a crash at any point leaves a readable store. Does
        nothing for a library without a store, or when the journal is empty.

        Parameters
        ----------
        min_journal_share : float, default=0.0
            Compact only when the journal has grown to at least this share of
            the snapshot's size. Rewriting a million photos' snapshot (2.6 GB,
            over 30 s) to fold in a few photos costs far more than replaying
            them at the next load: the daemon passes 1/16.
        """
        share = check_share(min_journal_share, "min_journal_share")
        with self._mutex:
            if not self.folder.is_dir():
                return
            with self._files.lock(exclusive=True):
                self._refresh_locked(repair=True)
                if self._snapshot_sig is not None and (self._journal_sig is None or self._journal_sig[1] == 0):
                    return  # nothing to merge
                journal_bytes = 0 if self._journal_sig is None else self._journal_sig[1]
                if self._snapshot_sig is not None and journal_bytes < share * self._snapshot_sig[1]:
                    return  # cheaper to replay at the next load than to rewrite now
                try:
                    self._files.write_snapshot(*self._state.to_snapshot(os.urandom(16)))
                    journal_sig = self._files.empty_journal()
                except OSError as exc:
                    raise StoreError(f"cannot compact the store in {self.folder}: {exc}") from exc
                # The same content, now mapped from the new file: the memory of copies made since loading is freed.
                self._state, self._snapshot_sig = self._files.read_snapshot(self._state.dtype, self._allocate)
                self._journal_sig, self._journal_good = journal_sig, 0
                if self.file_backed:  # its values were read once, to be checked
                    self.release_memory()

    # -------------------------------------------------------------- internals

    def _write(self, build):
        """Under the exclusive lock: catch up, ask ``build(state)`` for records, append them."""
        with self._mutex:
            if not self.folder.is_dir():  # no store yet: create it only if there is something to write
                self._refresh()
                if not build(self._state):
                    return
        with self._mutex, self._files.lock(exclusive=True):
            self._refresh_locked(repair=True)
            records = build(self._state)
            if records:
                self._append(records)

    def _append(self, records):
        start = self._journal_good
        data = _journal.encode([("base", self._state.token), *records] if start == 0 else records)
        sig = self._files.append_journal(data, start)
        for record in records:
            self._state.apply(record)
        self._journal_good, self._journal_sig = start + len(data), sig

    def _refresh(self):
        """Catch up with other processes; re-reads under a shared lock only if a file changed."""
        if self._loaded and self._files.versions() == (self._snapshot_sig, self._journal_sig):
            return
        try:
            with self._files.lock(exclusive=False):
                self._refresh_locked()
        except StoreCorrupt:  # moving it aside needs the exclusive lock (and a second look under it)
            with self._files.lock(exclusive=True):
                self._refresh_locked(repair=True)

    def _refresh_locked(self, repair=False):
        """Catch up, holding a lock: replay new journal bytes, or reload everything.

        A damaged snapshot raises StoreCorrupt, or with ``repair`` (the
        exclusive lock held) is moved aside and the store starts empty.
        """
        if not self._loaded or file_version(self._files.snapshot) != self._snapshot_sig:
            self._reload(repair)
            return
        sig, old = file_version(self._files.journal), self._journal_sig
        if sig == old:
            return
        if sig is None or (old is not None and sig[0] != old[0]) or sig[1] < self._journal_good:
            self._reload()  # journal deleted, replaced or truncated
            return
        self._journal_good, self._journal_sig = self._replay(self._state, self._journal_good)

    def _reload(self, repair=False):
        try:
            state, snapshot_sig = self._files.read_snapshot(self._state.dtype, self._allocate)
        except StoreCorrupt as exc:
            if not repair:
                raise
            self._files.set_aside(str(exc.__cause__ or exc))
            state, snapshot_sig = StoreState(self._state.dtype, allocate=self._allocate), None
        good, journal_sig = self._replay(state, 0)
        self._state, self._loaded = state, True
        self._snapshot_sig, self._journal_sig, self._journal_good = snapshot_sig, journal_sig, good
        if self.file_backed:  # read once to check the values (and a change replayed may have copied the matrix)
            self.release_memory()

    def _allocate(self, shape, dtype):
        """Memory for a matrix that changes: a mapped temporary file when ``file_backed`` and it is large."""
        if self.file_backed and np.prod(shape) * np.dtype(dtype).itemsize >= FILE_BACKED_MIN_BYTES:
            matrix = _mapped.file_backed_empty(shape, dtype, self.folder)
            if matrix is not None:
                return matrix
            logger.info("cannot keep fingerprints in a temporary file in %s; they are kept in memory", self.folder)
        return np.empty(shape, dtype)

    def _replay(self, state, start):
        """Apply journal records from byte ``start``; return (good end offset, journal sig)."""
        data, sig = self._files.read_journal(start)
        if data is None:
            return 0, None
        path = self._files.journal
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
            if exc.torn:  # a crash during an append: the record never completed
                logger.warning("%s: %s (an interrupted write); ignoring the last %d bytes",
                               path, exc, sig[1] - exc.offset)
            else:
                self._files.keep_damaged_journal(sig, exc)
        return good, sig
