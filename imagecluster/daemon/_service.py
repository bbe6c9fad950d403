"""The daemon's D-Bus interface, ``org.imagecluster.ImageCluster1`` (version 1).

One :class:`ImageClusterInterface` is exported at :data:`OBJECT_PATH` under the
bus name :data:`BUS_NAME`; ``doc/dbus-api.rst`` documents every member. The
interface only translates: paths and numbers are checked here, the work is
the indexer's (fingerprints, stores) and the core's (clustering, the tree),
and every expected failure becomes a named error (the table is
:data:`imagecluster._dbus_names.ERROR_NAMES`)::

    InvalidParameter        -> org.imagecluster.ImageCluster1.Error.InvalidArgument
    NotInLibrary            -> ...Error.NotInLibrary
    PhotoNotFound           -> ...Error.NotFound
    LibraryNotFound         -> ...Error.NotFound
    NotAnImage              -> ...Error.NotAnImage
    NotOurTree              -> ...Error.NotOurTree
    other ImageClusterError -> ...Error.Failed   (its message)
    anything else           -> ...Error.Failed   (logged with its traceback; the caller
                                                  gets a one-line message, never the traceback)

Clustering and tree writing run in a thread (:func:`asyncio.to_thread`), so
the bus is answered while they run.
"""

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Annotated

import numpy as np
from dbus_fast import DBusError, PropertyAccess
from dbus_fast.annotations import DBusBool, DBusDouble, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from .. import __version__
from .._dbus_names import BUS_NAME, ERROR_NAMES, ERROR_PREFIX, INTERFACE, OBJECT_PATH
from .._exceptions import ImageClusterError, InvalidParameter, LibraryNotFound, NotInLibrary, PhotoNotFound
from .._library import relative_clusters
from .._mapped import trim_heap
from .._pairs import similar_shots
from .._validation import check_sim, check_wait
from ..events import check_hours, check_km
from ..tree import check_tree_folder, write_tree
from ._answers import count_clusters, fit_on_the_bus, photos_on_disk, read_the_trees, travels_over_dbus
from ._graphs import LibraryGraphs
from ._publisher import ThrottledPublisher
from ._service_events import events_answer, events_sync
from ._service_gallery import Galleries, gallery_sync

__all__ = ["BUS_NAME", "ERROR_PREFIX", "INTERFACE", "OBJECT_PATH", "ImageClusterInterface"]

logger = logging.getLogger(__name__)

# PropertiesChanged and Progress are sent at most this often (seconds apart).
MIN_SIGNAL_INTERVAL = 0.25

_Clusters = Annotated[list, DBusSignature("aas")]
_Fingerprint = Annotated[list, DBusSignature("ad")]
_Matches = Annotated[list, DBusSignature("a(sd)")]
_Paths = Annotated[list, DBusSignature("as")]
_TreeWritten = Annotated[list, DBusSignature("su")]
_Counts = Annotated[list, DBusSignature("uu")]
_Events = Annotated[list, DBusSignature("a(sssddasaas)")]
_Work = Annotated[list, DBusSignature("ssuu")]


def dbus_error(exc):
    """The named :class:`~dbus_fast.DBusError` for an exception raised while answering a call."""
    for kind, name in ERROR_NAMES:
        if isinstance(exc, kind):
            return DBusError(ERROR_PREFIX + name, str(exc))
    return DBusError(ERROR_PREFIX + "Failed", f"internal error ({type(exc).__name__}); see the daemon's log")


# A D-Bus double follows the one sim rule (NaN refused there too).
_check_sim = check_sim


def _check_absolute(path, what="path"):
    if not path:
        raise InvalidParameter(f"{what} is empty; give an absolute path")
    if not os.path.isabs(path):
        raise InvalidParameter(f"{what} {path!r} is relative; give an absolute path")
    return path


class ImageClusterInterface(ServiceInterface):
    """``org.imagecluster.ImageCluster1``: clusters and fingerprints of the watched libraries.

    Parameters
    ----------
    indexer : Indexer
        Owns the libraries, their stores and the background fingerprinting.
    config : Config
        Tree folders, ``cut`` and ``min_size``.
    min_interval : float, default=MIN_SIGNAL_INTERVAL
        Seconds between two PropertiesChanged/Progress emissions.
    """

    def __init__(self, indexer, config, *, min_interval=MIN_SIGNAL_INTERVAL):
        super().__init__(INTERFACE)
        self._indexer = indexer
        self._config = config
        self._ready = asyncio.Event()
        self._cluster_lock = asyncio.Lock()
        self._clustering = 0
        self._calls = 0
        self._no_calls = asyncio.Event()
        self._no_calls.set()
        self._closing = False
        self._signals = ThrottledPublisher(self._progress, self._publish_progress, min_interval)
        self._graphs = LibraryGraphs(indexer)
        self._graphs_stale = None
        self._graph_task = None
        self._galleries = Galleries(self._gallery_sync)

    # ----------------------------------------------------------- lifecycle

    def start(self):
        """The indexer is running: answer calls, publish progress. Call in the event loop."""
        self._signals.start()
        self._graphs_stale = asyncio.Event()
        self._graphs_stale.set()  # build or load every library's graph now, before the first call needs it
        self._graph_task = asyncio.create_task(self._keep_graphs_warm(), name="imagecluster-graphs")
        self._ready.set()

    async def close(self, timeout=5.0):
        """Refuse new calls, wait up to ``timeout`` seconds for those running, stop publishing, save the graphs."""
        self._closing = True
        self._ready.set()  # calls still waiting for the start give up (see _started)
        self._signals.close()
        try:
            await asyncio.wait_for(self._no_calls.wait(), timeout)
        except asyncio.TimeoutError:
            logger.warning("%s call(s) still running at shutdown; their callers get no answer", self._calls)
        await self._galleries.close(timeout)
        if self._graph_task is not None:
            self._graph_task.cancel()
            await asyncio.gather(self._graph_task, return_exceptions=True)
            self._graph_task = None
            await asyncio.to_thread(self._graphs.save)

    async def _keep_graphs_warm(self):
        while True:
            await self._graphs_stale.wait()
            self._graphs_stale.clear()
            await asyncio.to_thread(self._graphs.refresh, self._work_progress)

    async def _started(self):
        """Wait until the indexer runs (calls can arrive while the daemon starts)."""
        await self._ready.wait()
        if self._closing:
            raise DBusError(ERROR_PREFIX + "Failed", "the daemon is shutting down")

    @contextlib.contextmanager
    def _answering(self):
        """Count a call in progress and turn its failures into named D-Bus errors."""
        if self._closing:
            raise DBusError(ERROR_PREFIX + "Failed", "the daemon is shutting down")
        self._calls += 1
        self._no_calls.clear()
        try:
            yield
        except DBusError:
            raise
        except ImageClusterError as exc:
            logger.debug("answered with an error: %s", exc)
            raise dbus_error(exc) from None
        except Exception as exc:
            logger.exception("unexpected error while answering a call")
            raise dbus_error(exc) from None
        finally:
            self._calls -= 1
            if not self._calls:
                self._no_calls.set()

    # ------------------------------------------------------------- methods

    @dbus_method()
    async def Cluster(self, sim: DBusDouble) -> _Clusters:
        """Cluster each available library on its own, write its tree; all clusters, largest first."""
        with self._answering():
            sim = _check_sim(sim)
            await self._started()
            clusters, trees = [], []
            for library in self._indexer.available_libraries:
                groups, tree = await self._cluster(library, sim, self._config.tree_folder(library))
                clusters.extend(groups)
                trees.append(os.fspath(tree))
            clusters.sort(key=lambda group: (-len(group), group[0]))
            return fit_on_the_bus(clusters, count_clusters(clusters), read_the_trees(trees))

    @dbus_method()
    async def ClusterLibrary(self, library: DBusStr, sim: DBusDouble) -> _Clusters:
        """Cluster one library and write its tree; its clusters, largest first."""
        with self._answering():
            sim = _check_sim(sim)
            await self._started()
            root = await self._library(library)
            groups, tree = await self._cluster(root, sim, self._config.tree_folder(root))
            return fit_on_the_bus(groups, count_clusters(groups), read_the_trees([os.fspath(tree)]))

    @dbus_method()
    async def WriteTree(self, library: DBusStr, sim: DBusDouble, out: DBusStr) -> _TreeWritten:
        """Cluster one library and write its tree to ``out``; (tree, number of clusters)."""
        with self._answering():
            sim = _check_sim(sim)
            out = Path(os.path.normpath(_check_absolute(out, "out")))
            await self._started()
            root = await self._library(library)
            # Inside a library only a new or empty folder or one of our trees (stat off the loop).
            out = await asyncio.to_thread(check_tree_folder, out, libraries=self._indexer.libraries)
            groups, tree = await self._cluster(root, sim, out)
            return [os.fspath(tree), len(groups)]

    @dbus_method()
    async def ClusterEvents(self, sim: DBusDouble, hours: DBusDouble, km: DBusDouble) -> _Events:
        """Each library's photos grouped by when and where they were taken, content clusters inside each event.

        Writes each library's events tree (``<tree folder>-events``); answers
        ``(name, date, place, start, end, photos, clusters)`` per event, in time order.
        """
        with self._answering():
            sim, hours, km = _check_sim(sim), check_hours(hours), check_km(km)
            await self._started()
            answer, trees = [], []
            for library in self._indexer.available_libraries:
                self._clustering += 1
                self.notify()
                try:
                    async with self._cluster_lock:
                        events, tree = await asyncio.to_thread(
                            events_sync, self._indexer, self._config, library, sim, hours, km)
                finally:
                    self._clustering -= 1
                    self.notify()
                self.ClustersWritten(os.fspath(tree), len(events))
                answer.extend(events_answer(events))
                trees.append(os.fspath(tree))
            answer.sort(key=lambda event: (event[3], event[0]))
            return fit_on_the_bus(answer, f"{len(answer):,} events", read_the_trees(trees))

    @dbus_method()
    async def Fingerprint(self, path: DBusStr) -> _Fingerprint:
        """The L2-normalised fingerprint of one photo: stored, or computed now and stored."""
        with self._answering():
            _check_absolute(path)
            await self._started()
            vector = await self._indexer.fingerprint(path)
            return np.asarray(vector, dtype=np.float64).tolist()

    @dbus_method()
    async def Similar(self, path: DBusStr, sim: DBusDouble) -> _Matches:
        """Stored photos of every library at least ``sim`` similar to one photo, most similar first."""
        with self._answering():
            sim = _check_sim(sim)
            _check_absolute(path)
            await self._started()
            vector = await self._indexer.fingerprint(path)
            root, rel = await asyncio.to_thread(self._indexer.resolve, path)
            own = os.fspath(Path(root) / rel)
            matches = await asyncio.to_thread(self._similar, np.asarray(vector, np.float32), sim, own)
            answer = [[p, s] for p, s in matches if travels_over_dbus(p)]
            return fit_on_the_bus(answer, f"{len(answer):,} photos at least {sim} similar", "ask with a higher sim")

    @dbus_method()
    async def WaitIdle(self, timeout: DBusDouble) -> DBusBool:
        """Wait until nothing is pending, at most ``timeout`` seconds; whether it is."""
        with self._answering():
            timeout = check_wait(timeout)  # at most MAX_WAIT_SECONDS (a D-Bus caller's own timeout is usually 25 s)
            await self._started()
            waiter = asyncio.ensure_future(self._indexer.wait_idle())
            try:
                await asyncio.wait({waiter}, timeout=timeout)
            finally:
                if not waiter.done():
                    waiter.cancel()
            return waiter.done() and not waiter.cancelled() and waiter.exception() is None

    # ---------------------------------------------------------- properties

    @dbus_method()
    async def Gallery(self, library: DBusStr) -> DBusStr:
        """The gallery (index.html) beside the library's newest tree; waits while it is being written."""
        with self._answering():
            await self._started()
            library = await self._library(library)
            if not self._config.gallery:
                raise PhotoNotFound(f"no gallery of {library}: galleries are off (gallery = false in the config)")
            return await self._galleries.index(library)

    @dbus_property(access=PropertyAccess.READ)
    def Libraries(self) -> _Paths:
        """The watched libraries, as configured (also those not mounted now)."""
        return [os.fspath(p) for p in self._indexer.libraries]

    @dbus_property(access=PropertyAccess.READ)
    def Model(self) -> DBusStr:
        """The fingerprint model's name."""
        return self._indexer.model_name

    @dbus_property(access=PropertyAccess.READ)
    def Indexed(self) -> DBusUInt32:
        """Photos with a fingerprint in the stores."""
        return self._indexer.indexed

    @dbus_property(access=PropertyAccess.READ)
    def Pending(self) -> DBusUInt32:
        """Photos waiting to be fingerprinted."""
        return self._indexer.pending

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> DBusStr:
        """``idle``, ``indexing`` or ``clustering``."""
        return "clustering" if self._clustering else self._indexer.state

    @dbus_property(access=PropertyAccess.READ)
    def Sim(self) -> DBusDouble:
        """The configured default sim, for clients that do not ask their user."""
        return self._config.sim

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> DBusStr:
        """The imagecluster version of the daemon."""
        return __version__

    # ------------------------------------------------------------- signals

    @dbus_signal()
    def Progress(self, indexed, pending) -> _Counts:
        """Indexing progressed: photos fingerprinted, photos waiting."""
        return [indexed, pending]

    @dbus_signal()
    def ClustersWritten(self, tree, clusters) -> _TreeWritten:
        """A cluster tree was written: its folder and how many clusters it holds."""
        return [tree, clusters]

    @dbus_signal()
    def Working(self, library, task, done, total) -> _Work:
        """Long work on a library progressed (``task`` "pairs": the similar-pair search, in photos)."""
        return [library, task, done, total]

    # ------------------------------------------------------------ progress

    def notify(self):
        """Indexed, Pending or State may have changed; safe to call from any thread.

        PropertiesChanged and Progress go out at most once per ``min_interval``
        seconds, with the values current when they go (changes in between are
        merged, never queued).
        """
        self._signals.notify()

    def _progress(self):
        return {"Indexed": self.Indexed, "Pending": self.Pending, "State": self.State}

    def _publish_progress(self, changed, current):
        self.emit_properties_changed(changed)
        if "Indexed" in changed and self._graphs_stale is not None:
            self._graphs_stale.set()
        if "Indexed" in changed or "Pending" in changed:
            self.Progress(current["Indexed"], current["Pending"])

    def _work_progress(self, library, task="pairs"):
        """A ``progress(done, total)`` callback, for a worker thread, that sends Working signals (throttled)."""
        return self._signals.progress_callback(
            lambda done, total: self.Working(os.fspath(library), task, done, total))

    # ------------------------------------------------------------- helpers

    async def _library(self, library):
        """The watched library named by ``library`` (a Libraries entry), present now."""
        _check_absolute(library, "library")
        root = Path(await asyncio.to_thread(os.path.realpath, library))  # off the loop: a hung mount
        if root not in self._indexer.libraries:
            raise NotInLibrary(f"{library} is not a watched library (see the Libraries property)")
        if root not in self._indexer.available_libraries:
            raise LibraryNotFound(f"library {root} is not available now (not mounted?)")
        return root

    async def _cluster(self, library, sim, out):
        """Cluster one library and write its tree, one clustering at a time, in a thread."""
        self._clustering += 1
        self.notify()
        try:
            async with self._cluster_lock:
                groups, tree = await asyncio.to_thread(self._cluster_sync, library, sim, out)
        finally:
            self._clustering -= 1
            self.notify()
        self.ClustersWritten(os.fspath(tree), len(groups))
        if self._config.gallery:
            self._galleries.start(library, sim, tree)  # after the answer, in a thread
        # groups: absolute path strings (photos_on_disk)
        answer = [[p for p in group if travels_over_dbus(p)] for group in groups]
        if sum(map(len, answer)) != sum(map(len, groups)):
            logger.warning("%s: photos whose names are not UTF-8 are left out of the answer (D-Bus strings must be "
                           "UTF-8); the tree %s holds them", library, tree)
        return [group for group in answer if group], tree

    def _before_clustering(self, library):
        """Called in the worker thread before ``library`` is clustered; nothing here.

        A test seam, not a parameter: tests replace it on an instance (or a
        subclass) to hold a clustering open.
        """

    def _cluster_sync(self, library, sim, out):
        self._before_clustering(library)
        config, model = self._config, self._indexer.model_name
        with self._graphs.of(library) as graph:
            groups = relative_clusters(self._indexer.store(library), model, sim=sim, min_size=config.min_size,
                                       cut=config.cut, graph=graph, pair_link=config.pair_link,
                                       progress=self._work_progress(library))
        trim_heap()  # a large library's clustering leaves its freed blocks in the heap
        groups = photos_on_disk(library, groups, config.min_size)
        info = {"library": os.fspath(library), "sim": sim, "cut": config.cut, "model": model,
                "min_size": config.min_size, "written_by_daemon": True}
        tree = write_tree(groups, out, info=info)
        logger.info("%s: %s clusters at sim %s written to %s", library, len(groups), sim, tree)
        return groups, tree

    def _gallery_sync(self, library, sim, tree, progress=None):
        with self._graphs.of(library) as graph:
            graph.update(save=False)
            # Its own copy: the thumbnails of a large library take minutes, and
            # Cluster and Similar must not wait for the graph meanwhile.
            graph = graph.copy()
        store = self._indexer.store(library)
        try:
            return gallery_sync(library, sim, tree, graph=graph, store=store, model=self._indexer.model_name,
                                min_size=self._config.min_size, pair_link=self._config.pair_link, progress=progress)
        finally:
            store.release_memory()

    def _similar(self, vector, sim, own):
        """(absolute path, similarity) of stored photos with cosine similarity >= sim, best first."""
        matches = []
        for library in self._indexer.available_libraries:
            with self._graphs.of(library) as graph:
                graph.update(save=False)  # two stats when nothing was written; saved at stop
                if not graph.paths or graph.dimension != vector.size:
                    continue
                rel = os.path.relpath(own, library) if Path(own).is_relative_to(library) else None
                found = graph.similar(vector, sim, path=rel)
            matches.extend((os.fspath(Path(library) / p), s) for p, s in found if p != rel)
        matches = [m for m in matches if os.path.isfile(m[0])]
        matches.sort(key=lambda m: (-m[1], m[0]))
        return similar_shots(matches, own, link=self._config.pair_link)  # a RAW + JPEG shot once
