"""Progress of long fingerprinting runs on stderr: a bar on a terminal, plain lines in a log.

On a terminal one line is redrawn in place (photos done/total, photos per
second, time left) and wiped when the work ends, so the summary that follows
stands alone. Elsewhere (a pipe, a log file, the journal) a plain line is
written every ``interval`` seconds, so a short run stays silent and a long
one shows it is alive. Both are driven by the caller's updates only: no
thread, nothing is written between two updates.
"""

import shutil
import sys
import time

__all__ = ["ProgressBar", "format_seconds"]

_BAR_WIDTH = 20
_REDRAW_EVERY = 0.1  # seconds between two redraws on a terminal


def format_seconds(seconds):
    """``seconds`` in words for a person: ``"<1 s"``, ``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = int(round(seconds))
    if seconds < 1:
        return "<1 s"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


class ProgressBar:
    """Callable given to :func:`index_library` as ``progress``: ``bar(total)`` returns ``advance(n)``.

    Parameters
    ----------
    description : str
        What is counted, e.g. ``"fingerprinting holiday"``.
    enabled : bool, default=True
        False shows nothing (``--quiet``).
    stream : file, default=None
        Where to write; None means ``sys.stderr`` at the first update.
    interval : float, default=10.0
        Seconds between two plain lines when ``stream`` is not a terminal.
    clock : callable, default=time.monotonic
        The time in seconds (tests pass their own).
    """

    def __init__(self, description, *, enabled=True, stream=None, interval=10.0, clock=time.monotonic):
        self._description = description
        self._enabled = enabled
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._total = 0
        self._done = 0
        self._start = self._first = None  # when counting began; when the first photos were done
        self._first_done = 0
        self._last_write = None
        self._drawn = False
        self._tty = False

    def __call__(self, total):
        """Start counting ``total`` photos; returns ``advance(n)`` for n photos just finished."""
        if not self._enabled or total <= 0:
            return lambda done: None
        self._stream = self._stream if self._stream is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._total, self._done = total, 0
        self._start = self._last_write = self._clock()
        if self._tty:
            self._draw()  # at once: loading the model takes seconds before the first photo is done
        return self._advance

    def update(self, done, total):
        """Set the count to ``done`` of ``total`` (for sources that report totals, like the daemon)."""
        if not self._enabled or total <= 0:
            return
        if self._start is None:
            self(total)
        self._total = total  # more photos may arrive meanwhile
        self._advance(done - self._done)

    def _advance(self, n):
        self._done = max(0, min(self._total, self._done + n))
        now = self._clock()
        if self._first is None and self._done > 0:
            self._first, self._first_done = now, self._done
        due = _REDRAW_EVERY if self._tty else self._interval
        if now - self._last_write >= due or (self._tty and self._done == self._total):
            self._last_write = now
            if self._tty:
                self._draw()
            else:
                self._write(f"imagecluster: {self._description}: {self._figures()}\n")

    def _figures(self):
        """``"62/138 photos, 12.1 photos/s, 6 s left"``; rate and time left once they can be told."""
        text = f"{self._done}/{self._total} photos"
        now = self._clock()
        # The rate counts from the first finished photos, so the model's loading (seconds, before
        # any photo is done) does not make the time left look ten times too long.
        if self._first is None or now <= self._first or self._done <= self._first_done:
            return text
        rate = (self._done - self._first_done) / (now - self._first)
        left = (self._total - self._done) / rate
        return f"{text}, {rate:.1f} photos/s, {format_seconds(left)} left"

    def _draw(self):
        filled = _BAR_WIDTH * self._done // self._total
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        percent, figures = f"{100 * self._done // self._total:3d}%", self._figures()
        width = shutil.get_terminal_size((80, 24)).columns - 1
        # On a narrow terminal the bar goes first, then the description shrinks; the figures stay.
        for tail in (f" {percent} [{bar}] {figures}", f" {percent} {figures}"):
            room = width - len(tail)
            if room >= 10:
                break
        description = self._description
        if len(description) > room:
            description = description[:max(room - 1, 0)] + "~"
        self._write("\r" + (description + tail)[:width] + "\x1b[K")
        self._drawn = True

    def _write(self, text):
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the work
            self._enabled = False

    def close(self):
        """Wipe the bar from the terminal (the summary follows); nothing to do for plain lines."""
        if self._drawn:
            self._drawn = False
            self._write("\r\x1b[K")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
