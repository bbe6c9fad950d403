"""The daemon's galleries: each tree it writes gets its gallery beside it, written after the answer, in a thread.

A Cluster call answers as soon as its tree is written; making the gallery
(thumbnails of new photos, the page) follows in a thread, one at a time per
library, so the event loop never waits for it. ``Gallery(library)`` then
names the newest one, waiting while one is being written.
"""

import asyncio
import logging
import os
import threading

from .._exceptions import PhotoNotFound
from ..gallery import default_gallery_folder, write_gallery

__all__ = ["Galleries"]

logger = logging.getLogger(__name__)


class Galleries:
    """The galleries of a daemon's libraries.

    Parameters
    ----------
    write : callable
        ``write(library, sim, tree, progress)`` -> Path of index.html, run in a thread
        (:func:`gallery_sync` with the daemon's graph and store); ``progress``
        goes to :func:`~imagecluster.gallery.write_gallery`, and raises once
        the daemon stops, so a gallery of many new thumbnails never holds up
        a stop.
    """

    def __init__(self, write):
        self._write = write
        self._tasks = {}  # library -> the task writing its gallery now
        self._written = {}  # library -> index.html, or the error that stopped the last one
        self._stopping = threading.Event()

    def _progress(self, total):
        """``write_gallery``'s thumbnail progress: raises :class:`_Stopped` once the daemon stops."""

        def made(count):
            if self._stopping.is_set():
                raise _Stopped()

        return made

    def start(self, library, sim, tree):
        """Write ``library``'s gallery beside ``tree`` once the galleries before it are done. Call in the loop."""
        key = os.fspath(library)
        task = asyncio.get_running_loop().create_task(
            self._run(library, sim, tree, self._tasks.get(key)), name="imagecluster-gallery",
        )
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._tasks.pop(key) if self._tasks.get(key) is done else None)

    async def _run(self, library, sim, tree, before):
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        key = os.fspath(library)
        try:
            self._written[key] = await asyncio.to_thread(self._write, library, sim, tree, self._progress)
        except _Stopped:
            logger.info("%s: the gallery beside %s was left unfinished at shutdown; the next one goes on "
                        "from the thumbnails made", key, tree)
        except Exception as exc:  # noqa: BLE001 - the tree is written; the gallery is extra, its failure logged
            logger.warning("%s: the gallery beside %s could not be written: %s", key, tree, exc)
            self._written[key] = exc

    async def index(self, library):
        """The newest gallery of ``library`` (its index.html), waiting for one being written.

        Raises
        ------
        PhotoNotFound
            None written yet, or the last one failed (the message says why).
        """
        key = os.fspath(library)
        task = self._tasks.get(key)
        if task is not None:
            await asyncio.shield(task)
        found = self._written.get(key)
        if found is None:
            raise PhotoNotFound(f"no gallery of {key} yet: call Cluster or ClusterLibrary first")
        if isinstance(found, Exception):
            raise PhotoNotFound(f"the gallery of {key} could not be written: {found}")
        return os.fspath(found)

    async def close(self, timeout):
        """Stop the galleries being written (after the thumbnail in hand); wait up to ``timeout`` seconds for them."""
        self._stopping.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            logger.warning("a gallery is still being written at shutdown; it finishes in its thread")
            task.cancel()


class _Stopped(Exception):
    """The daemon stops: the gallery being written gives up; its thumbnails made so far are kept."""


def gallery_sync(library, sim, tree, *, graph, store, model, min_size, pair_link, progress=None):
    """Write one library's gallery beside its tree (in a thread); returns its index.html.

    Parameters
    ----------
    library : Path
    sim : float
        The tree's sim; the page opens there (at least the graph's floor).
    tree : Path
        The tree just written; the gallery goes to ``<tree>-gallery``.
    graph : LibraryGraph
        The library's graph, for this thread alone (the daemon passes a copy: see ``LibraryGraph.copy``).
    store : Store
    model : str
    min_size : int
    pair_link : {"jpeg", "raw"}
    progress : callable, default=None
        For the thumbnails, as :func:`~imagecluster.gallery.write_gallery`'s.
    """
    gallery = write_gallery(library, default_gallery_folder(tree), sim=max(sim, graph.floor), model=model,
                            store=store, graph=graph, min_size=min_size, pair_link=pair_link, progress=progress)
    logger.info("%s: gallery written to %s", library, gallery.index)
    return gallery.index
