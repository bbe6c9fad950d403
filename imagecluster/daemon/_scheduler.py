"""The daemon's first indexing of a big library on a Dask cluster (the config's ``scheduler`` key).

When the start-up reconciliation of a library finds at least
:data:`MIN_PHOTOS` photos to fingerprint, they go to the Dask scheduler
instead of the daemon's own worker, in the background: the daemon serves
D-Bus and watches the library meanwhile (new and changed photos are done by
its own worker as usual). The run writes the library's store through a
:class:`~imagecluster.Store` of its own (the store's file lock orders it with
the daemon's writes). When it ends -- done, failed, or the scheduler
unreachable -- the library is reconciled again, and whatever is still
missing is fingerprinted here: nothing depends on the cluster being there.
Each library goes to the cluster at most once per daemon run.
"""

import asyncio
import logging
import threading
import time

from .._exceptions import ImageClusterError

__all__ = ["MIN_PHOTOS", "SchedulerIndexing"]

logger = logging.getLogger(__name__)

#: Photos to fingerprint at start-up from which a library goes to the Dask scheduler.
MIN_PHOTOS = 1000

# Seconds between two progress lines in the log.
_LOG_EVERY = 60.0


class SchedulerIndexing:
    """Runs the first indexing of big libraries on a Dask scheduler, one background task per library.

    Parameters
    ----------
    scheduler : str
        A scheduler address (``tcp://host:8786``) or ``local:N``.
    model : str
        Model name.
    batch_size : int
        Photos per Dask task.
    exclude : sequence of path-like
        Folders never indexed.
    path_map : tuple of (str, str), default=()
        Path map for workers that mount the libraries elsewhere.
    min_photos : int, default=MIN_PHOTOS
        Smaller start-up work stays with the daemon's own worker.
    """

    def __init__(self, scheduler, *, model, batch_size, exclude, path_map=(), min_photos=MIN_PHOTOS):
        self.scheduler, self.model, self.batch_size = scheduler, model, batch_size
        self.exclude, self.path_map, self.min_photos = tuple(exclude), tuple(path_map), min_photos
        self._stop = threading.Event()
        self._tasks = {}
        self._tried = set()

    def take(self, root, count, on_done):
        """Start indexing library ``root`` on the scheduler if ``count`` photos are worth it.

        Parameters
        ----------
        root : Path
            The library.
        count : int
            Photos the reconciliation found to fingerprint.
        on_done : coroutine function
            Awaited with ``root`` when the run ended (not when stopping).

        Returns
        -------
        bool
            True when the scheduler took the work (leave those photos alone).
        """
        if count < self.min_photos or root in self._tried or self._stop.is_set():
            return False
        self._tried.add(root)
        loop = asyncio.get_running_loop()
        self._tasks[root] = loop.create_task(self._run(root, count, on_done), name=f"imagecluster-dask-{root}")
        return True

    @property
    def running(self):
        """Libraries being indexed on the scheduler now."""
        return tuple(self._tasks)

    async def _run(self, root, count, on_done):
        logger.info("library %s: %d photos to fingerprint; sending them to the Dask scheduler %s",
                    root, count, self.scheduler)
        try:
            report = await _in_daemon_thread(self._index_sync, root)
        except (ImageClusterError, OSError) as exc:
            logger.warning("library %s: indexing on the Dask scheduler %s failed (%s); "
                           "the photos are fingerprinted here instead", root, self.scheduler, exc)
        else:
            logger.info("library %s: %d photos fingerprinted on the Dask scheduler, %d could not be read",
                        root, report.added + report.updated, len(report.failures))
        finally:
            self._tasks.pop(root, None)
        if not self._stop.is_set():
            await on_done(root)

    def _index_sync(self, root):
        from .._distributed import index_with_scheduler
        from ..store import Store

        return index_with_scheduler(
            root, self.scheduler, model=self.model, store=Store(root), exclude=self.exclude,
            batch_size=self.batch_size, path_map=self.path_map, progress=_log_progress(root), stop=self._stop,
        )

    async def stop(self, timeout):
        """Stop every run after its batch in hand (what is stored stays), waiting at most ``timeout`` s."""
        self._stop.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(0.1, timeout))
            for task in late:
                logger.warning("the Dask indexing task %s did not stop within %g s", task.get_name(), timeout)


async def _in_daemon_thread(function, *args):
    """``function(*args)`` in a daemon thread: a hung scheduler cannot keep the daemon from exiting."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run():
        try:
            result = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task as it is
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, name="imagecluster-dask-client", daemon=True).start()
    return await future


def _settle(future, result, exc):
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _log_progress(root):
    """A ``progress`` for the core: a log line every minute while photos come back from the cluster."""

    def start(total):
        state = {"done": 0, "logged": time.monotonic()}

        def advance(n):
            state["done"] += n
            now = time.monotonic()
            if now - state["logged"] >= _LOG_EVERY:
                state["logged"] = now
                logger.info("library %s: %d/%d photos fingerprinted on the Dask scheduler", root, state["done"], total)

        return advance

    return start
