"""Watching library folders with watchdog (inotify), turning events into frozen records.

The handler runs in watchdog's threads, so it does as little as it can: it
drops what a name alone rules out (hidden names, the store folder, partial
downloads, files that are not photos, excluded folders) and passes one frozen
:class:`PathChange` to the sink. It never stats or opens a file; deciding
whether a file is complete, or lies in a cluster tree, is the indexer's job.

A rename across the filter's border becomes what it means for the library:
``x.jpg.part -> x.jpg`` is a photo created, ``a.jpg -> .trash/a.jpg`` a photo
deleted.

On Linux the observer is the repaired one of
:mod:`imagecluster.daemon._watch_repair`.
"""

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEventHandler,
)

from .._exceptions import LibraryNotFound
from ..images import is_image_name
from ._watch_repair import new_observer

__all__ = ["PARTIAL_SUFFIXES", "LibraryWatcher", "PathChange", "is_ignored_name"]

logger = logging.getLogger(__name__)

#: File name endings of downloads and copies still in progress.
PARTIAL_SUFFIXES = (".part", ".crdownload", ".tmp", ".download")

# Event types asked of inotify: no opened/closed/directory-modified traffic.
_EVENT_FILTER = [
    FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileAttribEvent, FileDeletedEvent,
    DirDeletedEvent, FileMovedEvent, DirMovedEvent,
]
_KINDS = ("created", "modified", "deleted", "moved")


@dataclass(frozen=True)
class PathChange:
    """One change below a watched library, as seen by the watcher.

    Attributes
    ----------
    kind : {"created", "modified", "deleted", "moved"}
        What happened; a changed modification time counts as "modified".
    path : Path
        Absolute path of the file or folder (the source, for "moved").
    dest : Path or None, default=None
        Where it went, for "moved".
    is_directory : bool, default=False
        Whether it is a folder.
    """

    kind: str
    path: Path
    dest: Path | None = None
    is_directory: bool = False


def is_ignored_name(name, *, is_directory=False):
    """Whether a file or folder name alone rules it out of indexing.

    Hidden names (which include the store folder ``.imagecluster``), partial
    downloads and, for files, names that are not photos.
    """
    if name.startswith("."):
        return True
    if is_directory:
        return False
    return name.lower().endswith(PARTIAL_SUFFIXES) or not is_image_name(name)


class _Handler(FileSystemEventHandler):
    """Filters one root's events by name and hands frozen records to the sink."""

    def __init__(self, root, sink, exclude):
        super().__init__()
        self._root = root
        self._prefix = root.rstrip(os.sep) + os.sep
        self._sink = sink
        self._exclude = exclude

    def dispatch(self, event):
        try:
            change = self._translate(event)
            if change is not None:
                self._sink(change)
        except Exception:  # a watchdog thread must survive a sink that failed (e.g. a closed loop)
            logger.debug("dropped %r", event, exc_info=True)

    def _translate(self, event):
        kind = event.event_type
        is_dir = event.is_directory
        if kind == "attrib":  # e.g. touch: a new modification time
            kind = "modified"
        if kind not in _KINDS or (kind == "modified" and is_dir):
            return None
        src = os.fsdecode(event.src_path)
        if kind == "moved":
            dest = os.fsdecode(event.dest_path)
            src_ok, dest_ok = self._wanted(src, is_dir), self._wanted(dest, is_dir)
            if src_ok and dest_ok:
                return PathChange("moved", Path(src), Path(dest), is_dir)
            if dest_ok:
                return PathChange("created", Path(dest), None, is_dir)
            return PathChange("deleted", Path(src), None, is_dir) if src_ok else None
        if kind == "deleted" and is_dir and src.rstrip(os.sep) == self._root:
            return PathChange("deleted", Path(src), None, True)  # the library itself went away
        return PathChange(kind, Path(src), None, is_dir) if self._wanted(src, is_dir) else None

    def _wanted(self, path, is_dir):
        if not path.startswith(self._prefix):
            return False
        for ex in self._exclude:
            if path == ex or path.startswith(ex + os.sep):
                return False
        parts = path[len(self._prefix):].split(os.sep)
        if any(p.startswith(".") for p in parts[:-1]):
            return False
        return not is_ignored_name(parts[-1], is_directory=is_dir)


class LibraryWatcher:
    """Watches library folders recursively and passes each relevant change to a sink.

    Parameters
    ----------
    roots : iterable of path-like
        Library folders to watch once started.
    sink : callable
        ``sink(change)`` with a :class:`PathChange`, called from watchdog's
        threads: it must be thread-safe and quick (the indexer passes a
        function that does ``loop.call_soon_threadsafe(...)``).
    exclude : iterable of path-like, default=()
        Folders whose changes are dropped (e.g. a configured tree folder).
    """

    def __init__(self, roots, sink: Callable[[PathChange], None], *, exclude: Iterable = ()):
        self._roots = [os.path.abspath(os.fspath(r)) for r in roots]
        self._sink = sink
        self._exclude = tuple(os.path.abspath(os.fspath(e)) for e in exclude)
        self._lock = threading.Lock()
        self._observer = None
        self._watches = {}
        self._stopped = False

    @property
    def watched(self):
        """The roots being watched now, as a tuple of Path."""
        with self._lock:
            return tuple(Path(r) for r in self._watches)

    def start(self):
        """Start the observer and watch every root given; roots that are missing are logged and skipped."""
        with self._lock:
            if self._observer is not None or self._stopped:
                raise RuntimeError("a LibraryWatcher can be started only once")
            self._observer = new_observer()
            self._observer.start()
        for root in self._roots:
            try:
                self.watch(root)
            except OSError as exc:
                logger.warning("not watching %s: %s", root, exc)

    def stop(self):
        """Stop watching everything and join watchdog's threads."""
        with self._lock:
            observer, self._observer, self._stopped = self._observer, None, True
            self._watches.clear()
        if observer is not None:
            try:
                observer.stop()
            finally:
                observer.join()

    def watch(self, root):
        """Watch one more library folder (or watch it afresh, after it came back).

        Raises
        ------
        LibraryNotFound
            The folder does not exist.
        OSError
            It cannot be watched (e.g. the inotify watch limit is reached).
        """
        root = os.path.abspath(os.fspath(root))
        with self._lock:
            if self._observer is None:
                raise RuntimeError("start the LibraryWatcher before watching")
            old = self._watches.pop(root, None)
            if old is not None:
                self._observer.unschedule(old)
            if not os.path.isdir(root):
                raise LibraryNotFound(f"cannot watch {root}: no such folder")
            handler = _Handler(root, self._sink, self._exclude)
            try:
                watch = self._observer.schedule(handler, root, recursive=True, event_filter=_EVENT_FILTER)
            except FileNotFoundError as exc:
                raise LibraryNotFound(f"cannot watch {root}: no such folder") from exc
            self._watches[root] = watch
        logger.debug("watching %s", root)

    def unwatch(self, root):
        """Stop watching one library folder; nothing happens if it was not watched."""
        root = os.path.abspath(os.fspath(root))
        with self._lock:
            watch = self._watches.pop(root, None)
            if watch is not None and self._observer is not None:
                self._observer.unschedule(watch)
