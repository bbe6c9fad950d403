"""The daemon's similarity graphs: one per library, kept warm, used by one thread at a time."""

import contextlib
import logging
import threading
import time

from .._mapped import trim_heap
from ..graph import LibraryGraph

__all__ = ["LibraryGraphs"]

logger = logging.getLogger(__name__)


class LibraryGraphs:
    """One similarity graph per library, each used by one thread at a time (Cluster and Similar run in threads).

    Kept warm: :meth:`refresh` runs in a thread after start-up and whenever
    photos were stored, so a new photo is in its library's graph within a
    moment, and a Cluster call finds the search already done.
    """

    def __init__(self, indexer):
        self._indexer = indexer
        self._graphs = {}
        self._guard = threading.Lock()

    def refresh(self, progress_for=None):
        """Bring every available library's graph up to date, unsaved (blocking; run it in a thread).

        ``progress_for(library)`` gives the ``progress(done, total)`` callback of a library's search.
        """
        for library in self._indexer.available_libraries:
            try:
                with self.of(library) as graph:
                    began = time.monotonic()
                    graph.update(save=False, progress=None if progress_for is None else progress_for(library))
                    took = time.monotonic() - began  # said when it is worth knowing (a start, a large library)
                    logger.log(logging.INFO if took >= 1.0 else logging.DEBUG,
                               "similarity graph of %s up to date in %.1f s", library, took)
                if took >= 1.0:  # large work (a first build): what it freed goes back to the system
                    trim_heap()
            except Exception:  # a store that cannot be read now is reported by the indexer
                logger.debug("cannot bring the similarity graph of %s up to date", library, exc_info=True)

    def save(self):
        """Write the graphs that changed since they were saved (blocking).

        A graph still being built is skipped rather than waited for: a stop
        must not wait a minute for a large library's search (the next start
        builds it again).
        """
        with self._guard:
            graphs = list(self._graphs.values())
        for graph, lock in graphs:
            if lock.acquire(blocking=False):
                try:
                    if graph.paths:
                        graph.update(save=True)
                finally:
                    lock.release()

    @contextlib.contextmanager
    def of(self, library):
        """The graph of ``library`` (made on first use), this thread's alone until the block ends.

        After the block the store's mapped fingerprint pages leave the
        daemon's resident memory (a pass over them is done).
        """
        with self._guard:
            if library not in self._graphs:
                graph = LibraryGraph(self._indexer.store(library), self._indexer.model_name)
                self._graphs[library] = (graph, threading.Lock())
            graph, lock = self._graphs[library]
        with lock:
            try:
                yield graph
            finally:
                # The pass over the fingerprints is done: their mapped pages leave the daemon's resident memory.
                graph.store.release_memory()
