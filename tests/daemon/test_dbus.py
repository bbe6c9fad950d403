"""The real daemon on a real private session bus: indexing, calls, errors, activation, signals.

Every test starts its own ``dbus-daemon`` and runs ``python -m imagecluster
daemon`` as a subprocess on it; clients are dbus-fast proxies (plus ``gdbus``
and ``busctl`` where their output is what a user sees).
"""

import asyncio
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
from dbus_fast import BusType, DBusError, Message
from dbus_fast.aio import MessageBus

from imagecluster import Store
from imagecluster.daemon._install import ACTIVATION_FILE, install_service
from imagecluster.daemon._service import BUS_NAME, ERROR_PREFIX, INTERFACE, OBJECT_PATH

FAST = {"settle_seconds": 0.2}  # the tests write whole files at once


def names(clusters):
    return sorted(sorted(os.path.basename(p) for p in c) for c in clusters)


async def bus_call(member, *body, signature=""):
    """A call to the bus daemon itself (org.freedesktop.DBus)."""
    bus = await MessageBus(bus_type=BusType.SESSION).connect()
    try:
        reply = await bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
            member=member, signature=signature, body=list(body),
        ))
        return reply.body[0] if reply.body else None
    finally:
        bus.disconnect()


async def expect_error(name, call):
    with pytest.raises(DBusError) as excinfo:
        await call
    assert excinfo.value.type == ERROR_PREFIX + name, excinfo.value.text
    return excinfo.value.text


def test_the_store_follows_the_library_and_cluster_writes_the_tree(burst_library, start_daemon, client, wait_until):
    lib = burst_library
    daemon = start_daemon(lib, config=FAST)

    async def indexed(ic, n):
        async def check():
            return await ic.get_indexed() == n and await ic.get_pending() == 0
        await wait_until(check, what=f"Indexed == {n}")

    async def main():
        async with client() as ic:
            assert await ic.get_libraries() == [str(lib)]
            assert (await ic.get_model(), await ic.get_sim()) == ("lite0", 0.7)
            await indexed(ic, 6)
            assert await ic.call_wait_idle(5.0) is True and await ic.get_state() == "idle"
            progress, changed, written = [], [], []
            ic.on_progress(lambda i, p: progress.append((i, p)))
            ic.on_clusters_written(lambda tree, n: written.append((tree, n)))
            props = ic.bus.get_proxy_object(BUS_NAME, OBJECT_PATH, await ic.bus.introspect(BUS_NAME, OBJECT_PATH))
            props.get_interface("org.freedesktop.DBus.Properties").on_properties_changed(
                lambda iface, values, _: changed.append({k: v.value for k, v in values.items()}))

            fp = np.array(await ic.call_fingerprint(str(lib / "2023/05/dog_1.jpg")))
            stored = Store(lib).fingerprints("lite0", ["2023/05/dog_1.jpg"])[1][0]
            assert fp.shape == (1280,) and np.isclose(np.linalg.norm(fp), 1.0, atol=1e-3)
            assert np.allclose(fp, stored, atol=1e-3)

            # a new photo, downloaded under a partial name and then renamed
            (lib / "new").mkdir()
            shutil.copyfile(lib / "2023/05/dog_1.jpg", lib / "new/dog_4.jpg.part")
            os.rename(lib / "new/dog_4.jpg.part", lib / "new/dog_4.jpg")
            await indexed(ic, 7)
            assert "new/dog_4.jpg" in Store(lib).entries("lite0")
            await wait_until(lambda: asyncio.sleep(0, progress and progress[-1] == (7, 0)), what="Progress(7, 0)")
            assert any(c.get("Indexed") == 7 for c in changed)

            # a move keeps the fingerprint; the old path is gone
            before = await ic.call_fingerprint(str(lib / "2024/cat_3.jpg"))
            (lib / "moved").mkdir()
            os.rename(lib / "2024/cat_3.jpg", lib / "moved/cat_3.jpg")

            async def moved():
                entries = Store(lib).entries("lite0")
                return "moved/cat_3.jpg" in entries and "2024/cat_3.jpg" not in entries
            await wait_until(moved, what="the move reaching the store")
            assert await ic.get_indexed() == 7
            assert await ic.call_fingerprint(str(lib / "moved/cat_3.jpg")) == pytest.approx(before, abs=1e-3)
            await expect_error("NotFound", ic.call_fingerprint(str(lib / "2024/cat_3.jpg")))

            # a deletion
            os.unlink(lib / "2023/05/dog_2.jpg")
            await indexed(ic, 6)

            async def deleted():
                return "2023/05/dog_2.jpg" not in Store(lib).entries("lite0")
            await wait_until(deleted, what="the deletion reaching the store")

            clusters = await ic.call_cluster(0.7)
            assert names(clusters) == [["cat_1.jpg", "cat_2.jpg", "cat_3.jpg"], ["dog_1.jpg", "dog_3.jpg", "dog_4.jpg"]]
            assert all(os.path.isabs(p) and os.path.isfile(p) for c in clusters for p in c)
            tree = lib / "clusters"
            links = sorted(p.relative_to(tree).parent.as_posix() for p in tree.rglob("*.jpg"))
            assert links == ["cluster_with_3/cluster_0"] * 3 + ["cluster_with_3/cluster_1"] * 3
            await wait_until(lambda: asyncio.sleep(0, written), what="ClustersWritten")
            assert written == [(str(tree), 2)]
            identical = await ic.call_cluster_library(str(lib), 1.0)  # dog_4 is a copy of dog_1
            assert identical == [[str(lib / "2023/05/dog_1.jpg"), str(lib / "new/dog_4.jpg")]]
            similar = await ic.call_similar(str(lib / "2023/05/dog_1.jpg"), 0.7)
            assert [os.path.basename(p) for p, _ in similar][0] == "dog_4.jpg"  # the copy first
            assert sorted(os.path.basename(p) for p, _ in similar) == ["dog_3.jpg", "dog_4.jpg"]
            assert similar[0][1] == pytest.approx(1.0, abs=1e-3) and 0.7 <= similar[1][1] < similar[0][1]
            assert await ic.get_indexed() == 6  # the tree (symlinks) is never indexed

    asyncio.run(main())
    assert daemon.stop(signal.SIGTERM) == 0
    assert "stopped" in daemon.log()
    assert asyncio.run(bus_call("NameHasOwner", BUS_NAME, signature="s")) is False
    journal = lib / ".imagecluster" / "journal.pk"
    assert not journal.exists() or journal.stat().st_size == 0  # flushed into the snapshot
    assert len(Store(lib).entries("lite0")) == 6


def test_every_error_has_its_name(burst_library, tmp_path, start_daemon, client):
    lib = burst_library
    (lib / "notes.jpg").write_text("not a photo")
    (tmp_path / "outside.jpg").write_bytes((lib / "2024/cat_3.jpg").read_bytes())
    os.symlink(tmp_path / "outside.jpg", lib / "link.jpg")
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "thesis.odt").write_text("mine")
    daemon = start_daemon(lib, config=FAST)

    async def main():
        async with client() as ic:
            for sim in (float("nan"), 1.5, -0.5, float("inf")):
                assert "sim" in await expect_error("InvalidArgument", ic.call_cluster(sim))
            await expect_error("InvalidArgument", ic.call_fingerprint(""))
            await expect_error("InvalidArgument", ic.call_fingerprint("photos/2024/cat_3.jpg"))
            await expect_error("InvalidArgument", ic.call_write_tree(str(lib), 0.5, "relative/out"))
            await expect_error("InvalidArgument", ic.call_wait_idle(-1.0))
            await expect_error("NotInLibrary", ic.call_fingerprint(str(tmp_path / "outside.jpg")))
            await expect_error("NotInLibrary", ic.call_fingerprint(f"{lib}/../outside.jpg"))
            await expect_error("NotInLibrary", ic.call_fingerprint(str(lib / "link.jpg")))
            await expect_error("NotInLibrary", ic.call_cluster_library(str(tmp_path), 0.5))
            await expect_error("NotFound", ic.call_fingerprint(str(lib / "2024/missing.jpg")))
            await expect_error("NotFound", ic.call_similar(str(lib / "2024/missing.jpg"), 0.5))
            await expect_error("NotAnImage", ic.call_fingerprint(str(lib / "2024")))  # a folder
            await expect_error("NotAnImage", ic.call_fingerprint(str(lib / "notes.jpg")))  # cannot be decoded
            await expect_error("NotOurTree", ic.call_write_tree(str(lib), 0.5, str(foreign)))
            assert os.listdir(foreign) == ["thesis.odt"]
            assert await ic.get_state() in ("idle", "indexing")  # still answering

    asyncio.run(main())

    # What a user sees from the command line: gdbus names the error, busctl gives the message.
    def gdbus_call(method, *args):
        return subprocess.run(
            ["gdbus", "call", "--session", "--dest", BUS_NAME, "--object-path", OBJECT_PATH,
             "--method", f"{INTERFACE}.{method}", *args],
            capture_output=True, text=True, timeout=60,
        )

    assert gdbus_call("WaitIdle", "60").stdout == "(true,)\n"
    answer = gdbus_call("ClusterLibrary", str(lib), "0.7")
    assert answer.returncode == 0 and answer.stdout.startswith("([['/")
    assert str(lib / "2023/05/dog_1.jpg") in answer.stdout and str(lib / "2024/01/cat_1.jpg") in answer.stdout
    gdbus = subprocess.run(
        ["gdbus", "call", "--session", "--dest", BUS_NAME, "--object-path", OBJECT_PATH,
         "--method", f"{INTERFACE}.Fingerprint", str(tmp_path / "outside.jpg")],
        capture_output=True, text=True, timeout=60,
    )
    assert gdbus.returncode != 0
    assert f"GDBus.Error:{ERROR_PREFIX}NotInLibrary: " in gdbus.stderr
    busctl = subprocess.run(
        ["busctl", "--user", "call", BUS_NAME, OBJECT_PATH, INTERFACE, "Cluster", "d", "2"],
        capture_output=True, text=True, timeout=60,
    )
    assert busctl.returncode != 0 and "sim must be between 0 and 1" in busctl.stderr
    assert daemon.proc.poll() is None, daemon.log()
    assert "Traceback" not in daemon.log()


def test_calls_are_answered_while_cluster_runs(burst_library, tmp_path, start_daemon, client, wait_until):
    lib = burst_library
    gate = tmp_path / "gate"
    start_daemon(lib, gate=gate)  # every clustering waits for the gate file

    async def main():
        async with client() as ic:
            await wait_until(lambda: ic.call_wait_idle(1.0), what="indexing the library")
            clustering = asyncio.ensure_future(ic.call_cluster(0.7))
            try:
                await wait_until(lambda: _equals(ic.get_state(), "clustering"), what="State clustering")
                fp = await ic.call_fingerprint(str(lib / "2024/01/cat_1.jpg"))
                indexed = await ic.get_indexed()
                assert not clustering.done()  # both answered while Cluster is still running
                assert (len(fp), indexed) == (1280, 6)
            finally:
                gate.touch()
            assert names(await clustering) == [["cat_1.jpg", "cat_2.jpg", "cat_3.jpg"],
                                               ["dog_1.jpg", "dog_2.jpg", "dog_3.jpg"]]
            assert await ic.get_state() == "idle"

    asyncio.run(main())


async def _equals(awaitable, value):
    return await awaitable == value


def test_dbus_activation_starts_the_daemon_on_the_first_call(session_bus, tmp_path, client, wait_until):
    lib = tmp_path / "empty library"
    lib.mkdir()
    install_service(unit_dir=tmp_path / "units", dbus_dir=session_bus.servicedir, daemon_args=["--library", str(lib)])
    assert (session_bus.servicedir / ACTIVATION_FILE).is_file()

    async def main():
        assert await bus_call("NameHasOwner", BUS_NAME, signature="s") is False
        async with client() as ic:  # introspecting is the first call: it starts the daemon
            assert await ic.get_libraries() == [str(lib)]
            assert await ic.call_cluster(0.5) == []
        pid = await bus_call("GetConnectionUnixProcessID", BUS_NAME, signature="s")
        os.kill(pid, signal.SIGTERM)  # the bus started it; stop it as systemd would
        await wait_until(lambda: _equals(bus_call("NameHasOwner", BUS_NAME, signature="s"), False),
                         what="the activated daemon releasing the name")

    asyncio.run(main())


def test_the_first_property_read_after_activation_is_right(session_bus, tmp_path, client, make_library):
    lib = make_library({"new/dog_1.jpg": "dog.jpg", "new/cat_1.jpg": "cat.jpg"}, root=tmp_path / "photos")
    data = (lib / "new/dog_1.jpg").read_bytes()
    rng = np.random.default_rng(0)
    items = []
    for k in range(1500):  # photos fingerprinted before: in the store, unchanged on disk
        path = lib / f"old/{k // 100}/{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        st = path.stat()
        items.append((path.relative_to(lib).as_posix(), st.st_size, st.st_mtime_ns, rng.normal(size=1280)))
    Store(lib).put("lite0", items)
    install_service(unit_dir=tmp_path / "units", dbus_dir=session_bus.servicedir, daemon_args=["--library", str(lib)])

    async def main():
        bus = await MessageBus(bus_type=BusType.SESSION).connect()
        try:  # a property read is the very first call: it starts the daemon
            reply = await bus.call(Message(
                destination=BUS_NAME, path=OBJECT_PATH, interface="org.freedesktop.DBus.Properties",
                member="GetAll", signature="s", body=[INTERFACE],
            ))
        finally:
            bus.disconnect()
        props = {k: v.value for k, v in reply.body[0].items()}
        assert props["Indexed"] == 1500  # what the store holds, not 0
        assert props["State"] == "indexing"  # two new photos wait (or the libraries are still being compared)
        async with client() as ic:
            pid = await bus_call("GetConnectionUnixProcessID", BUS_NAME, signature="s")
            assert await ic.call_wait_idle(120.0)
            assert await ic.get_indexed() == 1502 and await ic.get_state() == "idle"
        os.kill(pid, signal.SIGTERM)

    asyncio.run(main())


def test_a_second_daemon_exits_with_a_clear_message(tmp_path, start_daemon, client):
    lib = tmp_path / "photos"
    lib.mkdir()
    first = start_daemon(lib)
    second = start_daemon(lib, wait=False)
    assert second.proc.wait(60) == 3
    log = second.log()
    assert f"{BUS_NAME} is already taken on this session bus by process {first.proc.pid}" in log
    assert "another imagecluster daemon is running" in log and "Traceback" not in log

    async def main():
        async with client() as ic:
            assert await ic.get_libraries() == [str(lib)]  # the first one is untouched

    asyncio.run(main())
    assert first.stop(signal.SIGINT) == 0


def test_sigterm_while_indexing_then_a_restart_catches_up(make_library, start_daemon, client, wait_until):
    lib = make_library({f"batch/{i:03d}.jpg": ("dog.jpg", "cat.jpg")[i % 2] for i in range(40)})
    config = dict(FAST, batch_size=8)
    daemon = start_daemon(lib, config=config)

    async def started_indexing():
        async with client() as ic:
            await wait_until(lambda: _at_least(ic.get_indexed(), 1), what="the first batch stored")

    asyncio.run(started_indexing())
    assert daemon.stop(signal.SIGTERM) == 0  # the batch in hand is finished or dropped
    assert asyncio.run(bus_call("NameHasOwner", BUS_NAME, signature="s")) is False
    stored = Store(lib).entries("lite0")
    assert stored and all((lib / rel).is_file() for rel in stored)

    # While the daemon is not running: one photo deleted, one moved, one added.
    os.unlink(lib / "batch/000.jpg")
    (lib / "moved").mkdir()
    os.rename(lib / "batch/001.jpg", lib / "moved/001.jpg")
    shutil.copyfile(lib / "batch/002.jpg", lib / "new.jpg")
    start_daemon(lib, config=config)

    async def caught_up():
        async with client() as ic:
            await wait_until(lambda: ic.call_wait_idle(1.0), what="indexing after the restart")
            return await ic.get_indexed()

    assert asyncio.run(caught_up()) == 40
    on_disk = {p.relative_to(lib).as_posix() for p in lib.rglob("*.jpg") if ".imagecluster" not in p.parts}
    assert set(Store(lib).entries("lite0")) == on_disk


async def _at_least(awaitable, n):
    return await awaitable >= n
