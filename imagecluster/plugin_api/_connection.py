"""The asyncio side of the client: one dbus-fast connection to the session bus.

:class:`Connection` sends a method call to the daemon and turns every way it
can go wrong into an imagecluster exception (``raise ... from`` the D-Bus
cause): an error reply by its name, no answer in time, the daemon or the bus
going away, no bus at all. It also routes the daemon's signals to one
callback. Both clients use it: :class:`~imagecluster.plugin_api.AsyncClient`
in the caller's loop, :class:`~imagecluster.plugin_api.Client` in a loop of
its own.
"""

import asyncio
import logging
import time

from dbus_fast import DBusError, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusFastError, SignatureBodyMismatchError

from .._exceptions import DaemonDisconnected, DaemonNotAvailable, DaemonTimeout, InvalidParameter, PhotoNotFound
from .._session_bus import find_session_bus
from ._contract import BUS_NAME, INTERFACE, LOG_HINT, NO_BUS_HINT, OBJECT_PATH, error_from_dbus
from ._unit import CHECK_EVERY, unit_failure

__all__ = ["Connection", "session_bus_address"]

logger = logging.getLogger(__name__)

# What a signal subscription asks the bus for: every signal of our interface,
# sent by whichever process owns the name now (also after a restart).
MATCH_RULE = f"type='signal',sender='{BUS_NAME}',path='{OBJECT_PATH}',interface='{INTERFACE}'"


def session_bus_address(address=None, environ=None):
    """The session bus's address: ``address``, ``$DBUS_SESSION_BUS_ADDRESS`` or ``$XDG_RUNTIME_DIR/bus``.

    The last is where systemd's user instance puts the bus (libdbus, GDBus and
    sd-bus look there too when the variable is not set).

    Raises
    ------
    DaemonNotAvailable
        When none of them names a bus.
    """
    address = address or find_session_bus(environ)
    if address:
        return address
    raise DaemonNotAvailable(
        f"no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set and there is no $XDG_RUNTIME_DIR/bus; {NO_BUS_HINT}"
    )


class Connection:
    """A connection to the session bus, opened on first use, in the running event loop.

    Parameters
    ----------
    address : str, default=None
        The bus address; ``None`` means the session bus (see :func:`session_bus_address`).
    on_signal : callable
        ``on_signal(member, args)`` for each signal of the daemon's interface,
        once :meth:`subscribe` was awaited. Called in the event loop.
    transport : object, default=None
        Used instead of a dbus-fast ``MessageBus`` on ``address``: an object
        with its ``connect``, ``call``, ``add_message_handler``, ... (tests give
        a :class:`~imagecluster.plugin_api._mockbus.MockBus`, as httpx tests
        give a ``MockTransport``). ``None`` connects to the real bus.
    """

    def __init__(self, address=None, *, on_signal, transport=None):
        self._address = address
        self._transport = transport
        self._on_signal = on_signal
        self._bus = None
        self._lock = None
        self._subscribed = False

    @property
    def connected(self):
        """Whether a bus connection is open now."""
        return self._bus is not None and self._bus.connected

    async def call(self, member, signature="", body=(), *, timeout, interface=INTERFACE, not_found=PhotoNotFound):
        """Call ``member`` on the daemon and return the reply's arguments.

        Parameters
        ----------
        member : str
            The method, e.g. ``"Cluster"``.
        signature : str, default=""
            The D-Bus signature of ``body``.
        body : sequence, default=()
            The arguments.
        timeout : float or None
            Seconds to wait for the answer (D-Bus activation included); ``None`` waits forever.
        interface : str, default=INTERFACE
            The interface of ``member`` (``org.freedesktop.DBus.Properties`` for properties).
        not_found : type, default=PhotoNotFound
            The exception for a ``NotFound`` answer.

        Returns
        -------
        body : list
            The reply's arguments.

        Raises
        ------
        ImageClusterError
            The leaf for the daemon's named error, :class:`DaemonNotAvailable`,
            :class:`DaemonTimeout` or :class:`DaemonDisconnected`.
        """
        bus = await self._connect()
        message = Message(
            destination=BUS_NAME, path=OBJECT_PATH, interface=interface, member=member,
            signature=signature, body=list(body),
        )
        try:
            reply = await self._reply(bus, message, timeout)
        except asyncio.TimeoutError as exc:
            raise DaemonTimeout(
                f"the imagecluster daemon did not answer {member} within {timeout:g} s; it may still be working"
            ) from exc
        except DaemonNotAvailable:  # the unit failed (a ConnectionError, not a lost connection)
            raise
        except SignatureBodyMismatchError as exc:
            raise InvalidParameter(f"bad arguments for {member}: {exc}") from exc
        except (OSError, EOFError, DBusFastError) as exc:
            raise DaemonDisconnected(f"lost the connection to the D-Bus session bus during {member}: {exc}") from exc
        if reply is None:
            raise DaemonDisconnected(f"lost the connection to the D-Bus session bus during {member}")
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else reply.error_name
            cause = DBusError(reply.error_name, text, reply)
            raise error_from_dbus(reply.error_name, text, member=member, not_found=not_found) from cause
        return reply.body

    async def _reply(self, bus, message, timeout):
        """The reply to ``message``, or DaemonNotAvailable as soon as the daemon's systemd unit failed.

        Raises asyncio.TimeoutError after ``timeout`` seconds. While waiting,
        the unit's state is looked at every second (see :mod:`._unit`).
        """
        loop = asyncio.get_running_loop()
        start, since = loop.time(), time.time()
        call = asyncio.ensure_future(bus.call(message))
        try:
            while True:
                left = None if timeout is None else timeout - (loop.time() - start)
                step = CHECK_EVERY if left is None else max(0.0, min(CHECK_EVERY, left))
                done, _ = await asyncio.wait({call}, timeout=step)
                if done:
                    return call.result()
                if left is not None and left <= step:
                    raise asyncio.TimeoutError
                failure = await unit_failure(bus, since=since, waited=loop.time() - start)
                if failure is not None:
                    raise DaemonNotAvailable(failure)
        finally:
            if not call.done():
                call.cancel()

    async def subscribe(self, timeout):
        """Ask the bus for the daemon's signals (once; again after a reconnect), within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._subscribe(), timeout)
        except asyncio.TimeoutError as exc:
            raise DaemonTimeout(f"the session bus did not answer a signal subscription within {timeout:g} s") from exc

    async def _subscribe(self):
        bus = await self._connect()
        if not self._subscribed:
            await self._add_match(bus)
            self._subscribed = True

    async def close(self):
        """Disconnect from the bus; the connection may be opened again by the next call."""
        bus, self._bus = self._bus, None
        if bus is None:
            return
        bus.remove_message_handler(self._handle)
        if bus.connected:
            bus.disconnect()
            try:
                await asyncio.wait_for(bus.wait_for_disconnect(), 5)
            except Exception:  # a bus that died on its own ends with its error
                logger.debug("bus connection closed with an error", exc_info=True)

    # ------------------------------------------------------------- helpers

    async def _connect(self):
        if self.connected:
            return self._bus
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.connected:
                return self._bus
            address = "the mock bus" if self._transport is not None else session_bus_address(self._address)
            try:
                bus = await (self._transport or MessageBus(bus_address=address)).connect()
            except (OSError, ValueError, DBusFastError) as exc:
                raise DaemonNotAvailable(
                    f"cannot connect to the D-Bus session bus at {address} ({exc}); "
                    f"is DBUS_SESSION_BUS_ADDRESS right? {NO_BUS_HINT}"
                ) from exc
            bus.add_message_handler(self._handle)
            if self._subscribed:
                await self._add_match(bus)
            self._bus = bus
            return bus

    async def _add_match(self, bus):
        reply = await bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
            member="AddMatch", signature="s", body=[MATCH_RULE],
        ))
        if reply is None or reply.message_type is MessageType.ERROR:
            detail = reply.body[0] if reply is not None and reply.body else "no answer"
            raise DaemonNotAvailable(f"the session bus refused the signal subscription ({detail}); {LOG_HINT}")

    def _handle(self, message):
        if (message.message_type is MessageType.SIGNAL and message.interface == INTERFACE
                and message.path == OBJECT_PATH):
            try:
                self._on_signal(message.member, list(message.body))
            except Exception:
                logger.exception("a signal callback failed")
        return None
