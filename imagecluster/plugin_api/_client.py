"""The clients a photo-manager plugin uses: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both have the same methods with the same arguments; ``AsyncClient``'s are
awaited. A client connects on its first call and keeps the connection until
:meth:`Client.close` / :meth:`AsyncClient.aclose` (or the end of a ``with``
block)::

    with Client() as client:
        for cluster in client.cluster(0.7):
            print(len(cluster), cluster[0])

    async with AsyncClient() as client:
        vector = await client.fingerprint("/home/me/Pictures/IMG_0001.jpg")

The first call starts the daemon through D-Bus activation when it is installed
(``imagecluster install-service``) but not running.
"""

import asyncio
import concurrent.futures
import inspect
import logging
import threading

from ._base import DEFAULT_TIMEOUT, DEFAULT_WORK_TIMEOUT, USE_CLIENT_DEFAULT, ClientState, _BaseClient
from ._connection import Connection

__all__ = ["AsyncClient", "Client"]

logger = logging.getLogger(__name__)

_COMMON_DOC = """
    Parameters
    ----------
    timeout : float or None, default=25.0
        Seconds to wait for the answer to a quick call (``status``, the
        subscriptions, the margin of ``wait_idle``); ``None`` waits forever.
    work_timeout : float or None, default=1800.0
        Seconds to wait for a call that may fingerprint or cluster
        (``cluster``, ``cluster_library``, ``write_tree``, ``fingerprint``,
        ``similar``). Every method's own ``timeout=`` overrides these.
    bus_address : str, default=None
        A D-Bus address; ``None`` means the session bus
        (``$DBUS_SESSION_BUS_ADDRESS``, else ``$XDG_RUNTIME_DIR/bus``).
    transport : object, default=None
        For tests: a bus object used instead of connecting to ``bus_address``
        (``imagecluster.plugin_api._mockbus.MockBus``, a bus in memory that
        speaks the daemon's contract), as httpx's ``MockTransport``.

    Notes
    -----
    Besides the errors each method names, every call may raise:

    - ``DaemonNotAvailable``: no session bus, or the daemon is neither
      running nor installed for D-Bus activation (the message says what to run);
    - ``DaemonTimeout``: no answer within the call's timeout;
    - ``DaemonDisconnected``: the daemon (or the bus) went away before answering;
    - ``DaemonFailed``: the daemon answered ``Failed``; the message says what.
"""


class _LoopThread:
    """An asyncio event loop running in a thread of its own (the blocking client's I/O)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="imagecluster-client", daemon=True)
        self.thread.start()

    def run(self, coroutine):
        """Run ``coroutine`` in the loop and return its result (blocking the calling thread)."""
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError("a Client cannot be called from its own event loop thread")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted (Ctrl-C): drop the call
            raise

    def stop(self):
        """Stop the loop, end the thread, close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()


class Client(_BaseClient):
    """A blocking client of the imagecluster daemon (``org.imagecluster.ImageCluster1``).

    Safe to use from several threads. Its I/O runs in an event loop in a
    thread of its own; signal callbacks run, in order, in another thread of
    its own (they may call the client). :meth:`close` ends both threads.
    """

    def __init__(self, *, timeout=DEFAULT_TIMEOUT, work_timeout=DEFAULT_WORK_TIMEOUT, bus_address=None,
                 transport=None):
        super().__init__(timeout=timeout, work_timeout=work_timeout, bus_address=bus_address, transport=transport)
        self._lock = threading.Lock()
        self._runner = None
        self._connection = None
        self._executor = None
        self._in_callback = threading.local()

    # ----------------------------------------------------------- the calls

    def cluster(self, sim=None, *, timeout=USE_CLIENT_DEFAULT):
        """Cluster every library (each on its own), write each library's tree, return all clusters.

        Only photos fingerprinted by now take part; call :meth:`wait_idle` first for all.

        Parameters
        ----------
        sim : float, default=None
            Similarity index in 0..1; ``None`` means the daemon's configured ``Sim``.
        timeout : float or None, default=the client's work_timeout

        Returns
        -------
        clusters : list of list of str
            Absolute photo paths; each cluster sorted, the largest first.

        Raises
        ------
        InvalidParameter
            ``sim`` outside 0..1 or NaN.
        NotOurTree
            A library's tree folder exists and is not an imagecluster tree.
        """
        if sim is None:
            sim = self._send(self._sim_call())
        return self._send(self._cluster_call(sim, timeout))

    def cluster_library(self, library, sim=None, *, timeout=USE_CLIENT_DEFAULT):
        """As :meth:`cluster`, for one library (one of :attr:`Status.libraries`).

        Parameters
        ----------
        library : path-like
            One of the watched libraries; a relative path is taken from this process's folder.
        sim : float, default=None
            Similarity index in 0..1; ``None`` means the daemon's configured ``Sim``.
        timeout : float or None, default=the client's work_timeout

        Returns
        -------
        clusters : list of list of str
            Absolute photo paths; each cluster sorted, the largest first.

        Raises
        ------
        NotInLibrary
            ``library`` is not a watched library.
        LibraryNotFound
            The library is not mounted now.
        """
        if sim is None:
            sim = self._send(self._sim_call())
        return self._send(self._cluster_library_call(library, sim, timeout))

    def cluster_events(self, sim=None, hours=None, km=None, *, timeout=USE_CLIENT_DEFAULT):
        """Group every library's photos into events by capture time and place, content clusters inside each.

        The daemon writes each library's events tree (``<tree folder>-events``).

        Parameters
        ----------
        sim : float or None, default=None
            Similarity of the content clusters; ``None`` means the daemon's ``Sim``.
        hours : float or None, default=None
            A longer gap splits events; ``None`` means
            :data:`imagecluster.events.DEFAULT_HOURS`.
        km : float or None, default=None
            Photos farther apart are separate events even at the same time;
            ``None`` means :data:`imagecluster.events.DEFAULT_KM`.
        timeout : float or None, default=the client's work_timeout

        Returns
        -------
        list of Event
            In time order.

        Raises
        ------
        InvalidParameter
            ``sim`` outside 0..1, ``hours`` or ``km`` not above 0 (before anything is sent).
        NotOurTree
            An events tree folder exists and was not written by imagecluster.
        """
        if sim is None:
            sim = self._send(self._sim_call())
        return self._send(self._events_call(sim, hours, km, timeout))

    def write_tree(self, library, sim, out, *, timeout=USE_CLIENT_DEFAULT):
        """Cluster one library and write its tree to ``out`` (absent, empty, or an earlier tree).

        Parameters
        ----------
        library : path-like
        sim : float or None
            ``None`` means the daemon's configured ``Sim``.
        out : path-like
            The tree folder; a relative path is taken from this process's folder.
        timeout : float or None, default=the client's work_timeout

        Returns
        -------
        tree : str
            The tree's folder.
        n_clusters : int
        """
        if sim is None:
            sim = self._send(self._sim_call())
        return self._send(self._write_tree_call(library, sim, out, timeout))

    def fingerprint(self, path, *, timeout=USE_CLIENT_DEFAULT):
        """The L2-normalised fingerprint of a photo inside a library, as ndarray of shape (n_features,), float32.

        Parameters
        ----------
        path : path-like
            The photo; a relative path is taken from this process's folder.
        timeout : float or None, default=the client's work_timeout

        Raises
        ------
        NotInLibrary, PhotoNotFound, NotAnImage
        """
        return self._send(self._fingerprint_call(path, timeout))

    def similar(self, path, sim=None, *, timeout=USE_CLIENT_DEFAULT):
        """Stored photos at least ``sim`` similar to the photo at ``path``: list of (path, similarity), best first.

        Parameters
        ----------
        path : path-like
            A photo inside a library (itself not in the answer).
        sim : float, default=None
            Similarity index in 0..1; ``None`` means the daemon's configured ``Sim``.
        timeout : float or None, default=the client's work_timeout
        """
        if sim is None:
            sim = self._send(self._sim_call())
        return self._send(self._similar_call(path, sim, timeout))

    def wait_idle(self, timeout):
        """Wait until nothing is pending, at most ``timeout`` seconds; whether the daemon is idle.

        Parameters
        ----------
        timeout : float
            Seconds the daemon waits, 0..3600; the call itself may take the client's ``timeout`` longer.
        """
        return self._send(self._wait_idle_call(timeout))

    def gallery(self, library, *, timeout=USE_CLIENT_DEFAULT):
        """The gallery (index.html) the daemon wrote beside ``library``'s newest tree.

        Parameters
        ----------
        library : path-like
            One of the watched libraries.
        timeout : float or None, default=the client's work_timeout

        Raises
        ------
        NotInLibrary
            ``library`` is not a watched library.
        PhotoNotFound
            No tree was written for it yet, or its gallery failed (the message says which).
        """
        return self._send(self._gallery_call(library, timeout))

    def status(self, *, timeout=USE_CLIENT_DEFAULT):
        """The daemon's properties, read at one moment, as a :class:`Status`.

        Parameters
        ----------
        timeout : float or None, default=the client's timeout
        """
        return self._send(self._status_call(timeout))

    def on_progress(self, callback):
        """Call ``callback(indexed, pending)`` on every ``Progress`` signal; returns a function that stops it.

        Parameters
        ----------
        callback : callable
            Called with two ints, in the client's callback thread.
        """
        return self._subscribe("Progress", callback)

    def on_clusters_written(self, callback):
        """Call ``callback(tree, n_clusters)`` on every ``ClustersWritten`` signal; returns a function that stops it.

        Parameters
        ----------
        callback : callable
            Called with the tree's folder (str) and its number of clusters, in the client's callback thread.
        """
        return self._subscribe("ClustersWritten", callback)

    # ------------------------------------------------------------ lifecycle

    def close(self):
        """Disconnect and end the client's threads (after the callbacks already due). Idempotent."""
        with self._lock:
            if self._state is ClientState.CLOSED:
                return
            self._state = ClientState.CLOSED
            runner, self._runner = self._runner, None
            executor, self._executor = self._executor, None
        if runner is not None:
            try:
                runner.run(self._connection.close())
            finally:
                runner.stop()
        if executor is not None:
            executor.shutdown(wait=not getattr(self._in_callback, "active", False))

    def __enter__(self):
        self._enter()
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ------------------------------------------------------------- helpers

    def _start(self):
        with self._lock:
            self._open()
            if self._runner is None:
                self._connection = Connection(self._bus_address, on_signal=self._on_signal, transport=self._transport)
                self._runner = _LoopThread()
            return self._runner

    def _send(self, call):
        runner = self._start()
        return runner.run(self._call(call))

    async def _call(self, call):
        body = await self._connection.call(
            call.member, call.signature, call.body, timeout=call.timeout,
            interface=call.interface, not_found=call.not_found,
        )
        return call.parse(body)

    def _subscribe(self, member, callback):
        unsubscribe = self._add_callback(member, callback)
        runner = self._start()
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, "imagecluster-callbacks")
        try:
            runner.run(self._connection.subscribe(self._timeout))
        except BaseException:
            unsubscribe()
            raise
        return unsubscribe

    def _on_signal(self, member, args):
        executor = self._executor
        if executor is None:
            return
        for callback, values in self._targets(member, args):
            try:
                executor.submit(self._deliver, callback, values)
            except RuntimeError:  # shutting down
                return

    def _deliver(self, callback, values):
        self._in_callback.active = True
        try:
            callback(*values)
        except Exception:
            logger.exception("the callback %r failed", callback)
        finally:
            self._in_callback.active = False


class AsyncClient(_BaseClient):
    """An asyncio client of the imagecluster daemon (``org.imagecluster.ImageCluster1``).

    The twin of :class:`Client`: the same methods, awaited. Use it from one
    event loop. Signal callbacks run in that loop; a callback may be a
    coroutine function (it is then run as a task).
    """

    def __init__(self, *, timeout=DEFAULT_TIMEOUT, work_timeout=DEFAULT_WORK_TIMEOUT, bus_address=None,
                 transport=None):
        super().__init__(timeout=timeout, work_timeout=work_timeout, bus_address=bus_address, transport=transport)
        self._connection = Connection(bus_address, on_signal=self._on_signal, transport=transport)
        self._tasks = set()

    # ----------------------------------------------------------- the calls

    async def cluster(self, sim=None, *, timeout=USE_CLIENT_DEFAULT):
        """Cluster every library and write the trees; see :meth:`Client.cluster`."""
        if sim is None:
            sim = await self._send(self._sim_call())
        return await self._send(self._cluster_call(sim, timeout))

    async def cluster_library(self, library, sim=None, *, timeout=USE_CLIENT_DEFAULT):
        """Cluster one library and write its tree; see :meth:`Client.cluster_library`."""
        if sim is None:
            sim = await self._send(self._sim_call())
        return await self._send(self._cluster_library_call(library, sim, timeout))

    async def cluster_events(self, sim=None, hours=None, km=None, *, timeout=USE_CLIENT_DEFAULT):
        """Events with content clusters inside; see :meth:`Client.cluster_events`."""
        if sim is None:
            sim = await self._send(self._sim_call())
        return await self._send(self._events_call(sim, hours, km, timeout))

    async def write_tree(self, library, sim, out, *, timeout=USE_CLIENT_DEFAULT):
        """Cluster one library, tree to ``out``; (tree, n_clusters). See :meth:`Client.write_tree`."""
        if sim is None:
            sim = await self._send(self._sim_call())
        return await self._send(self._write_tree_call(library, sim, out, timeout))

    async def fingerprint(self, path, *, timeout=USE_CLIENT_DEFAULT):
        """A photo's fingerprint, ndarray of shape (n_features,); see :meth:`Client.fingerprint`."""
        return await self._send(self._fingerprint_call(path, timeout))

    async def similar(self, path, sim=None, *, timeout=USE_CLIENT_DEFAULT):
        """Photos similar to one, best first; see :meth:`Client.similar`."""
        if sim is None:
            sim = await self._send(self._sim_call())
        return await self._send(self._similar_call(path, sim, timeout))

    async def wait_idle(self, timeout):
        """Wait until nothing is pending, at most ``timeout`` seconds; see :meth:`Client.wait_idle`."""
        return await self._send(self._wait_idle_call(timeout))

    async def gallery(self, library, *, timeout=USE_CLIENT_DEFAULT):
        """The gallery beside ``library``'s newest tree; see :meth:`Client.gallery`."""
        return await self._send(self._gallery_call(library, timeout))

    async def status(self, *, timeout=USE_CLIENT_DEFAULT):
        """The daemon's properties as a :class:`Status`."""
        return await self._send(self._status_call(timeout))

    async def on_progress(self, callback):
        """Call ``callback(indexed, pending)`` on every ``Progress`` signal; returns a function that stops it."""
        return await self._subscribe("Progress", callback)

    async def on_clusters_written(self, callback):
        """Call ``callback(tree, n_clusters)`` on every ``ClustersWritten``; returns a function that stops it."""
        return await self._subscribe("ClustersWritten", callback)

    # ------------------------------------------------------------ lifecycle

    async def aclose(self):
        """Disconnect, cancel callback tasks still running. Idempotent."""
        if self._state is ClientState.CLOSED:
            return
        self._state = ClientState.CLOSED
        await self._connection.close()
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self):
        self._enter()
        return self

    async def __aexit__(self, *exc_info):
        await self.aclose()

    # ------------------------------------------------------------- helpers

    async def _send(self, call):
        self._open()
        body = await self._connection.call(
            call.member, call.signature, call.body, timeout=call.timeout,
            interface=call.interface, not_found=call.not_found,
        )
        return call.parse(body)

    async def _subscribe(self, member, callback):
        self._open()
        unsubscribe = self._add_callback(member, callback)
        try:
            await self._connection.subscribe(self._timeout)
        except BaseException:
            unsubscribe()
            raise
        return unsubscribe

    def _on_signal(self, member, args):
        for callback, values in self._targets(member, args):
            try:
                result = callback(*values)
            except Exception:
                logger.exception("the callback %r failed", callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task):
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("the callback task %r failed", task, exc_info=task.exception())


for _cls in (Client, AsyncClient):
    if _cls.__doc__:  # not under python -OO
        _cls.__doc__ += _COMMON_DOC
