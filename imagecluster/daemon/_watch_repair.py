"""The repaired inotify observer the library watcher uses on Linux (:mod:`imagecluster.daemon._watch`).

On Linux the watcher uses watchdog's inotify observer with one repair:
watchdog 7.1 loses track of its watches when two watched folders are swapped
with ``renameat2(RENAME_EXCHANGE)`` (as :func:`imagecluster.write_tree`
replaces a cluster tree inside a library), and its reader thread then dies
of a KeyError, silently ending all watching. Such a stale watch is now
forgotten instead, and a folder already watched is not added again (watchdog
warns about it, which kills the reader thread where warnings are errors).
Folders of a cluster tree (below a :data:`~imagecluster.images.TREE_MARKER`)
get no watch at all: a tree of 3,000 clusters would take 3,000 of the user's
inotify watches at every Cluster call. Nor are they walked when the watches
are added: watchdog lists every folder below a library, and a tree of
137,000 clusters (1,000,000 photos) made that 27.7 s of the daemon's
start-up. And a tree moved or swapped into place is not walked: watchdog
queues an event for everything inside a folder moved in (25,929 events and
1.7 s of CPU for a tree of 20,000 photos, each of them handed on to the
indexer); for a tree only the move itself is queued.

The repair subclasses watchdog's private ``InotifyWatchGroup``, copies
``InotifyWatchGroup._add_all_callbacks`` (with the walk pruned at trees),
``InotifyEmitter.on_thread_start`` and, for a tree moved in, the three events
``InotifyEmitter.build_and_queue_event`` queues for a move. The lost watches
are the kind of stale-watch KeyError of
https://github.com/gorakhargosh/watchdog/issues/600 (fixed there for a
deleted folder, not for ``RENAME_EXCHANGE``; see also
https://github.com/gorakhargosh/watchdog/issues/117). :func:`patch_problem`
checks the shape of everything the repair relies on (signatures, the
watch group's fields, what ``on_thread_start`` assigns, the events queued for
a move), not only names; elsewhere, or when watchdog's internals differ,
:func:`new_observer` gives the stock observer and logs a warning (once, when
the watcher starts).
"""

import dataclasses
import inspect
import logging
import os
import re

from watchdog.events import DirCreatedEvent, DirModifiedEvent, DirMovedEvent
from watchdog.observers import Observer

try:  # the inotify repair described above
    from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
    from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyFD
    from watchdog.observers.inotify_move_event_grouper import PathedInotifyEvent
except ImportError:  # not Linux, or another watchdog
    InotifyWatchGroup = None

from ..images import TREE_MARKER
from ._folder import in_cluster_tree

__all__ = ["PATCH_PROBLEM", "new_observer", "patch_problem"]

logger = logging.getLogger(__name__)


def _parameters(function):
    return list(inspect.signature(function).parameters)


def patch_problem():
    """Why the inotify repair cannot apply to the installed watchdog, or None when it does.

    Returns
    -------
    str or None
        What differs from the private API the repair was written for
        (watchdog 7.1), e.g. a changed signature.
    """
    if InotifyWatchGroup is None:
        return "watchdog's inotify observer is not available here (not Linux)"
    expected = [
        (InotifyWatchGroup, "__init__",
         ["self", "_inotify_fd", "path", "event_mask", "is_recursive", "follow_symlink"]),
        (InotifyWatchGroup, "_add_callback", ["self", "path"]),
        (InotifyWatchGroup, "_add_all_callbacks", ["self", "path"]),
        (InotifyWatchGroup, "_remove_watch_internally", ["self", "wd"]),
        (InotifyEmitter, "on_thread_start", ["self"]),
        (InotifyEmitter, "get_event_mask_from_filter", ["self"]),
        (InotifyEmitter, "build_and_queue_event", ["self", "event", "full_events"]),
        (InotifyFD, "__init__", ["self"]),
        (BaseObserver, "__init__", ["self", "emitter_class", "timeout", "kwargs"]),
    ]
    try:
        for owner, name, names in expected:
            function = getattr(owner, name)
            if _parameters(function) != names:
                return f"{owner.__name__}.{name}{inspect.signature(function)} is not ({', '.join(names)})"
        if "inotify_fd" not in _parameters(InotifyEmitter.__init__):
            return "InotifyEmitter takes no inotify_fd"
        fields = {f.name for f in dataclasses.fields(InotifyWatchGroup)}
        if not {"_active_callbacks_by_path", "_active_callbacks_by_watch"} <= fields:
            return "InotifyWatchGroup keeps its watches in other fields"
        assigned = re.findall(r"self\.(\w+)\s*=", inspect.getsource(InotifyEmitter.on_thread_start))
        if assigned != ["_inotify"]:  # the copy below sets only that
            return f"InotifyEmitter.on_thread_start now sets {assigned}"
        calls = re.findall(r"(os\.walk|self\._add_callback)\(", inspect.getsource(InotifyWatchGroup._add_all_callbacks))
        if calls != ["self._add_callback", "os.walk", "self._add_callback"]:  # what the pruned copy does
            return f"InotifyWatchGroup._add_all_callbacks now calls {calls}"
        queued = re.findall(r"self\.queue_event\((\w+)\(", inspect.getsource(InotifyEmitter.build_and_queue_event))
        if queued[:3] != ["cls", "DirModifiedEvent", "DirModifiedEvent"]:  # what _queue_tree_move queues
            return f"InotifyEmitter.build_and_queue_event now queues {queued[:3]} for a move"
    except (TypeError, ValueError, OSError) as exc:  # no signature or source to read
        return f"watchdog's inotify internals cannot be inspected ({exc})"
    return None


#: Why the repair is not used, or None (computed once, at import).
PATCH_PROBLEM = patch_problem()

if PATCH_PROBLEM is None:

    def _is_tree_folder(path, root):
        """Whether the folder ``path`` (bytes, below the watched ``root``) is or lies in a cluster tree."""
        rel = os.path.relpath(os.fsdecode(path), os.fsdecode(root))
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            return False
        return in_cluster_tree(os.fsdecode(root), [] if rel == os.curdir else rel.split(os.sep))

    class _TolerantWatchGroup(InotifyWatchGroup):
        def _add_callback(self, path):
            # A folder made with subfolders is walked, then its subfolders' creations come in:
            # adding them again only makes watchdog warn (fatal where warnings are errors).
            # A cluster tree is never watched: it is never indexed, and each Cluster call
            # would otherwise bring a watch per cluster folder and an event per symlink.
            if path not in self._active_callbacks_by_path and not _is_tree_folder(path, self.path):
                super()._add_callback(path)

        def _add_all_callbacks(self, path):
            # As watchdog's (a watch on path and, recursively, on each folder below it), but a
            # cluster tree is not walked: listing its folders only to refuse each of them took
            # 27.7 s of a start-up with a tree of 137,000 clusters.
            if _is_tree_folder(path, self.path):
                return
            is_dir = os.path.isdir(path)
            self._add_callback(path)
            if is_dir and self.is_recursive:
                for root, dirnames, _ in os.walk(path, followlinks=self.follow_symlink):
                    kept = []
                    for dirname in dirnames:
                        full_path = os.path.join(root, dirname)
                        if not self.follow_symlink and os.path.islink(full_path):
                            continue
                        if os.path.lexists(os.path.join(full_path, os.fsencode(TREE_MARKER))):
                            continue  # a tree: neither watched nor walked
                        self._add_callback(full_path)
                        kept.append(dirname)
                    dirnames[:] = kept

        def _remove_watch_internally(self, wd):
            path = self._active_callbacks_by_watch.pop(wd, None)
            if path is not None and self._active_callbacks_by_path.get(path) == wd:
                del self._active_callbacks_by_path[path]

    class _Emitter(InotifyEmitter):
        def on_thread_start(self):  # as InotifyEmitter's, with the tolerant watch group
            self._inotify = _TolerantWatchGroup(
                self._inotify_fd, os.fsencode(self.watch.path), is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(), follow_symlink=self.watch.follow_symlink,
            )

        def build_and_queue_event(self, event, *, full_events=False):
            # A cluster tree moved or swapped into place (write_tree's RENAME_EXCHANGE) is
            # walked by watchdog, which queues an event per symlink in it (25,929 for a tree
            # of 20,000 photos, 1.7 s of CPU, and each one reached the indexer). The tree is
            # never indexed: only the move itself is queued, as watchdog queues it.
            if full_events or not self._queue_tree_move(event):
                super().build_and_queue_event(event, full_events=full_events)

        def _queue_tree_move(self, event):
            if isinstance(event, PathedInotifyEvent):
                moved_in = event.ev.is_moved_to and event.ev.is_directory
                if not (moved_in and _is_tree_folder(event.path, self.watch.path)):
                    return False
                path = self._decode_path(event.path)
                self.queue_event(DirCreatedEvent(path))
                self.queue_event(DirModifiedEvent(os.path.dirname(path)))
                return True
            move_from, move_to = event
            if not (move_from.ev.is_directory and _is_tree_folder(move_to.path, self.watch.path)):
                return False
            src, dest = self._decode_path(move_from.path), self._decode_path(move_to.path)
            self.queue_event(DirMovedEvent(src, dest))
            self.queue_event(DirModifiedEvent(os.path.dirname(src)))
            self.queue_event(DirModifiedEvent(os.path.dirname(dest)))
            return True

    class _Observer(BaseObserver):
        def __init__(self):
            self._reader = InotifyFD()  # our own inotify instance and reader thread, stopped with us
            self._reader.start()
            super().__init__(_Emitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._reader)

        def on_thread_stop(self):
            try:
                super().on_thread_stop()
            finally:
                self._reader.stop()
                self._reader.join()

else:  # pragma: no cover - other platforms
    _Observer = Observer


def new_observer():
    """The repaired inotify observer, or watchdog's own with a warning where the repair cannot apply."""
    if PATCH_PROBLEM is None:
        return _Observer()
    if InotifyWatchGroup is not None:  # Linux, and watchdog changed
        logger.warning("watching with watchdog's stock inotify observer, without imagecluster's repair (%s); "
                       "a cluster tree replaced inside a library may stop the watching", PATCH_PROBLEM)
    return Observer()
