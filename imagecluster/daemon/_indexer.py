"""Keeping every library's store in step with its folder, in the background (asyncio).

How a photo travels::

    watchdog threads --PathChange--> inbox --(events task)--> settling --> ready
        --(processor task, up to batch_size at once)--> InferenceWorker --> Store.put

* The events task applies moves and deletions to the store at once (a move
  never recomputes) and lets created or modified photos settle
  (:mod:`._pending`); files are stat'ed here, never in watchdog's threads.
* The processor task sends ready photos to the worker in batches, and stores
  each batch with one :meth:`Store.put` after checking every file is still the
  version that was sent.
* The rescan task notices, every ``rescan_seconds``, a library that went away
  (unmounted) or came back, and reconciles the one that came back.

Blocking work runs in threads (:mod:`._folder`), one store call at a time; each
returns the store's entries, kept as a mirror so the loop never reads a store.
"""

import asyncio
import collections
import logging
import os
import time
from pathlib import Path

from .._exceptions import ImageClusterError, InvalidParameter, LibraryNotFound, NotAnImage, NotInLibrary, PhotoNotFound
from .._validation import check_batch_size, check_model_name, check_seconds
from ..store import Entries
from ._folder import Mirror, file_sig, folder_identity, normalised
from ._libraries import Libraries, check_libraries
from ._pending import PendingPhotos
from ._scheduler import MIN_PHOTOS, SchedulerIndexing
from ._watch import LibraryWatcher
from ._worker import InferenceWorker, WorkerError

__all__ = ["Indexer"]

logger = logging.getLogger(__name__)

#: Photos stored since the last compaction after which an idle indexer compacts the stores.
COMPACT_AFTER = 1000


class Indexer:
    """Keeps every library's store in step with its folder, in the background (asyncio).

    Parameters
    ----------
    libraries : sequence of path-like
        Photo folders, each with its own store; missing ones are used once they appear.
    model : {"lite0", "vgg16"}, default="lite0"
        Fingerprint model.
    exclude : sequence of path-like, default=()
        Folders never indexed (e.g. cluster trees written into a library).
    settle_seconds : float, default=1.0
        A file is fingerprinted once its size and mtime stayed unchanged this long.
    worker_idle_seconds : float, default=60.0
        The inference worker process exits after this long without work.
    batch_size : int, default=32
        Photos sent to the worker at once, and stored with one write.
    rescan_seconds : float, default=30.0
        How often libraries are checked for having gone or come back.
    on_change : callable or None, default=None
        Called without arguments, in the event loop, when ``indexed``,
        ``pending`` or ``state`` changed.
    worker : InferenceWorker or None, default=None
        A worker to share (then :meth:`stop` does not close it); None makes one.
    scheduler : str or None, default=None
        A Dask scheduler (``tcp://host:8786`` or ``local:N``) for the start-up
        indexing of a library with many photos to do (:mod:`._scheduler`).
    path_map : tuple of (str, str), default=()
        With ``scheduler``: folders the Dask workers mount elsewhere.
    scheduler_min_photos : int, default=MIN_PHOTOS
        With ``scheduler``: fewer photos to do at start-up stay with ``worker``.
    thumbnails : bool, default=False
        The worker also keeps each photo's gallery thumbnail (in the store
        folder's cache) from the decode that fingerprints it, so the daemon's
        galleries need no second decode.

    Attributes
    ----------
    libraries : tuple of Path
        The library folders, resolved with ``os.path.realpath``.
    model_name : str
    """

    def __init__(self, libraries, *, model="lite0", exclude=(), settle_seconds=1.0, worker_idle_seconds=60.0,
                 batch_size=32, rescan_seconds=30.0, on_change=None, worker=None, scheduler=None, path_map=(),
                 scheduler_min_photos=MIN_PHOTOS, thumbnails=False):
        self.libraries = check_libraries(libraries)
        self.model_name = check_model_name(model)
        self._rescan = check_seconds(rescan_seconds, "rescan_seconds")
        self._batch_size = check_batch_size(batch_size)
        if on_change is not None and not callable(on_change):
            raise InvalidParameter("on_change must be callable or None")
        self._on_change = on_change
        self._exclude = tuple(os.path.realpath(os.path.expanduser(os.fspath(e))) for e in exclude)
        self._owns_worker = worker is None
        if worker is None:
            idle = check_seconds(worker_idle_seconds, "worker_idle_seconds")
            worker = InferenceWorker(model, idle_timeout=idle, batch_size=self._batch_size)
        elif worker.model_name != model:
            raise InvalidParameter(f"the worker runs {worker.model_name!r}, not {model!r}")
        self._worker = worker
        self._thumbnails = bool(thumbnails)
        settle = check_seconds(settle_seconds, "settle_seconds", zero_ok=True)
        self._pending = PendingPhotos(settle)
        self._libs = Libraries(self.libraries, model, self._exclude, grace=settle + 1.0)
        self._phase = "new"
        self._preloaded = 0
        self._starting = True  # until start() has compared every library with its store
        self._watcher = None
        self._tasks = {}
        self._inbox = collections.deque()
        self._wakeup = asyncio.Event()  # the events task has something to do
        self._ready_event = asyncio.Event()  # the processor may have something to do
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0
        self._stopping = False
        self._stored_since_compact = 0
        self._store_lock = asyncio.Lock()
        self._notified = None
        self._dask = None if scheduler is None else SchedulerIndexing(
            scheduler, model=model, batch_size=self._batch_size, exclude=self._exclude, path_map=path_map,
            min_photos=scheduler_min_photos,
        )

    def __repr__(self):
        return f"Indexer({[str(r) for r in self.libraries]}, model={self.model_name!r}, state={self.state!r})"

    @property
    def indexed(self):
        """Fingerprints stored for this model, in all available libraries.

        Before :meth:`start`: as :meth:`preload` read them.
        """
        if self._starting:
            return self._preloaded
        return sum(len(lib.known) for lib in self._libs if lib.available)

    @property
    def pending(self):
        """Photos waiting to settle or to be fingerprinted, the batch in hand included."""
        return len(self._pending)

    @property
    def state(self):
        """``"indexing"`` while photos are pending or libraries are compared with their stores, else ``"idle"``.

        A library being fingerprinted on the Dask scheduler counts as pending work.
        """
        dask = self._dask is not None and self._dask.running
        return "indexing" if len(self._pending) or self._starting or dask else "idle"

    def preload(self):
        """Count what the stores hold, so ``indexed`` is right before :meth:`start` (blocking: run it in a thread).

        A client that starts the daemon (D-Bus activation) may read the
        properties before the libraries have been compared with their stores.
        """
        total = 0
        for lib in self._libs:
            if folder_identity(lib.root) is not None:
                try:
                    began = time.monotonic()
                    count = len(lib.store.entries(self.model_name))
                    logger.info("store of %s read: %d photos in %.1f s", lib.root, count, time.monotonic() - began)
                    total += count
                except (ImageClusterError, OSError) as exc:
                    logger.debug("cannot read the store of %s yet: %s", lib.root, exc)
        self._preloaded = total

    @property
    def available_libraries(self):
        """The libraries present (mounted) now, as a list of Path."""
        return [lib.root for lib in self._libs if lib.available]

    def store(self, library):
        """The :class:`~imagecluster.Store` of one of the libraries (NotInLibrary for another folder)."""
        root = Path(os.path.realpath(os.path.expanduser(os.fspath(library))))
        if root not in self._libs.by_root:
            raise NotInLibrary(f"{library} is not one of the libraries ({', '.join(map(str, self.libraries))})")
        return self._libs[root].store

    def resolve(self, path):
        """``(library root, relative posix path)`` of a photo given by its absolute path.

        Symlinks and ``..`` are resolved before anything is checked, so
        neither can lead out of a library.

        Raises
        ------
        InvalidParameter
            ``path`` is empty, relative or not a string.
        NotInLibrary
            It lies outside every library.
        PhotoNotFound
            No such file.
        NotAnImage
            A folder, a file whose name is not a photo's, or a file in the
            store folder, a hidden folder or a cluster tree.
        """
        return self._libs.resolve(path)

    async def fingerprint(self, path):
        """The L2-normalised fingerprint of one photo, shape ``(n_features,)`` float32.

        From the store if it holds the photo's current ``(size, mtime_ns)``,
        else computed now, ahead of the background queue, and stored. Raises
        as :meth:`resolve`; NotAnImage when the photo cannot be decoded,
        WorkerError when the worker died.
        """
        if self._phase == "stopped":
            raise RuntimeError("the indexer is stopped")
        # realpath and stat of a caller's path run in a thread: a hung network mount must not freeze the bus.
        root, rel = await asyncio.to_thread(self.resolve, path)
        lib = self._libs[root]
        sig = await asyncio.to_thread(file_sig, root / rel)
        if sig is None:
            raise PhotoNotFound(f"{path}: no such file")
        async with self._store_lock:
            vector = await asyncio.to_thread(lib.read_sync, rel, sig)
        if vector is not None:
            return vector
        batch = await self._worker.fingerprint([os.fspath(root / rel)])
        if batch.failures:
            raise NotAnImage(f"{path}: {batch.failures[0].reason}")
        await self._store_call(lib, lib.put_sync, [(rel, sig, batch.fingerprints[0])], [])
        self._pending.discard((root, rel), sig)
        self._update()
        return normalised(batch.fingerprints[0], lib.store.dtype)

    async def wait_idle(self, timeout=None):
        """Wait until nothing is pending and no batch is running (TimeoutError after ``timeout`` s).

        Changes the kernel has not reported yet are not known here.
        """
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def start(self):
        """Watch and reconcile every library, then start the background tasks."""
        if self._phase != "new":
            raise RuntimeError("an Indexer can be started only once")
        self._phase = "running"
        loop = asyncio.get_running_loop()

        def sink(change):  # in watchdog's threads
            loop.call_soon_threadsafe(self._enqueue, change)

        self._watcher = LibraryWatcher((), sink, exclude=self._exclude)
        self._watcher.start()
        try:
            for lib in self._libs:  # watched first, so nothing slips between scan and watch
                await self._bring_up(lib)
        except BaseException:
            await asyncio.to_thread(self._watcher.stop)
            self._phase, self._starting = "stopped", False
            raise
        for name, run in (("events", self._events_loop), ("processor", self._processor),
                          ("rescan", self._rescan_loop)):
            self._tasks[name] = loop.create_task(self._guarded(name, run), name=f"imagecluster-{name}")
        self._starting = False
        self._update()

    async def stop(self, timeout=5.0):
        """Stop watching, finish the batch in hand (dropped after ``timeout``), compact the stores, close the worker.

        Parameters
        ----------
        timeout : float, default=5.0
            Seconds the batch in hand may take to finish.
        """
        if self._phase == "stopped":
            return
        self._phase = "stopped"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        processor = self._tasks.pop("processor", None)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._watcher is not None:
            try:
                await asyncio.to_thread(self._watcher.stop)
            except Exception:
                logger.exception("stopping the watcher failed")
        if processor is not None:
            self._stopping = True
            self._ready_event.set()
            try:
                await asyncio.wait_for(asyncio.shield(processor), max(0.0, deadline - loop.time()))
            except TimeoutError:
                logger.warning("dropping the batch in hand (%d photos) after %g s",
                               len(self._pending.in_flight), timeout)
                processor.cancel()
            await asyncio.gather(processor, return_exceptions=True)
        if self._dask is not None:
            await self._dask.stop(max(0.1, deadline - loop.time()))
        for lib in self._libs:  # photos deleted within the grace time stay: the next start reconciles them
            if lib.available:
                await self._store_call(lib, lib.compact_sync)
        if self._owns_worker:
            await self._worker.close(max(1.0, deadline - loop.time()))
        self._update()

    # ---------------------------------------------------------------- events

    def _enqueue(self, change):
        self._inbox.append(change)
        self._wakeup.set()
        self._idle.clear()

    async def _events_loop(self):
        while True:
            if not self._inbox:
                self._wakeup.clear()
                timeout = self._pending.next_due()
                expiry = min((e for e in (lib.next_expiry() for lib in self._libs) if e is not None), default=None)
                if expiry is not None:
                    timeout = max(0.0, min(expiry - time.monotonic(), timeout if timeout is not None else 1e9))
                if timeout != 0:
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), timeout)
                    except TimeoutError:
                        pass
            changes = list(self._inbox)
            self._inbox.clear()
            if changes:
                self._busy += 1
                try:
                    await self._apply(changes)
                finally:
                    self._busy -= 1
            await self._settle_due()

    async def _settle_due(self):
        """Settled photos become ready, unless they are a gone photo moved; gone photos past grace are removed."""
        def current_sig(key):
            lib = self._libs[key[0]]
            if not lib.available:
                return None
            sig = file_sig(key[0] / key[1])
            if sig is None:
                lib.report_special(key[1])
            return sig

        ready = self._pending.settle_due(current_sig, lambda key: self._libs[key[0]].known.get(key[1]))
        for lib, ops in self._libs.settled(ready, self._pending).items():
            if lib.available and ops:
                await self._store_call(lib, lib.apply_sync, ops)
        if self._pending.ready:
            self._ready_event.set()
        self._update()

    async def _apply(self, changes):
        operations, walks, lost = self._libs.route(changes, self._pending)
        for lib in lost:
            await self._lose(lib, "was removed")
        for lib, ops in operations.items():
            if lib.available and ops:
                await self._store_call(lib, lib.apply_sync, ops)
        for lib, rel in walks:
            if lib.available:
                for found, sig in await asyncio.to_thread(lib.walk_sync, rel):
                    self._pending.consider((lib.root, found), sig, lib.known.get(found))

    # ------------------------------------------------------------- processor

    async def _processor(self):
        while not self._stopping:
            await self._ready_event.wait()
            if self._stopping:
                return
            if not self._pending.ready:
                self._ready_event.clear()
                continue
            batch = self._pending.take(self._batch_size)
            self._update()
            try:
                await self._run_batch(batch)
            finally:
                self._pending.done()
                self._update()

    async def _run_batch(self, batch):
        sent = {os.fspath(root / rel): ((root, rel), sig) for (root, rel), sig in batch}
        try:
            if self._thumbnails:
                result = await self._worker.fingerprint(list(sent), thumbnails=self._thumbnail_files(sent))
            else:
                result = await self._worker.fingerprint(list(sent))
        except WorkerError as exc:
            again, given_up = self._pending.requeue_failed()
            logger.error("%s; %d photo(s) will be tried once more", exc, len(again))
            for root, rel in given_up:
                logger.error("not fingerprinting %s: the worker failed on it twice", root / rel)
            return
        except ImageClusterError as exc:  # e.g. the model cannot be loaded
            logger.error("cannot fingerprint %d photo(s): %s", len(batch), exc)
            return
        work = collections.defaultdict(lambda: ([], []))
        for path, vector in zip(result.paths, result.fingerprints):
            (root, rel), sig = sent[path]
            work[root][0].append((rel, sig, vector))
        for failure in result.failures:
            (root, rel), sig = sent[failure.path]
            logger.warning("skipped %s: %s", failure.path, failure.reason)
            work[root][1].append((rel, sig, failure.reason))
        for root, (items, failed) in work.items():
            lib = self._libs[root]
            if lib.available and not await self._store_call(lib, lib.put_sync, items, failed):
                # A full disk, say: nothing is lost, the photos are fingerprinted again after a while.
                retry = time.monotonic() + self._rescan
                for rel, sig, _ in items:
                    self._pending.consider((root, rel), sig, None, since=retry)
                self._wakeup.set()  # the events task recomputes when the next photo is due
                logger.warning("%d photo(s) of %s will be tried again in %g s", len(items), root, self._rescan)
        logger.info("fingerprinted %d photo(s); %d pending", len(result.paths), len(self._pending) - len(batch))
        self._stored_since_compact += len(result.paths)
        if not self._pending.ready and self._stored_since_compact >= COMPACT_AFTER:
            self._stored_since_compact = 0
            for lib in self._libs:
                if lib.available:
                    await self._store_call(lib, lib.compact_sync)

    def _thumbnail_files(self, sent):
        """``(side, {photo path: thumbnail file})`` in each library's thumbnail cache, for the worker."""
        from ..gallery import DEFAULT_SIDE, library_thumbnails

        caches, targets = {}, {}
        for path, ((root, rel), sig) in sent.items():
            if root not in caches:
                caches[root] = library_thumbnails(self._libs[root].store, DEFAULT_SIDE)
            targets[path] = os.fspath(caches[root].file(rel, *sig))
        return DEFAULT_SIDE, targets

    # ------------------------------------------------------------- libraries

    async def _rescan_loop(self):
        while True:
            await asyncio.sleep(self._rescan)
            for lib in self._libs:
                identity = folder_identity(lib.root)
                if lib.available and identity != lib.identity:
                    await self._lose(lib, "is gone (removed or unmounted)" if identity is None else "was replaced")
                if identity is not None and not (lib.available and lib.watched):
                    await self._bring_up(lib)  # back, or not watchable: reconciled at every rescan

    async def _bring_up(self, lib, *, watch=True):
        """Watch a library that is present (unless ``watch`` is False) and reconcile it with its store."""
        identity = folder_identity(lib.root)
        if identity is None:
            if not lib.warned:
                logger.warning("library %s is not available (missing or not mounted); used once it appears", lib.root)
                lib.warned = True
            return
        lib.reconciling = True
        began = watched = time.monotonic()
        try:
            try:
                if watch:
                    await asyncio.to_thread(self._watcher.watch, lib.root)
                    lib.watched = True
                    watched = time.monotonic()
            except LibraryNotFound:
                raise
            except OSError as exc:  # e.g. the inotify watch limit (fs.inotify.max_user_watches)
                if lib.watched is not False:
                    logger.warning("cannot watch %s (%s); its changes are found every %g s instead",
                                   lib.root, exc, self._rescan)
                lib.watched = False
            async with self._store_lock:
                todo, known = await asyncio.to_thread(lib.reconcile_sync)
            logger.info("library %s compared with its store in %.1f s (watching it took %.1f s)",
                        lib.root, time.monotonic() - watched, watched - began)
        except (ImageClusterError, OSError) as exc:
            if not lib.warned:
                logger.warning("library %s cannot be used now: %s", lib.root, exc)
                lib.warned = True
            await asyncio.to_thread(self._watcher.unwatch, lib.root)
            return
        finally:
            lib.reconciling = False
            if lib.backlog:  # changes seen meanwhile, in order, after the reconciliation
                self._inbox.extend(lib.backlog)
                lib.backlog.clear()
                self._wakeup.set()
        if lib.warned:  # "again" only for a library that was there before
            logger.info("library %s is available again" if lib.seen else "library %s is there now", lib.root)
            lib.warned = False
        lib.seen = True
        lib.available, lib.identity = True, identity
        lib.set_known(known)
        if todo and self._dask is not None and self._dask.take(lib.root, len(todo), self._after_dask):
            todo = []  # on the Dask scheduler; reconciled again when that run ends
        old = time.time_ns() - int(self._pending.settle * 1e9)
        now = time.monotonic()
        for rel, size, mtime in todo:  # a photo untouched for settle_seconds need not wait again
            since = now - self._pending.settle if mtime < old else now
            self._pending.consider((lib.root, rel), (size, mtime), known.get(rel), since=since)
        await self._settle_due()
        self._wakeup.set()  # the events task recomputes when the next photo settles

    async def _after_dask(self, root):
        """A library's run on the Dask scheduler ended: what it left undone is fingerprinted here."""
        lib = self._libs[root]
        if lib.available and self._phase == "running":
            await self._bring_up(lib, watch=False)
            self._update()

    async def _lose(self, lib, reason):
        if not lib.available:
            return
        lib.available, lib.identity, lib.known, lib.warned = False, None, Mirror(), True
        lib.gone.clear()
        self._pending.drop(lib.root)
        logger.warning("library %s %s; skipping it until it comes back", lib.root, reason)
        try:
            await asyncio.to_thread(self._watcher.unwatch, lib.root)
        except Exception:
            logger.debug("unwatching %s failed", lib.root, exc_info=True)
        self._update()

    # -------------------------------------------------------------- plumbing

    async def _store_call(self, lib, fn, *args):
        """Run ``fn(*args)`` in a thread under the store lock; returned entries become the library's mirror."""
        async with self._store_lock:
            try:
                known = await asyncio.to_thread(fn, *args)
            except (ImageClusterError, OSError) as exc:
                logger.warning("cannot update the store of %s: %s", lib.root, exc)
                return False
        if isinstance(known, Entries) and lib.available:
            lib.set_known(known)
        return True

    def _update(self):
        """Recompute idleness, and call ``on_change`` when indexed, pending or state changed."""
        if self._inbox or self._busy or len(self._pending) or any(lib.gone for lib in self._libs) \
                or (self._dask is not None and self._dask.running):
            self._idle.clear()
        else:
            self._idle.set()
        snapshot = (self.indexed, self.pending, self.state)
        if snapshot != self._notified:
            self._notified = snapshot
            if self._on_change is not None:
                try:
                    self._on_change()
                except Exception:
                    logger.exception("on_change failed")

    async def _guarded(self, name, run):
        """Run one background task; a bug is logged and the task restarted, so the daemon keeps going."""
        while True:
            try:
                await run()
                return
            except Exception:
                logger.exception("the indexer's %s task failed; restarting it", name)
                await asyncio.sleep(1.0)
