"""The two repairs of third-party internals: active, checked by shape, and a plain fallback with a warning.

The bugs themselves are tested by behaviour elsewhere, and those tests fail
if a repair stops working: ``test_watch.py`` swaps watched folders with
``renameat2(RENAME_EXCHANGE)`` (watchdog's reader thread died of it),
``test_bus_repair.py`` fills the bus socket (dbus-fast dropped the
connection). Here: the repair is really the one in use, and a change of the
private API's shape (a signature, not a name) is noticed and leads to the
stock behaviour with a logged warning, never to a crash.
"""

import asyncio
import logging
import queue

import pytest
from dbus_fast.aio import MessageBus
from watchdog.events import DirModifiedEvent
from watchdog.observers import Observer
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup

from imagecluster import write_tree
from imagecluster.daemon import _bus_repair, _watch_repair
from imagecluster.daemon._watch import LibraryWatcher


def test_the_inotify_repair_is_active(tmp_path):
    assert _watch_repair.PATCH_PROBLEM is None and _watch_repair.patch_problem() is None
    watcher = LibraryWatcher([tmp_path], print)
    watcher.start()
    try:
        observer = watcher._observer
        assert isinstance(observer, _watch_repair._Observer)
        (emitter,) = observer.emitters
        assert type(emitter._inotify).__name__ == "_TolerantWatchGroup"
        assert isinstance(emitter._inotify, InotifyWatchGroup)
    finally:
        watcher.stop()


@pytest.mark.parametrize("owner, name, replacement", [
    (InotifyWatchGroup, "_remove_watch_internally", lambda self, wd, force: None),
    (InotifyWatchGroup, "_add_callback", lambda self, path, mask: None),
    (InotifyWatchGroup, "_add_all_callbacks", lambda self, path, recursive: None),
    (InotifyEmitter, "get_event_mask_from_filter", lambda self, events: 0),
])
def test_a_changed_watchdog_signature_is_noticed(monkeypatch, owner, name, replacement):
    monkeypatch.setattr(owner, name, replacement)
    problem = _watch_repair.patch_problem()
    assert problem is not None and name in problem


def test_a_changed_on_thread_start_is_noticed(monkeypatch):
    def on_thread_start(self):
        self._inotify = None
        self._buffer = None  # upstream started doing more here: our copy would not

    monkeypatch.setattr(InotifyEmitter, "on_thread_start", on_thread_start)
    assert "_buffer" in _watch_repair.patch_problem()


def test_a_changed_add_all_callbacks_is_noticed(monkeypatch):
    def _add_all_callbacks(self, path):
        for root in self._walk(path):  # upstream walks another way now: the pruned copy would differ
            self._add_callback(root)

    monkeypatch.setattr(InotifyWatchGroup, "_add_all_callbacks", _add_all_callbacks)
    assert "_add_all_callbacks" in _watch_repair.patch_problem()


def test_stock_watchdog_walks_every_folder_of_a_tree_when_it_starts_watching(tmp_path, monkeypatch):
    """Why the watch group's walk is pruned: watchdog lists every cluster folder only to refuse it."""
    lib = tmp_path / "lib"
    (lib / "2024" / "trip").mkdir(parents=True)
    photos = [tmp_path / f"p{k}.jpg" for k in range(400)]
    write_tree([photos[k:k + 2] for k in range(0, 400, 2)], lib / "clusters")  # 200 cluster folders
    looked_at, watched = {}, {}
    for variant in ("stock", "repaired"):
        if variant == "stock":
            stock = InotifyWatchGroup._add_all_callbacks
            monkeypatch.setattr(_watch_repair._TolerantWatchGroup, "_add_all_callbacks", stock)
        seen, is_tree_folder = [], _watch_repair._is_tree_folder

        def counted(path, root, seen=seen, is_tree_folder=is_tree_folder):
            seen.append(path)
            return is_tree_folder(path, root)

        monkeypatch.setattr(_watch_repair, "_is_tree_folder", counted)
        watcher = LibraryWatcher([lib], print)
        watcher.start()
        try:
            (emitter,) = watcher._observer.emitters
            watched[variant] = sorted(emitter._inotify._active_callbacks_by_path)
        finally:
            watcher.stop()
        monkeypatch.undo()
        looked_at[variant] = len(seen)
    assert watched["stock"] == watched["repaired"]  # the same watches: the library's own folders only
    assert len(watched["repaired"]) == 3
    assert looked_at["stock"] >= 200 and looked_at["repaired"] <= 4, looked_at


def test_where_the_repair_cannot_apply_the_stock_observer_watches_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(_watch_repair, "PATCH_PROBLEM", "InotifyWatchGroup._add_callback changed")
    watcher = LibraryWatcher([tmp_path], print)
    with caplog.at_level(logging.WARNING, "imagecluster"):
        watcher.start()
    try:
        assert type(watcher._observer) is Observer and watcher.watched == (tmp_path,)
    finally:
        watcher.stop()
    assert "without imagecluster's repair (InotifyWatchGroup._add_callback changed)" in caplog.text


def test_a_changed_build_and_queue_event_is_noticed(monkeypatch):
    def build_and_queue_event(self, event, *, full_events=False):
        self.queue_event(DirModifiedEvent("/"))  # upstream queues a move otherwise now

    monkeypatch.setattr(InotifyEmitter, "build_and_queue_event", build_and_queue_event)
    assert "build_and_queue_event" in _watch_repair.patch_problem()


def test_stock_watchdog_still_walks_a_tree_swapped_in(tmp_path, monkeypatch):
    """Why the emitter's part of the repair exists: without it, one change per link reaches the sink."""
    lib = tmp_path / "lib"
    lib.mkdir()
    photos = [tmp_path / f"p{k}.jpg" for k in range(100)]
    write_tree([photos[k:k + 2] for k in range(0, 100, 2)], lib / "clusters")
    counted = {"stock": 0, "repaired": 0}
    for variant in ("stock", "repaired"):
        # Stock watchdog's reader thread dies of the exchange (the other repair), so
        # "stock" here is the repaired observer with watchdog's own build_and_queue_event.
        if variant == "stock":
            monkeypatch.setattr(_watch_repair._Emitter, "_queue_tree_move", lambda self, event: False)
        else:
            monkeypatch.undo()
        changes = queue.Queue()
        watcher = LibraryWatcher([lib], changes.put)
        watcher.start()
        try:
            write_tree([photos[k:k + 4] for k in range(0, 100, 4)] + [[tmp_path / variant]], lib / "clusters")
            while True:
                try:
                    changes.get(timeout=1.5)
                except queue.Empty:
                    break
                counted[variant] += 1
        finally:
            watcher.stop()
    assert counted["stock"] >= 100 and counted["repaired"] <= 12, counted


def test_the_writer_repair_is_active(session_bus):
    async def main():
        bus = await MessageBus(bus_address=session_bus.address).connect()
        try:
            assert _bus_repair.patch_problem(bus) is None
            assert _bus_repair.tolerate_full_socket(bus) is True
            assert isinstance(bus._writer.sock, _bus_repair._FullSocketTolerant)
            assert _bus_repair.tolerate_full_socket(bus) and not isinstance(bus._writer.sock._sock,
                                                                              _bus_repair._FullSocketTolerant)
            reply = await bus.introspect("org.freedesktop.DBus", "/org/freedesktop/DBus")  # still talks
            assert reply.interfaces
        finally:
            bus.disconnect()

    asyncio.run(main())


class _OtherWriter:
    """A writer of another shape: buffer_message grew an argument."""

    def __init__(self, bus):
        self.sock = object()

    def write_callback(self, remove_writer=True):
        pass

    def buffer_message(self, msg, future=None, priority=0):
        pass

    def schedule_write(self, msg=None, future=None):
        pass


class _Bus:
    def __init__(self, writer):
        if writer is not None:
            self._writer = writer


@pytest.mark.parametrize("bus, problem", [
    (_Bus(_OtherWriter(None)), "buffer_message"),
    (_Bus(None), "no _writer"),
])
def test_a_changed_writer_is_left_alone_with_a_warning(bus, problem, caplog):
    with caplog.at_level(logging.WARNING, "imagecluster"):
        assert _bus_repair.tolerate_full_socket(bus) is False
    assert problem in caplog.text and "a full socket may drop the connection" in caplog.text
    assert getattr(bus, "_writer", None) is None or type(bus._writer.sock) is object
