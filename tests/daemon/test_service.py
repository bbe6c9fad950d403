"""The D-Bus interface's logic without a bus daemon: a stand-in indexer, a recording bus.

The methods are called as the bus calls them (the function behind
``@dbus_method``), and signals go to a stand-in bus that records them. The
stores are real :class:`imagecluster.Store` objects holding made-up
fingerprints, and the trees are really written.
"""

import asyncio
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dbus_fast import DBusError
from dbus_fast.service import ServiceInterface

from imagecluster import Store
from imagecluster._exceptions import (
    InvalidParameter,
    LibraryNotFound,
    ModelError,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
    StoreLocked,
    TreeError,
)
from imagecluster.daemon._config import Config
from imagecluster.daemon._service import ERROR_PREFIX, INTERFACE, ImageClusterInterface, dbus_error

# Two bursts and a loner: a1..a3 near one direction, b1..b2 near another.
PHOTOS = {"a1.jpg": (0, 0.0), "2024/a2.jpg": (0, 0.05), "2024/a3.jpg": (0, 0.1),
          "b1.jpg": (1, 0.0), "b2.jpg": (1, 0.05), "c.jpg": (2, 0.0)}
DIM = 8


def vector(axis, tilt):
    v = np.zeros(DIM, np.float32)
    v[axis], v[axis + 3] = 1.0, tilt
    return v / np.linalg.norm(v)


class StandInIndexer:
    """Just enough of the Indexer for the interface: real stores, no watching, no model."""

    model_name = "lite0"

    def __init__(self, libraries):
        self.libraries = tuple(libraries)
        self.available_libraries = [lib for lib in self.libraries if lib.is_dir()]
        self.indexed, self.pending, self.state = 0, 0, "idle"
        self.fingerprint_error = None
        self.idle = asyncio.Event()
        self.idle.set()

    def store(self, library):
        return Store(library)

    def resolve(self, path):
        real = Path(os.path.realpath(path))
        for library in self.libraries:
            if real.is_relative_to(library):
                if not real.is_file():
                    raise PhotoNotFound(f"no photo {path}")
                return library, real.relative_to(library).as_posix()
        raise NotInLibrary(f"{path} is outside every library")

    async def fingerprint(self, path):
        if self.fingerprint_error is not None:
            raise self.fingerprint_error
        library, rel = self.resolve(path)
        paths, fps = self.store(library).fingerprints(self.model_name, [rel])
        if not paths:
            raise NotAnImage(f"{path} is not an image")
        return fps[0]

    async def wait_idle(self, timeout=None):
        await self.idle.wait()


class RecordingBus:
    """Stands in for the message bus: records the signals the interface sends."""

    def __init__(self):
        self.signals = []

    def _interface_signal_notify(self, interface, interface_name, member, signature, body, fds=()):
        self.signals.append((member, body))

    def members(self, name):
        return [body for member, body in self.signals if member == name]


@pytest.fixture
def library(tmp_path):
    lib = tmp_path / "photos"
    items = []
    for rel, (axis, tilt) in PHOTOS.items():
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_bytes(b"stand-in photo")
        items.append((rel, 14, 0, vector(axis, tilt)))
    Store(lib).put("lite0", items)
    return lib


@pytest.fixture
def make_service(library):
    """``make_service(**kwargs)`` -> (interface, indexer, bus), started, in the running loop."""

    def make(libraries=(library,), cluster_hook=None, **kwargs):
        indexer = StandInIndexer(libraries)
        config = Config(libraries=libraries, sim=0.8)
        iface = ImageClusterInterface(indexer, config, **kwargs)
        if cluster_hook is not None:  # the service's test seam, on this instance only
            iface._before_clustering = cluster_hook
        bus = RecordingBus()
        ServiceInterface._add_bus(iface, bus, lambda interface, method: None)
        iface.start()
        return iface, indexer, bus

    return make


async def call(iface, member, *args):
    """Run a method as the bus does for an incoming call."""
    return await getattr(type(iface), member).__wrapped__(iface, *args)


def run(coro_fn):
    return asyncio.run(coro_fn())


def error_name(excinfo):
    return excinfo.value.type.removeprefix(ERROR_PREFIX)


def test_members_and_signatures():
    iface = ImageClusterInterface(StandInIndexer([]), None)
    intro = iface.introspect()
    assert intro.name == INTERFACE
    methods = {m.name: ("".join(a.signature for a in m.in_args), "".join(a.signature for a in m.out_args))
               for m in intro.methods}
    assert methods == {
        "Cluster": ("d", "aas"), "ClusterLibrary": ("sd", "aas"), "WriteTree": ("sds", "su"),
        "Fingerprint": ("s", "ad"), "Similar": ("sd", "a(sd)"), "WaitIdle": ("d", "b"),
        "Gallery": ("s", "s"), "ClusterEvents": ("ddd", "a(sssddasaas)"),
    }
    props = {p.name: (p.signature, p.access.value) for p in intro.properties}
    assert props == {name: (sig, "read") for name, sig in [
        ("Libraries", "as"), ("Model", "s"), ("Indexed", "u"), ("Pending", "u"), ("State", "s"),
        ("Sim", "d"), ("Version", "s"),
    ]}
    signals = {s.name: "".join(a.signature for a in s.args) for s in intro.signals}
    assert signals == {"Progress": "uu", "ClustersWritten": "su", "Working": "ssuu"}


def test_cluster_returns_absolute_paths_largest_first_and_writes_the_tree(library, make_service):
    async def main():
        iface, _, bus = make_service()
        clusters = await call(iface, "Cluster", 0.9)
        expected = [[str(library / p) for p in ("2024/a2.jpg", "2024/a3.jpg", "a1.jpg")],
                    [str(library / p) for p in ("b1.jpg", "b2.jpg")]]
        assert clusters == expected
        tree = library / "clusters"
        assert sorted(p.relative_to(tree).as_posix() for p in tree.glob("*/*")) == [
            "cluster_with_2/cluster_0", "cluster_with_3/cluster_0"]
        assert os.readlink(tree / "cluster_with_2/cluster_0/b1.jpg") == str(library / "b1.jpg")
        marker = json.loads((tree / ".imagecluster-tree").read_text())
        assert (marker["sim"], marker["model"], marker["library"]) == (0.9, "lite0", str(library))
        assert bus.members("ClustersWritten") == [[str(tree), 2]]
        assert await call(iface, "ClusterLibrary", str(library) + "/", 0.9) == expected
        # The similar-pair search that the first Cluster needed said how far it got, and that it ended.
        await asyncio.sleep(0)  # the signals are sent from the loop, after the worker thread's call_soon
        work = bus.members("Working")
        assert work and work[-1] == [str(library), "pairs", 6, 6]
        assert all(0 <= done <= total == 6 for _, _, done, total in work)

    run(main)


def test_a_photo_gone_from_disk_is_never_answered_even_if_still_stored(library, make_service):
    os.unlink(library / "2024/a3.jpg")  # the indexer has not caught up with it yet
    os.unlink(library / "b2.jpg")

    async def main():
        iface, _, _ = make_service()
        clusters = await call(iface, "Cluster", 0.9)
        assert clusters == [[str(library / "2024/a2.jpg"), str(library / "a1.jpg")]]
        assert not any(p.name in ("a3.jpg", "b2.jpg") for p in (library / "clusters").rglob("*.jpg"))
        matches = await call(iface, "Similar", str(library / "a1.jpg"), 0.9)
        assert [Path(p).name for p, _ in matches] == ["a2.jpg"]

    run(main)


def test_every_library_is_clustered_on_its_own(tmp_path, library, make_service):
    other = tmp_path / "more"
    (other / "x").mkdir(parents=True)
    items = []
    for name in ("a9.jpg", "a8.jpg"):  # the same content as library's a-burst
        (other / "x" / name).write_bytes(b"stand-in photo")
        items.append((f"x/{name}", 14, 0, vector(0, 0.0)))
    Store(other).put("lite0", items)

    async def main():
        iface, _, bus = make_service(libraries=(library, other))
        clusters = await call(iface, "Cluster", 0.9)
        assert [len(c) for c in clusters] == [3, 2, 2]  # never one cluster of 5 across libraries
        assert sorted(tree for tree, _ in bus.members("ClustersWritten")) == sorted([
            str(library / "clusters"), str(other / "clusters")])

    run(main)


def test_write_tree_goes_where_asked_and_never_over_a_foreign_folder(tmp_path, library, make_service):
    async def main():
        iface, _, bus = make_service()
        out = tmp_path / "elsewhere" / "tree"
        assert await call(iface, "WriteTree", str(library), 0.9, str(out)) == [str(out), 2]
        assert (out / "cluster_with_3").is_dir() and not (library / "clusters").exists()
        foreign = tmp_path / "documents"
        foreign.mkdir()
        (foreign / "thesis.txt").write_text("keep me")
        with pytest.raises(DBusError) as excinfo:
            await call(iface, "WriteTree", str(library), 0.9, str(foreign))
        assert error_name(excinfo) == "NotOurTree"
        assert os.listdir(foreign) == ["thesis.txt"]
        assert bus.members("ClustersWritten") == [[str(out), 2]]

    run(main)


def test_fingerprint_and_similar(library, make_service):
    async def main():
        iface, _, _ = make_service()
        fp = await call(iface, "Fingerprint", str(library / "b1.jpg"))
        assert isinstance(fp, list) and all(isinstance(x, float) for x in fp)
        assert math.isclose(np.linalg.norm(fp), 1.0, rel_tol=1e-3)
        matches = await call(iface, "Similar", str(library / "a1.jpg"), 0.9)
        assert [Path(p).name for p, _ in matches] == ["a2.jpg", "a3.jpg"]  # itself left out, best first
        assert matches[0][1] >= matches[1][1] >= 0.9
        assert await call(iface, "Similar", str(library / "c.jpg"), 0.9) == []

    run(main)


def test_similar_finds_a_new_photo_without_saving_the_graph_each_time(library, make_service):
    """A new photo is in the graph at the next Similar; the graph file is written at stop, not per call.

    (Saving a 100,000-photo graph took longer than the search it followed.)
    """
    graph_file = Store(library).folder / "graph-lite0.npz"

    async def main():
        iface, _, _ = make_service()
        assert [Path(p).name for p, _ in await call(iface, "Similar", str(library / "b1.jpg"), 0.9)] == ["b2.jpg"]
        (library / "b3.jpg").write_bytes(b"stand-in photo")
        Store(library).put("lite0", [("b3.jpg", 14, 0, vector(1, 0.02))])
        matches = await call(iface, "Similar", str(library / "b1.jpg"), 0.9)
        assert [Path(p).name for p, _ in matches] == ["b3.jpg", "b2.jpg"]
        assert not graph_file.exists()

    run(main)


@pytest.mark.parametrize("member, args, error", [
    ("Cluster", (math.nan,), "InvalidArgument"),
    ("Cluster", (-0.1,), "InvalidArgument"),
    ("Cluster", (1.5,), "InvalidArgument"),
    ("Cluster", (math.inf,), "InvalidArgument"),
    ("ClusterLibrary", ("{lib}", math.nan), "InvalidArgument"),
    ("ClusterLibrary", ("", 0.5), "InvalidArgument"),
    ("ClusterLibrary", ("photos", 0.5), "InvalidArgument"),
    ("ClusterLibrary", ("/somewhere/else", 0.5), "NotInLibrary"),
    ("ClusterLibrary", ("{lib}/2024", 0.5), "NotInLibrary"),
    ("WriteTree", ("{lib}", 0.5, "relative/out"), "InvalidArgument"),
    ("WriteTree", ("{lib}", 0.5, ""), "InvalidArgument"),
    ("Fingerprint", ("",), "InvalidArgument"),
    ("Fingerprint", ("photos/a1.jpg",), "InvalidArgument"),
    ("Fingerprint", ("/etc/hostname",), "NotInLibrary"),
    ("Fingerprint", ("{lib}/../outside.jpg",), "NotInLibrary"),
    ("Fingerprint", ("{lib}/missing.jpg",), "NotFound"),
    ("Fingerprint", ("{lib}/notes.jpg",), "NotAnImage"),
    ("Similar", ("{lib}/a1.jpg", math.nan), "InvalidArgument"),
    ("Similar", ("{lib}/missing.jpg", 0.5), "NotFound"),
    ("WaitIdle", (-1.0,), "InvalidArgument"),
    ("WaitIdle", (math.nan,), "InvalidArgument"),
])
def test_bad_calls_get_named_errors(library, make_service, member, args, error):
    (library / "notes.jpg").write_text("not a photo")
    (library.parent / "outside.jpg").write_bytes(b"x")
    args = tuple(a.format(lib=library) if isinstance(a, str) else a for a in args)

    async def main():
        iface, _, _ = make_service()
        with pytest.raises(DBusError) as excinfo:
            await call(iface, member, *args)
        assert error_name(excinfo) == error
        assert excinfo.value.text  # a message saying what is wrong

    run(main)


def test_a_library_that_is_not_mounted_is_not_found_and_skipped_by_cluster(tmp_path, library, make_service):
    async def main():
        iface, _, _ = make_service(libraries=(library, tmp_path / "usb-disk"))
        with pytest.raises(DBusError) as excinfo:
            await call(iface, "ClusterLibrary", str(tmp_path / "usb-disk"), 0.5)
        assert error_name(excinfo) == "NotFound"
        assert len(await call(iface, "Cluster", 0.9)) == 2

    run(main)


@pytest.mark.parametrize("exc, name", [
    (InvalidParameter("x"), "InvalidArgument"), (NotInLibrary("x"), "NotInLibrary"),
    (PhotoNotFound("x"), "NotFound"), (LibraryNotFound("x"), "NotFound"), (NotAnImage("x"), "NotAnImage"),
    (NotOurTree("x"), "NotOurTree"), (StoreLocked("x"), "Failed"), (ModelError("x"), "Failed"),
    (TreeError("x"), "Failed"),
])
def test_core_errors_map_to_names(exc, name):
    error = dbus_error(exc)
    assert (error.type, error.text) == (ERROR_PREFIX + name, "x")


def test_an_unexpected_error_is_logged_and_answered_without_details(library, make_service, caplog):
    async def main():
        iface, indexer, _ = make_service()
        indexer.fingerprint_error = KeyError("secret-internal-detail")
        with pytest.raises(DBusError) as excinfo:
            await call(iface, "Fingerprint", str(library / "a1.jpg"))
        assert error_name(excinfo) == "Failed"
        assert "secret" not in excinfo.value.text and "Traceback" not in excinfo.value.text
        assert "KeyError" in excinfo.value.text
        indexer.fingerprint_error = StoreLocked("the store of /x is locked by another process")
        with pytest.raises(DBusError) as excinfo:
            await call(iface, "Fingerprint", str(library / "a1.jpg"))
        assert (error_name(excinfo), excinfo.value.text) == ("Failed", "the store of /x is locked by another process")
        indexer.fingerprint_error = None
        assert len(await call(iface, "Fingerprint", str(library / "a1.jpg"))) == DIM  # still answering

    run(main)
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


def test_properties(library, make_service):
    async def main():
        iface, indexer, _ = make_service()
        indexer.indexed, indexer.pending, indexer.state = 5, 2, "indexing"
        assert (iface.Libraries, iface.Model, iface.Indexed, iface.Pending, iface.State, iface.Sim) == (
            [str(library)], "lite0", 5, 2, "indexing", 0.8)
        assert iface.Version.count(".") == 2

    run(main)


def test_calls_are_answered_while_a_clustering_runs(library, make_service):
    release, entered = threading.Event(), threading.Event()

    def hold(lib):
        entered.set()
        release.wait(60)

    async def main():
        iface, _, _ = make_service(cluster_hook=hold)
        clustering = asyncio.ensure_future(call(iface, "Cluster", 0.9))
        try:
            while not entered.is_set():  # the clustering thread is inside the hook
                await asyncio.sleep(0.01)
            assert iface.State == "clustering"
            assert len(await call(iface, "Fingerprint", str(library / "a1.jpg"))) == DIM
            assert not clustering.done()  # answered while Cluster still runs
        finally:
            release.set()
        assert len(await clustering) == 2
        assert iface.State == "idle"

    run(main)


def test_progress_signals_are_rate_limited_and_carry_the_latest_values(make_service):
    async def main():
        iface, indexer, bus = make_service(min_interval=3600.0)
        indexer.indexed, indexer.pending, indexer.state = 1, 9, "indexing"
        iface.notify()
        iface.notify()
        await asyncio.sleep(0.05)  # the first change goes out at once ...
        (changed,) = [body for member, body in bus.signals if member == "PropertiesChanged"]
        assert changed[0] == INTERFACE
        assert {k: v.value for k, v in changed[1].items()} == {"Indexed": 1, "Pending": 9, "State": "indexing"}
        assert bus.members("Progress") == [[1, 9]]
        for n in range(2, 50):  # ... and later ones wait for the interval, merged into one
            indexer.indexed, indexer.pending = n, 10 - n // 5
            iface.notify()
        await asyncio.sleep(0.05)
        # (Working signals of the graph search that starts with the service are not rate-limited with these.)
        assert [member for member, _ in bus.signals if member != "Working"] == ["PropertiesChanged", "Progress"]
        await iface.close()  # drops what is scheduled

    run(main)


def test_notify_from_another_thread(make_service):
    async def main():
        iface, indexer, bus = make_service(min_interval=0.0)
        indexer.indexed = 3
        thread = threading.Thread(target=iface.notify)
        thread.start()
        thread.join()
        while not bus.members("Progress"):
            await asyncio.sleep(0.01)
        assert bus.members("Progress") == [[3, 0]]
        await iface.close()

    run(main)


def test_calls_wait_for_start_and_are_refused_after_close(library):
    async def main():
        indexer = StandInIndexer([library])
        iface = ImageClusterInterface(indexer, Config(libraries=[library]))
        early = asyncio.ensure_future(call(iface, "Fingerprint", str(library / "a1.jpg")))
        await asyncio.sleep(0.05)
        assert not early.done()  # the indexer is not started yet
        iface.start()
        assert len(await early) == DIM
        await iface.close()
        with pytest.raises(DBusError) as excinfo:
            await call(iface, "Fingerprint", str(library / "a1.jpg"))
        assert error_name(excinfo) == "Failed" and "shutting down" in excinfo.value.text

    run(main)


def test_a_call_waiting_for_the_start_fails_when_the_daemon_stops_instead(library):
    async def main():
        iface = ImageClusterInterface(StandInIndexer([library]), Config(libraries=[library]))
        early = asyncio.ensure_future(call(iface, "Cluster", 0.5))
        await asyncio.sleep(0.01)
        await iface.close()
        with pytest.raises(DBusError, match="shutting down"):
            await early

    run(main)


def test_wait_idle(make_service):
    async def main():
        iface, indexer, _ = make_service()
        assert await call(iface, "WaitIdle", 0.0) is True
        indexer.idle.clear()
        assert await call(iface, "WaitIdle", 0.0) is False
        waiting = asyncio.ensure_future(call(iface, "WaitIdle", 60.0))
        await asyncio.sleep(0.01)
        indexer.idle.set()
        assert await waiting is True

    run(main)


def test_cluster_and_similar_do_not_wait_for_a_gallery_being_written(library, make_service, monkeypatch):
    # A gallery makes every missing thumbnail: minutes on a large library. The
    # graph it starts from is its own copy, so the library's graph stays free.
    from imagecluster.gallery._thumbs import ThumbnailCache

    release, entered = threading.Event(), threading.Event()
    ensure = ThumbnailCache.ensure

    def held_ensure(self, *args, **kwargs):
        entered.set()
        release.wait(60)
        return ensure(self, *args, **kwargs)

    monkeypatch.setattr(ThumbnailCache, "ensure", held_ensure)

    async def main():
        iface, _, _ = make_service()
        try:
            assert len(await call(iface, "Cluster", 0.9)) == 2  # its gallery follows in a thread
            while not entered.is_set():
                await asyncio.sleep(0.01)
            matches = await asyncio.wait_for(call(iface, "Similar", str(library / "a1.jpg"), 0.9), 10)
            assert [Path(p).name for p, _ in matches] == ["a2.jpg", "a3.jpg"]
            assert len(await asyncio.wait_for(call(iface, "Cluster", 0.95), 10)) == 2
            assert entered.is_set() and not release.is_set()  # both answered while the thumbnails were held
        finally:
            release.set()
        index = await call(iface, "Gallery", str(library))
        assert Path(index).is_file()

    run(main)


def test_an_answer_too_large_for_one_message_is_refused_with_where_to_read_it(library, make_service, monkeypatch):
    # A bus cuts off a peer that sends a message over its limit (a Cluster answer
    # naming a million photos did): the daemon refuses such an answer instead.
    from imagecluster.daemon import _answers

    monkeypatch.setattr(_answers, "MAX_ANSWER_BYTES", 150)

    async def main():
        iface, _, _ = make_service()
        with pytest.raises(DBusError) as excinfo:
            await call(iface, "Cluster", 0.9)
        assert error_name(excinfo) == "Failed"
        message = excinfo.value.text
        assert "5 photos in 2 clusters" in message and "more than one D-Bus message may carry" in message
        tree = Path(message.split("the tree ")[1].split(" holds")[0])
        assert sorted(p.name for p in tree.rglob("*.jpg")) == ["a1.jpg", "a2.jpg", "a3.jpg", "b1.jpg", "b2.jpg"]
        with pytest.raises(DBusError, match="photos at least 0.5 similar.*ask with a higher sim"):
            await call(iface, "Similar", str(library / "a1.jpg"), 0.5)
        assert await call(iface, "Similar", str(library / "c.jpg"), 0.9) == []  # a small answer still goes
        assert iface.State == "idle"

    run(main)


def test_a_stop_ends_a_gallery_being_written_after_the_thumbnails_in_hand(library, make_service, monkeypatch):
    # A first gallery of a large library makes thumbnails for minutes; a stop must
    # not wait for them (asyncio.run joins its threads, so the process stayed).
    from imagecluster.gallery._thumbs import ThumbnailCache

    made = []
    make = ThumbnailCache._make

    def slow_make(self, path, name):
        time.sleep(1.0)
        made.append(name)
        return make(self, path, name)

    monkeypatch.setattr(ThumbnailCache, "_make", slow_make)

    async def main():
        iface, _, _ = make_service()
        await call(iface, "Cluster", 0.9)
        while not made:  # the gallery's thumbnails are under way
            await asyncio.sleep(0.01)
        await iface.close(5.0)
        deadline = time.monotonic() + 5.0
        while any(t.name.startswith("imagecluster-thumbs") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the thumbnail threads still run after the stop"
            await asyncio.sleep(0.05)

    run(main)
    assert len(made) < len(PHOTOS)  # the queued ones were dropped
