"""The daemon's lifecycle: ``startup`` -> ``main_loop`` -> ``shutdown``, as in uvicorn.

A :class:`Daemon` is built from one :class:`~imagecluster.daemon.Config` and owns
everything it runs: the bus connection, the indexer (watchers, stores, the
inference worker) and the D-Bus interface. SIGTERM and SIGINT only set
``should_exit``; a second signal sets ``force_exit`` and shutdown stops
waiting for calls in progress.

Exit status of :meth:`Daemon.run`: :data:`EXIT_OK` after a signal,
:data:`EXIT_FAILED` when the bus cannot be reached or is lost,
:data:`EXIT_NAME_TAKEN` when another process owns the bus name.
"""

import asyncio
import contextlib
import ctypes
import logging
import signal

from dbus_fast import Message, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus

from .._exceptions import ImageClusterError
from .._session_bus import find_session_bus
from ._bus_repair import tolerate_full_socket
from ._logging import configure_logging
from ._service import BUS_NAME, OBJECT_PATH, ImageClusterInterface

__all__ = [
    "EXIT_FAILED", "EXIT_NAME_TAKEN", "EXIT_OK", "BusNameTaken", "Daemon", "DaemonError", "configure_logging",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NAME_TAKEN = 3

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# glibc's mallopt parameter, and the value the daemon gives it (see _keep_heap_small).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 4 << 20

def _keep_heap_small():
    """Have glibc return freed blocks of 4 MB and more to the system at once.

    glibc raises its mmap threshold (up to 32 MB) each time a large block is
    freed, so the arrays of later clusterings are carved from its heaps and
    stay there when freed: an idle daemon grows by tens of MB per Cluster
    call. A fixed threshold stops that. Elsewhere than glibc, nothing happens.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


class DaemonError(ImageClusterError, RuntimeError):
    """The daemon cannot start or keep running (no session bus, lost bus)."""


class BusNameTaken(DaemonError):
    """Another process owns ``org.imagecluster.ImageCluster1`` on this bus."""


class Daemon:
    """The per-user sidecar: watches the libraries, answers on the session bus.

    Parameters
    ----------
    config : Config
        Libraries and settings.
    bus_address : str, default=None
        The bus to serve on; None means the session bus, found as the
        clients find it (``$DBUS_SESSION_BUS_ADDRESS``, else ``$XDG_RUNTIME_DIR/bus``).
    shutdown_timeout : float, default=5.0
        Seconds shutdown waits for calls in progress, and for the indexer's
        batch in hand.

    Attributes
    ----------
    should_exit : bool
        Set by SIGTERM/SIGINT; the main loop returns.
    force_exit : bool
        Set by a second signal; shutdown stops waiting.
    """

    def __init__(self, config, *, bus_address=None, shutdown_timeout=5.0):
        self.config = config
        self.bus_address = bus_address
        self.shutdown_timeout = shutdown_timeout
        self.should_exit = False
        self.force_exit = False
        self.bus = None
        self.indexer = None
        self.service = None
        self._wake = None
        self._owns_name = False
        self._indexer_started = False
        self._served = False  # "stopped" is said only of a daemon that said "serving"

    def run(self):
        """Serve until a signal comes; returns the exit status."""
        _keep_heap_small()
        return asyncio.run(self.serve())

    async def serve(self):
        """:meth:`startup`, :meth:`main_loop`, :meth:`shutdown`; returns the exit status."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for sig in _HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        try:
            try:
                await self.startup()
            except BusNameTaken as exc:
                logger.error("%s", exc)
                return EXIT_NAME_TAKEN
            except DaemonError as exc:
                logger.error("%s", exc)
                return EXIT_FAILED
            return await self.main_loop()
        finally:
            await self.shutdown()
            for sig in _HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig):
        """A signal: ask the main loop to return (a second one: stop waiting in shutdown)."""
        if self.should_exit:
            self.force_exit = True
            logger.info("second %s: exiting without waiting", signal.Signals(sig).name)
        else:
            logger.info("%s: shutting down", signal.Signals(sig).name)
        self.should_exit = True
        self._wake.set()

    # ------------------------------------------------------------- startup

    async def startup(self):
        """Connect, export the interface, take the bus name, start indexing.

        The name is taken before the indexer starts, so a second daemon
        never touches the libraries; calls that arrive meanwhile wait.
        """
        config = self.config
        for library in config.libraries:
            if not library.is_dir():
                logger.warning("library %s is not there (yet); it is picked up when it appears", library)
        address = self.bus_address or find_session_bus()
        if address is None:
            raise DaemonError(
                "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set and there is no $XDG_RUNTIME_DIR/bus"
            )
        try:
            self.bus = await MessageBus(bus_address=address).connect()
        except Exception as exc:
            raise DaemonError(f"cannot connect to the session bus at {address}: {exc}") from exc
        tolerate_full_socket(self.bus)
        self.indexer = self._make_indexer()
        self.service = ImageClusterInterface(self.indexer, config)
        preload = getattr(self.indexer, "preload", None)
        if preload is not None:  # the first property read after D-Bus activation must already be right
            await asyncio.to_thread(preload)
        self.bus.export(OBJECT_PATH, self.service)
        reply = await self.bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            owner = await self._name_owner_pid()
            by = f" by process {owner}" if owner else ""
            raise BusNameTaken(
                f"{BUS_NAME} is already taken on this session bus{by}: another imagecluster daemon "
                "is running. Use that one, or stop it first (systemctl --user stop imagecluster)."
            )
        self._owns_name = True
        if self.should_exit:
            return
        await self.indexer.start()
        self._indexer_started = True
        self.service.start()
        logger.info(
            "serving %s on the session bus (model %s); watching %s",
            BUS_NAME, self.indexer.model_name, ", ".join(map(str, config.libraries)),
        )
        self._served = True

    def _make_indexer(self):
        from ._indexer import Indexer

        config = self.config
        return Indexer(
            config.libraries, model=config.model, exclude=config.out,
            settle_seconds=config.settle_seconds, worker_idle_seconds=config.worker_idle_seconds,
            batch_size=config.batch_size, rescan_seconds=config.rescan_seconds, on_change=self._changed,
            thumbnails=config.gallery,  # the galleries then find each photo's thumbnail made
            # Only when set: a daemon without a scheduler passes no Dask options at all.
            **({"scheduler": config.scheduler, "path_map": config.path_map} if config.scheduler else {}),
        )

    def _changed(self):
        if self.service is not None:
            self.service.notify()

    async def _name_owner_pid(self):
        """The process id owning the bus name, or None (best effort, for the message)."""
        with contextlib.suppress(Exception):
            reply = await self.bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="GetConnectionUnixProcessID",
                signature="s", body=[BUS_NAME],
            ))
            if reply.body:
                return reply.body[0]
        return None

    # ----------------------------------------------------------- main loop

    async def main_loop(self):
        """Wait for a signal, or for the bus to go away; returns the exit status."""
        if self.should_exit:
            return EXIT_OK
        # shield: cancelling the wait must not cancel the bus' own disconnect future
        lost = asyncio.ensure_future(asyncio.shield(self.bus.wait_for_disconnect()))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({lost, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (lost, woken):
                task.cancel()
            await asyncio.gather(lost, woken, return_exceptions=True)
        if self.should_exit:
            return EXIT_OK
        logger.error("lost the connection to the session bus; exiting")
        self._owns_name = False
        return EXIT_FAILED

    # ------------------------------------------------------------ shutdown

    async def shutdown(self):
        """Stop answering, stop indexing, flush the stores, release the name, disconnect."""
        timeout = 0.0 if self.force_exit else self.shutdown_timeout
        if self.service is not None:
            await self.service.close(timeout)
        if self._indexer_started:
            self._indexer_started = False
            try:  # finishes or drops the batch in hand, compacts the stores, closes the worker
                await self.indexer.stop(timeout=timeout)
            except Exception:
                logger.exception("the indexer did not stop cleanly")
        if self.bus is not None:
            if self._owns_name and self.bus.connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.bus.release_name(BUS_NAME), 2.0)
            self._owns_name = False
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.bus.wait_for_disconnect()), 2.0)
            self.bus = None
        if self._served:
            logger.info("stopped")
