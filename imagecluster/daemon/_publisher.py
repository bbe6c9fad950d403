"""Progress signals a D-Bus client can keep up with: merged, and sent at most so often.

Indexing a burst of photos changes ``Indexed`` and ``Pending`` hundreds of
times a second, and a large library's pair search reports every tile. A
client (a photo manager's status bar) wants the values now and then, always
the latest, and the last one of a task so it knows the task ended. Either
kind of change can come from any thread; the signals are sent from the
event loop.
"""

import asyncio
import contextlib
import logging
import math
import time

__all__ = ["ThrottledPublisher"]

logger = logging.getLogger(__name__)


class ThrottledPublisher:
    """Publishes the current values at most once per ``min_interval`` seconds.

    Parameters
    ----------
    read : callable
        ``read()`` gives the values to publish now, as a dict (a property's
        name -> its value); called in the event loop.
    publish : callable
        ``publish(changed, current)``, called in the event loop with the
        values that changed since the last time and all current ones.
        Changes in between are merged, never queued.
    min_interval : float
        Seconds between two calls of ``publish``, and between two reports of
        one :meth:`progress_callback`.
    """

    def __init__(self, read, publish, min_interval):
        self._read = read
        self._publish = publish
        self.min_interval = min_interval
        self._loop = None
        self._handle = None
        self._last = -math.inf
        self._published = {}
        self._closed = False

    def start(self):
        """Begin, in the event loop: the values now count as published."""
        self._loop = asyncio.get_running_loop()
        self._published = self._read()

    def close(self):
        """Publish nothing more; a publication waiting for its turn is dropped."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def notify(self):
        """The values may have changed; safe to call from any thread."""
        loop = self._loop
        if loop is None or self._closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._schedule)

    def progress_callback(self, send):
        """A ``progress(done, total)`` callback for a worker thread that calls ``send(done, total)`` in the loop.

        At most once per ``min_interval`` seconds, and always the last
        report (``done == total``), so a client can show a bar and know it
        ended.
        """
        loop, last = self._loop, [-math.inf]

        def report(done, total):
            now = time.monotonic()
            if (done < total and now - last[0] < self.min_interval) or loop is None or self._closed:
                return
            last[0] = now
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(send, int(done), int(total))

        return report

    def _schedule(self):
        if self._handle is not None or self._closed:
            return
        delay = max(0.0, self._last + self.min_interval - self._loop.time())
        self._handle = self._loop.call_later(delay, self._flush)

    def _flush(self):
        self._handle = None
        self._last = self._loop.time()
        try:
            current = self._read()
            changed = {k: v for k, v in current.items() if self._published.get(k) != v}
            self._published = current
            if changed:
                self._publish(changed, current)
        except Exception:
            logger.exception("cannot publish the progress")
