"""A repair of dbus-fast's asyncio writer: a full socket must not close the connection.

dbus-fast 5.2 (as python-dbus-next before it:
https://github.com/altdesktop/python-dbus-next/issues/153, fix proposed in
https://github.com/altdesktop/python-dbus-next/pull/154, not in dbus-fast)
sends a new message at once when its queue is empty, even while an earlier
message is still partly written; ``send`` on the full socket then raises
BlockingIOError (EAGAIN), which the writer takes for a broken connection.
A Cluster reply naming thousands of photos, followed by a PropertiesChanged
signal, is enough: the daemon fell off the bus in 3 of 3 benchmark runs.

The repair swaps the private writer's socket for one whose ``send`` returns
0 bytes written instead of raising. :func:`patch_problem` checks the shape of
the private writer it relies on (signatures, not only names); when it
differs, the bus is left as it is and a warning is logged.
"""

import inspect
import logging

__all__ = ["patch_problem", "tolerate_full_socket"]

logger = logging.getLogger(__name__)


class _FullSocketTolerant:
    """A socket whose ``send`` returns 0 instead of raising BlockingIOError (EAGAIN)."""

    def __init__(self, sock):
        self._sock = sock

    def send(self, data):
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _parameters(function):
    return list(inspect.signature(function).parameters)


def patch_problem(bus):
    """Why the repair cannot apply to ``bus``'s writer, or None when it can.

    Parameters
    ----------
    bus : dbus_fast.aio.MessageBus
        A connected bus.

    Returns
    -------
    str or None
        What differs from the private writer the repair was written for (dbus-fast 5.2).
    """
    writer = getattr(bus, "_writer", None)
    if writer is None:
        return "the bus has no _writer"
    expected = [
        ("__init__", ["self", "bus"]),
        ("write_callback", ["self", "remove_writer"]),
        ("buffer_message", ["self", "msg", "future"]),
        ("schedule_write", ["self", "msg", "future"]),
    ]
    try:
        for name, names in expected:
            function = getattr(type(writer), name, None)
            if function is None or _parameters(function) != names:
                return f"{type(writer).__name__}.{name} is not ({', '.join(names)})"
    except (TypeError, ValueError) as exc:
        return f"the writer's methods cannot be inspected ({exc})"
    sock = getattr(writer, "sock", None)
    if sock is None or not callable(getattr(sock, "send", None)):
        return "the writer has no socket in .sock"
    return None


def tolerate_full_socket(bus):
    """Make ``bus`` (a connected dbus-fast MessageBus) wait for a full socket instead of disconnecting.

    A ``send`` that would block returns 0 bytes written, which the writer
    already handles as a partial write: it waits until the socket drains.

    Parameters
    ----------
    bus : dbus_fast.aio.MessageBus
        A connected bus.

    Returns
    -------
    bool
        Whether the repair is in place (False: a warning was logged, the bus is as dbus-fast made it).
    """
    problem = patch_problem(bus)
    if problem is not None:
        logger.warning("dbus-fast's writer has changed (%s); a full socket may drop the connection", problem)
        return False
    if not isinstance(bus._writer.sock, _FullSocketTolerant):
        bus._writer.sock = _FullSocketTolerant(bus._writer.sock)
    return True
