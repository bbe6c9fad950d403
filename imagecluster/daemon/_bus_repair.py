"""A repair of dbus-fast's asyncio writer: a full socket must not close the connection.

dbus-fast 5.2 (as python-dbus-next before it, issue 153 there) sends a new
message at once when its queue is empty, even while an earlier message is
still partly written; ``send`` on the full socket then raises
BlockingIOError (EAGAIN), which the writer takes for a broken connection.
A Cluster reply naming thousands of photos, followed by a PropertiesChanged
signal, is enough: the daemon fell off the bus in 3 of 3 benchmark runs.
"""

import logging

__all__ = ["tolerate_full_socket"]

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


def tolerate_full_socket(bus):
    """Make ``bus`` (a connected dbus-fast MessageBus) wait for a full socket instead of disconnecting.

    A ``send`` that would block returns 0 bytes written, which the writer
    already handles as a partial write: it waits until the socket drains.
    """
    writer = getattr(bus, "_writer", None)
    if writer is not None and hasattr(writer, "sock"):
        writer.sock = _FullSocketTolerant(writer.sock)
    else:
        logger.warning("dbus-fast's writer has changed; a full socket may drop the connection")
