"""Every Client/AsyncClient method against the in-memory bus: answers, errors, signals, timeouts; no dbus-daemon.

Sync and async tests come in pairs (``test_x`` and ``test_x_async``). The bus
is :class:`~imagecluster.plugin_api._mockbus.MockBus`, which marshals every
message and speaks the shipped XML; ``test_contract_both.py`` checks its
daemon against the real one.
"""

import asyncio
import threading

import numpy as np
import pytest
from dbus_fast import DBusError

from imagecluster.plugin_api import (
    AsyncClient,
    Client,
    DaemonDisconnected,
    DaemonFailed,
    DaemonNotAvailable,
    DaemonTimeout,
    InvalidParameter,
    LibraryNotFound,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
    Status,
)
from imagecluster.plugin_api._mockbus import FakeDaemon, MockBus

pytestmark = pytest.mark.mockbus

LIB = "/photos"
GONE = "/mnt/card"
PHOTOS = {
    f"{LIB}/dog_1.jpg": [1.0, 0.0, 0.0],
    f"{LIB}/dog_2.jpg": [0.98, 0.2, 0.0],
    f"{LIB}/cat_1.jpg": [0.0, 1.0, 0.1],
    f"{LIB}/cat_2.jpg": [0.0, 0.97, 0.2],
    f"{LIB}/lone.jpg": [0.0, 0.0, 1.0],
    f"{LIB}/notes.jpg": None,
}
DOGS = [f"{LIB}/dog_1.jpg", f"{LIB}/dog_2.jpg"]
CATS = [f"{LIB}/cat_1.jpg", f"{LIB}/cat_2.jpg"]


DAY = 86400.0
TAKEN = {  # two outings a day apart: the dogs in the morning, the cats the next day
    f"{LIB}/dog_1.jpg": 10 * DAY + 3600, f"{LIB}/dog_2.jpg": 10 * DAY + 3700,
    f"{LIB}/cat_1.jpg": 11 * DAY + 3600, f"{LIB}/cat_2.jpg": 11 * DAY + 3660,
}


@pytest.fixture
def daemon():
    return FakeDaemon([LIB, GONE], PHOTOS, unmounted=[GONE], sim=0.9, taken=TAKEN)


@pytest.fixture
def bus(daemon):
    return MockBus(daemon)


def run(coroutine):
    return asyncio.run(coroutine)


def until(predicate, timeout=5.0):
    """The one polling helper of this file: wait for a callback that runs in another thread."""
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        done.wait(0.01)
    raise AssertionError("not within 5 s")


# ------------------------------------------------------------------ answers


def test_status(bus):
    with Client(transport=bus) as client:
        status = client.status()
    assert status == Status(libraries=(LIB, GONE), model="lite0", indexed=5, pending=0, state="idle", sim=0.9,
                            version="0.1.0")


def test_status_async(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            return await client.status()

    assert run(main()).indexed == 5


def test_cluster_sends_the_sim_and_returns_largest_first(bus):
    with Client(transport=bus) as client:
        assert client.cluster(0.9) == [CATS, DOGS]
    assert bus.calls == [("Cluster", [0.9])]


def test_cluster_async(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            return await client.cluster(0.9)

    assert run(main()) == [CATS, DOGS]


def test_cluster_without_sim_asks_the_daemons_sim(bus, daemon):
    daemon.Sim = 0.5
    with Client(transport=bus) as client:
        client.cluster()
    assert bus.calls == [("Cluster", [0.5])]


def test_cluster_without_sim_async(bus, daemon):
    daemon.Sim = 0.5

    async def main():
        async with AsyncClient(transport=bus) as client:
            await client.cluster()

    run(main())
    assert bus.calls == [("Cluster", [0.5])]


def test_cluster_library_and_its_errors(bus):
    with Client(transport=bus) as client:
        assert client.cluster_library(LIB, 0.9) == [CATS, DOGS]
        with pytest.raises(NotInLibrary):
            client.cluster_library("/elsewhere", 0.9)
        with pytest.raises(LibraryNotFound, match="not mounted"):  # NotFound means the library here
            client.cluster_library(GONE, 0.9)


def test_cluster_library_and_its_errors_async(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            assert await client.cluster_library(LIB, 0.9) == [CATS, DOGS]
            with pytest.raises(NotInLibrary):
                await client.cluster_library("/elsewhere", 0.9)
            with pytest.raises(LibraryNotFound):
                await client.cluster_library(GONE, 0.9)

    run(main())


def test_write_tree_makes_a_relative_out_absolute(bus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Client(transport=bus) as client:
        assert client.write_tree(LIB, 0.9, "tree") == (str(tmp_path / "tree"), 2)
    assert bus.calls == [("WriteTree", [LIB, 0.9, str(tmp_path / "tree")])]


def test_write_tree_async(bus, tmp_path):
    async def main():
        async with AsyncClient(transport=bus) as client:
            return await client.write_tree(LIB, None, tmp_path / "tree")

    assert run(main()) == (str(tmp_path / "tree"), 2)
    assert bus.calls[-1] == ("WriteTree", [LIB, 0.9, str(tmp_path / "tree")])


def test_gallery_names_the_page_beside_the_newest_tree(bus):
    with Client(transport=bus) as client:
        with pytest.raises(PhotoNotFound, match="no gallery"):  # no tree written yet
            client.gallery(LIB)
        client.write_tree(LIB, 0.9, "/trees/t")
        assert client.gallery(LIB) == "/trees/t-gallery/index.html"
        client.cluster_library(LIB, 0.9)
        assert client.gallery(LIB) == f"{LIB}/clusters-gallery/index.html"
        with pytest.raises(NotInLibrary):
            client.gallery("/elsewhere")
        with pytest.raises(InvalidParameter):
            client.gallery("")
    assert [c for c in bus.calls if c[0] == "Gallery"] == [("Gallery", [LIB])] * 3 + [("Gallery", ["/elsewhere"])]


def test_gallery_async(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            await client.cluster(0.9)
            return await client.gallery(LIB)

    assert run(main()) == f"{LIB}/clusters-gallery/index.html"


def test_cluster_events_in_time_order(bus):
    with Client(transport=bus) as client:
        events = client.cluster_events(0.9, hours=4)
    assert [e.name for e in events] == ["1970-01-11_1", "1970-01-12_2"]
    assert events[0].photos == tuple(DOGS) and events[0].clusters == (tuple(DOGS),)
    assert events[1].start < events[1].end and events[1].place == ""
    (member, (sim, hours, km)), = bus.calls
    assert (member, sim, hours) == ("ClusterEvents", 0.9, 4.0) and km > 0  # the client's default km


def test_cluster_events_async_and_bad_hours(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            one_event = await client.cluster_events(0.9, hours=48)
            with pytest.raises(InvalidParameter):
                await client.cluster_events(0.9, hours=-1)
            return one_event

    (event,) = run(main())
    assert set(event.photos) == set(DOGS + CATS) and len(event.clusters) == 2


def test_fingerprint_is_float32_and_normalised(bus):
    with Client(transport=bus) as client:
        vector = client.fingerprint(f"{LIB}/dog_2.jpg")
    assert vector.dtype == np.float32 and vector.shape == (3,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)


def test_fingerprint_async(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            return await client.fingerprint(f"{LIB}/dog_1.jpg")

    assert run(main()).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("path, error", [
    (f"{LIB}/missing.jpg", PhotoNotFound),
    (f"{LIB}/notes.jpg", NotAnImage),
    ("/elsewhere/x.jpg", NotInLibrary),
])
def test_fingerprint_errors(bus, path, error):
    with Client(transport=bus) as client:
        with pytest.raises(error):
            client.fingerprint(path)


@pytest.mark.parametrize("path, error", [(f"{LIB}/missing.jpg", PhotoNotFound), (f"{LIB}/notes.jpg", NotAnImage)])
def test_fingerprint_errors_async(bus, path, error):
    async def main():
        async with AsyncClient(transport=bus) as client:
            await client.fingerprint(path)

    with pytest.raises(error):
        run(main())


def test_similar_best_first_without_itself(bus):
    with Client(transport=bus) as client:
        matches = client.similar(f"{LIB}/cat_1.jpg", 0.5)
    assert [path for path, _ in matches] == [f"{LIB}/cat_2.jpg"]
    assert 0.9 < matches[0][1] <= 1.0


def test_similar_async(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            return await client.similar(f"{LIB}/dog_1.jpg", 0.0)

    paths = [path for path, _ in run(main())]
    assert paths[0] == f"{LIB}/dog_2.jpg" and f"{LIB}/dog_1.jpg" not in paths and len(paths) == 4


def test_wait_idle(bus, daemon):
    with Client(transport=bus) as client:
        assert client.wait_idle(1) is True
        daemon.Pending = 3
        assert client.wait_idle(0.01) is False


def test_wait_idle_async(bus, daemon):
    daemon.Pending = 1

    async def main():
        async with AsyncClient(transport=bus) as client:
            return await client.wait_idle(0)

    assert run(main()) is False


# --------------------------------------------------------- checked locally


@pytest.mark.parametrize("call", [
    lambda c: c.cluster(1.5), lambda c: c.cluster(float("nan")), lambda c: c.similar(f"{LIB}/a.jpg", -0.1),
    lambda c: c.wait_idle(3601), lambda c: c.wait_idle(-1), lambda c: c.fingerprint(""),
    lambda c: c.fingerprint(b"/photos/\xff.jpg"), lambda c: c.status(timeout=0),
])
def test_bad_arguments_never_reach_the_bus(bus, call):
    with Client(transport=bus) as client:
        with pytest.raises(InvalidParameter):
            call(client)
    assert bus.calls == []


def test_bad_arguments_never_reach_the_bus_async(bus):
    async def main():
        async with AsyncClient(transport=bus) as client:
            with pytest.raises(InvalidParameter):
                await client.cluster(2)
            with pytest.raises(InvalidParameter):
                await client.wait_idle("soon")

    run(main())
    assert bus.calls == []


# ------------------------------------------------------------------ errors


ERRORS = [
    ("org.imagecluster.ImageCluster1.Error.InvalidArgument", InvalidParameter),
    ("org.imagecluster.ImageCluster1.Error.NotInLibrary", NotInLibrary),
    ("org.imagecluster.ImageCluster1.Error.NotFound", PhotoNotFound),
    ("org.imagecluster.ImageCluster1.Error.NotAnImage", NotAnImage),
    ("org.imagecluster.ImageCluster1.Error.NotOurTree", NotOurTree),
    ("org.imagecluster.ImageCluster1.Error.Failed", DaemonFailed),
    ("org.imagecluster.ImageCluster1.Error.SomethingNewer", DaemonFailed),
    ("org.freedesktop.DBus.Error.NoReply", DaemonDisconnected),
    ("org.freedesktop.DBus.Error.ServiceUnknown", DaemonNotAvailable),
]


class Refusing(FakeDaemon):
    """A daemon that answers Fingerprint with one error name."""

    def __init__(self, name):
        super().__init__([LIB], PHOTOS)
        self.name = name

    def Fingerprint(self, path):
        raise DBusError(self.name, "as the daemon says it")


@pytest.mark.parametrize("name, error", ERRORS)
def test_each_error_name_is_its_exception(name, error):
    with Client(transport=MockBus(Refusing(name))) as client:
        with pytest.raises(error) as raised:
            client.fingerprint(f"{LIB}/dog_1.jpg")
    assert isinstance(raised.value.__cause__, DBusError) and raised.value.__cause__.type == name


@pytest.mark.parametrize("name, error", ERRORS[:3])
def test_each_error_name_is_its_exception_async(name, error):
    async def main():
        async with AsyncClient(transport=MockBus(Refusing(name))) as client:
            await client.fingerprint(f"{LIB}/dog_1.jpg")

    with pytest.raises(error):
        run(main())


def test_no_daemon_on_the_bus():
    with Client(transport=MockBus(None)) as client:
        with pytest.raises(DaemonNotAvailable, match="install-service"):
            client.status()


def test_no_bus_at_all_async():
    async def main():
        unreachable = MockBus(FakeDaemon([LIB]), fail_connect=ConnectionRefusedError(111, "refused"))
        async with AsyncClient(transport=unreachable) as client:
            await client.status()

    with pytest.raises(DaemonNotAvailable, match="cannot connect"):
        run(main())


def test_a_held_call_times_out(bus, daemon):
    async def main():
        daemon.gate = asyncio.Event()
        async with AsyncClient(transport=bus, work_timeout=0.2) as client:
            with pytest.raises(DaemonTimeout, match="within 0.2 s"):
                await client.cluster(0.9)
            assert (await client.status()).state == "clustering"  # the daemon is still at it
            daemon.gate.set()

    run(main())


def test_a_held_call_times_out_sync(bus, daemon):
    daemon.gate = asyncio.Event()  # never set: the sync client's loop waits on it
    with Client(transport=bus) as client:
        with pytest.raises(DaemonTimeout):
            client.cluster(0.9, timeout=0.2)


def test_the_bus_going_away_during_a_call(bus, daemon):
    async def main():
        daemon.gate = asyncio.Event()
        async with AsyncClient(transport=bus) as client:
            call = asyncio.ensure_future(client.cluster(0.9))
            await asyncio.sleep(0.05)
            bus.lose_connection()
            daemon.gate.set()
            with pytest.raises(DaemonDisconnected):
                await call

    run(main())


# ----------------------------------------------------------------- signals


def test_progress_and_clusters_written_reach_callbacks(bus):
    seen = []
    with Client(transport=bus) as client:
        stop = client.on_progress(lambda indexed, pending: seen.append(("progress", indexed, pending)))
        client.on_clusters_written(lambda tree, n: seen.append(("written", tree, n)))
        bus.emit("Progress", 7, 3)
        client.cluster_library(LIB, 0.9)
        until(lambda: len(seen) == 2)
        stop()
        bus.emit("Progress", 8, 2)
        client.status()  # a round trip: a signal sent before it would have been delivered
    assert seen == [("progress", 7, 3), ("written", f"{LIB}/clusters", 2)]


def test_callbacks_async_and_coroutines(bus):
    seen = []

    async def later(tree, n):
        await asyncio.sleep(0)
        seen.append((tree, n))

    async def main():
        async with AsyncClient(transport=bus) as client:
            await client.on_clusters_written(later)
            await client.on_progress(lambda i, p: seen.append((i, p)))
            bus.emit("Progress", 1, 2)
            await client.cluster(0.9)
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)

    run(main())
    assert seen == [(1, 2), (f"{LIB}/clusters", 2)]


def test_a_failing_callback_does_not_stop_the_others(bus, caplog):
    seen = []

    async def main():
        async with AsyncClient(transport=bus) as client:
            await client.on_progress(lambda i, p: 1 / 0)
            await client.on_progress(lambda i, p: seen.append(i))
            bus.emit("Progress", 4, 0)

    run(main())
    assert seen == [4] and "failed" in caplog.text


def test_no_signal_before_subscribing(bus):
    seen = []

    async def main():
        async with AsyncClient(transport=bus) as client:
            await client.status()
            bus.emit("Progress", 1, 1)  # no AddMatch yet: the bus does not deliver it
            await client.on_progress(lambda i, p: seen.append(i))
            bus.emit("Progress", 2, 1)

    run(main())
    assert seen == [2]


def test_a_new_connection_subscribes_again(bus):
    seen = []

    async def main():
        async with AsyncClient(transport=bus) as client:
            await client.on_progress(lambda i, p: seen.append(i))
            bus.lose_connection()
            await client.status()  # connects again, and asks for the signals again
            bus.emit("Progress", 5, 0)

    run(main())
    assert seen == [5]


# --------------------------------------------------------------- lifecycle


def test_a_closed_client_cannot_be_used_or_reopened(bus):
    client = Client(transport=bus)
    with client:
        client.status()
    client.close()  # idempotent
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.status()
    with pytest.raises(RuntimeError, match="reopen"):
        client.__enter__()


def test_a_closed_client_cannot_be_used_async(bus):
    async def main():
        client = AsyncClient(transport=bus)
        async with client:
            await client.status()
        await client.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await client.status()
        assert not bus.connected

    run(main())
