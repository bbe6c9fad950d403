"""The daemon's log lines, one format for the daemon and its inference worker.

On a terminal: ``imagecluster daemon: [warning: ]message``. Under systemd,
whose journal already stamps time, process and unit: ``<priority>message``
(sd-daemon(3) prefixes), so ``journalctl -p warning`` works. The worker is a
spawned process writing to the same stderr; it configures itself the same way.
"""

import logging
import os
import sys

__all__ = ["configure_logging"]

# sd-daemon(3) priority prefixes: the journal files each line under its level.
_JOURNAL_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _Formatter(logging.Formatter):
    """``imagecluster daemon: [level: ]message`` on a terminal; ``<priority>message`` for the journal."""

    def __init__(self, journal):
        super().__init__("%(message)s")
        self.journal = journal

    def format(self, record):
        text = super().format(record)
        if self.journal:
            return f"<{_JOURNAL_PRIORITIES.get(record.levelno, 6)}>{text}"
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"imagecluster daemon: {level}{text}"


def configure_logging(verbose=0, *, stream=None):
    """Log to stderr: INFO and up (imagecluster's DEBUG too with ``verbose``), journal priorities under systemd."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(journal=_is_journal(stream)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("imagecluster").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _is_journal(stream):
    """Whether ``stream`` is the journal's stream (systemd sets ``JOURNAL_STREAM=dev:inode``)."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return os.environ.get("JOURNAL_STREAM", "") == f"{st.st_dev}:{st.st_ino}"
