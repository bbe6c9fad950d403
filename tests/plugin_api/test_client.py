"""Client and AsyncClient, in pairs, against the real daemon on a private bus.

Reading tests share one daemon (``photo_daemon``); tests that hold a call open
share ``gated_daemon``; tests that kill or activate a daemon start their own.
"""

import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from imagecluster import Store
from imagecluster.daemon._install import install_service
from imagecluster.plugin_api import (
    BUS_NAME,
    AsyncClient,
    Client,
    DaemonDisconnected,
    DaemonNotAvailable,
    DaemonTimeout,
    InvalidParameter,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
    Status,
)
from imagecluster.plugin_api._base import _Call, _clusters

DOGS = ["dog_1.jpg", "dog_2.jpg", "dog_3.jpg"]
CATS = ["cat_1.jpg", "cat_2.jpg", "cat_3.jpg", "café_ß.jpg"]


def names(clusters):
    return sorted(sorted(os.path.basename(p) for p in cluster) for cluster in clusters)


def check_status(status, shared):
    assert isinstance(status, Status)
    assert status.libraries == (str(shared.library),)
    assert (status.model, status.state, status.pending, status.sim) == ("lite0", "idle", 0, 0.7)
    assert status.indexed == 7 and status.version


# ------------------------------------------------------------ the calls


def test_client_calls(photo_daemon, tmp_path, wait_until):
    lib = photo_daemon.library
    written = []
    with photo_daemon.client() as client:
        check_status(client.status(), photo_daemon)
        assert client.wait_idle(5) is True
        stop = client.on_clusters_written(lambda tree, n: written.append((tree, n)))

        clusters = client.cluster(0.7)
        assert names(clusters) == sorted([sorted(CATS), sorted(DOGS)])
        assert [len(c) for c in clusters] == [4, 3] and all(os.path.isabs(p) for c in clusters for p in c)
        assert names(client.cluster()) == names(clusters)  # sim: the daemon's default, 0.7
        assert names(client.cluster_library(lib, 0.7)) == names(clusters)

        tree, count = client.write_tree(lib, 0.7, tmp_path / "tree")
        assert (tree, count) == (str(tmp_path / "tree"), 2)
        assert (tmp_path / "tree" / "cluster_with_4" / "cluster_0" / "café_ß.jpg").is_symlink()

        vector = client.fingerprint(lib / "2024/café_ß.jpg")
        stored = Store(lib).fingerprints("lite0", ["2024/café_ß.jpg"])[1][0]
        assert vector.shape == (1280,) and vector.dtype == np.float32
        assert np.allclose(vector, stored, atol=1e-3)

        matches = client.similar(lib / "2024/café_ß.jpg", 0.7)
        assert sorted(os.path.basename(p) for p, _ in matches) == sorted(set(CATS) - {"café_ß.jpg"})
        assert all(0.7 <= s <= 1.0 for _, s in matches) and [s for _, s in matches] == sorted(
            (s for _, s in matches), reverse=True)
        stop()

        # a callback may call the client (callbacks do not run in the client's I/O thread)
        states = []
        stop = client.on_clusters_written(lambda tree, n: states.append(client.status().state))
        client.cluster(0.7)
        wait_until(lambda: states, what="the callback's own call")
        stop()
        assert len(states) == 1 and states[0] in ("idle", "indexing", "clustering")
    # cluster x2, cluster_library, write_tree; the later ones came after stop()
    assert written == [(str(lib / "clusters"), 2)] * 3 + [(str(tmp_path / "tree"), 2)]


def test_async_client_calls(photo_daemon, tmp_path):
    lib = photo_daemon.library

    async def main():
        written, progress = [], []

        async def on_written(tree, n):  # a coroutine callback runs as a task
            written.append((tree, n))

        async with AsyncClient(bus_address=photo_daemon.address) as client:
            check_status(await client.status(), photo_daemon)
            assert await client.wait_idle(5) is True
            stop = await client.on_clusters_written(on_written)
            await client.on_progress(lambda indexed, pending: progress.append((indexed, pending)))

            clusters = await client.cluster(0.7)
            assert names(clusters) == sorted([sorted(CATS), sorted(DOGS)])
            assert names(await client.cluster()) == names(clusters)
            assert names(await client.cluster_library(lib, 0.7)) == names(clusters)
            assert await client.write_tree(lib, 0.7, tmp_path / "tree") == (str(tmp_path / "tree"), 2)

            vector = await client.fingerprint(lib / "2024/café_ß.jpg")
            assert vector.shape == (1280,) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-3)
            matches = await client.similar(lib / "2024/café_ß.jpg", 0.7)
            assert sorted(os.path.basename(p) for p, _ in matches) == sorted(set(CATS) - {"café_ß.jpg"})
            stop()
            await client.cluster(0.7)
            await asyncio.sleep(0)  # let the last task run
        assert written == [(str(lib / "clusters"), 2)] * 3 + [(str(tmp_path / "tree"), 2)]
        assert progress == []  # nothing was indexed meanwhile

    asyncio.run(main())


# -------------------------------------------------------------- errors

ERRORS = [
    (PhotoNotFound, lambda lib, tmp: ("fingerprint", lib / "2024/missing.jpg")),
    (NotAnImage, lambda lib, tmp: ("fingerprint", lib / "notes.jpg")),
    (NotInLibrary, lambda lib, tmp: ("fingerprint", "/etc/passwd")),
    (NotInLibrary, lambda lib, tmp: ("cluster_library", tmp, 0.5)),
    (NotOurTree, lambda lib, tmp: ("write_tree", lib, 0.5, foreign_folder(tmp))),
]


def foreign_folder(tmp_path):
    """A folder of someone else's: a tree must never replace it."""
    folder = tmp_path / "mine"
    folder.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("mine")
    return folder


def test_client_errors_have_the_daemons_meaning(photo_daemon, tmp_path):
    with photo_daemon.client() as client:
        for error, make in ERRORS:
            method, *args = make(photo_daemon.library, tmp_path)
            with pytest.raises(error) as excinfo:
                getattr(client, method)(*args)
            assert excinfo.value.__cause__.type.startswith("org.imagecluster.ImageCluster1.Error.")
        assert (tmp_path / "mine" / "keep.txt").read_text() == "mine"
        # the daemon's own check, past the client's
        with pytest.raises(InvalidParameter, match="sim"):
            client._send(_Call("Cluster", "d", (float("nan"),), 10, _clusters))
        with pytest.raises(InvalidParameter):
            client.wait_idle(-1)
        assert client.status().state == "idle"  # the daemon took no harm


def test_async_client_errors_have_the_daemons_meaning(photo_daemon, tmp_path):
    async def main():
        async with AsyncClient(bus_address=photo_daemon.address) as client:
            for error, make in ERRORS:
                method, *args = make(photo_daemon.library, tmp_path)
                with pytest.raises(error) as excinfo:
                    await getattr(client, method)(*args)
                assert excinfo.value.__cause__.type.startswith("org.imagecluster.ImageCluster1.Error.")
            with pytest.raises(InvalidParameter, match="sim"):
                await client._send(_Call("Cluster", "d", (float("nan"),), 10, _clusters))
            assert (await client.status()).state == "idle"

    asyncio.run(main())


# ------------------------------------------------------- a call held open


def test_client_call_timeout(gated_daemon, hold):
    with gated_daemon.client() as client, hold(gated_daemon):
        with pytest.raises(DaemonTimeout, match="did not answer Cluster within 0.5 s"):
            client.cluster(0.5, timeout=0.5)
        assert client.status().state == "clustering"  # the daemon still answers meanwhile


def test_async_client_call_timeout(gated_daemon, hold):
    async def main():
        async with AsyncClient(bus_address=gated_daemon.address, work_timeout=0.5) as client:
            with hold(gated_daemon):
                with pytest.raises(DaemonTimeout, match="did not answer Cluster within 0.5 s"):
                    await client.cluster(0.5)
                assert (await client.status()).state == "clustering"

    asyncio.run(main())


def kill_when_clustering(address, daemon):
    """SIGKILL ``daemon`` as soon as it is clustering."""
    with Client(bus_address=address) as watcher:
        while watcher.status().state != "clustering":
            time.sleep(0.02)
    daemon.proc.kill()


def test_client_when_the_daemon_dies_mid_call(session_bus, start_daemon, tmp_path):
    (tmp_path / "lib").mkdir()
    daemon = start_daemon(tmp_path / "lib", gate=tmp_path / "gate")
    with Client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        killer = pool.submit(kill_when_clustering, session_bus.address, daemon)
        with pytest.raises(DaemonDisconnected, match="went away before answering Cluster"):
            client.cluster(0.5)
        killer.result()
        # nothing serves the name now, and nothing is installed to start it
        with pytest.raises(DaemonNotAvailable, match="imagecluster install-service"):
            client.status()


def test_async_client_when_the_daemon_dies_mid_call(session_bus, start_daemon, tmp_path):
    (tmp_path / "lib").mkdir()
    daemon = start_daemon(tmp_path / "lib", gate=tmp_path / "gate")

    async def main():
        async with AsyncClient() as client:
            call = asyncio.ensure_future(client.cluster(0.5))
            while (await client.status()).state != "clustering":
                await asyncio.sleep(0.02)
            daemon.proc.kill()
            with pytest.raises(DaemonDisconnected, match="went away before answering Cluster"):
                await call

    asyncio.run(main())


# ------------------------------------------- activation, nothing installed, no bus


def stop_activated_daemon(wait_until):
    """SIGTERM the daemon the bus started (as systemd would) and wait for the name to go."""
    result = subprocess.run(
        ["busctl", "--user", "--json=short", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
         "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s", BUS_NAME],
        capture_output=True, text=True, check=True, timeout=30,
    )
    os.kill(json.loads(result.stdout)["data"][0], signal.SIGTERM)

    def gone():  # asked of the bus: a call to the daemon would start it again
        answer = subprocess.run(
            ["busctl", "--user", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
             "NameHasOwner", "s", BUS_NAME], capture_output=True, text=True, check=True, timeout=30,
        )
        return answer.stdout.strip() == "b false"

    wait_until(gone, what="the activated daemon going away")


def install_activation(session_bus, tmp_path):
    lib = tmp_path / "activated library"
    lib.mkdir()
    install_service(unit_dir=tmp_path / "units", dbus_dir=session_bus.servicedir, daemon_args=["--library", str(lib)])
    return lib


def test_client_starts_the_daemon_through_activation(session_bus, tmp_path, wait_until):
    lib = install_activation(session_bus, tmp_path)
    with Client(timeout=60) as client:
        assert client.status().libraries == (str(lib),)
        assert client.cluster(0.5) == []
    stop_activated_daemon(wait_until)


def test_async_client_starts_the_daemon_through_activation(session_bus, tmp_path, wait_until):
    lib = install_activation(session_bus, tmp_path)

    async def main():
        async with AsyncClient(timeout=60) as client:
            assert (await client.status()).libraries == (str(lib),)
            assert await client.cluster(0.5) == []

    asyncio.run(main())
    stop_activated_daemon(wait_until)


def test_client_without_an_installed_daemon(session_bus):
    with Client() as client, pytest.raises(DaemonNotAvailable) as excinfo:
        client.status()
    message = str(excinfo.value)
    assert "not running and not installed" in message and "imagecluster install-service" in message
    assert "systemctl --user daemon-reload" in message


def test_async_client_without_an_installed_daemon(session_bus):
    async def main():
        async with AsyncClient() as client:
            with pytest.raises(DaemonNotAvailable, match="imagecluster install-service"):
                await client.cluster(0.5)

    asyncio.run(main())


def test_client_without_a_session_bus(monkeypatch, tmp_path):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with Client() as client, pytest.raises(DaemonNotAvailable, match="DBUS_SESSION_BUS_ADDRESS is not set"):
        client.status()
    with Client(bus_address=f"unix:path={tmp_path}/no-bus") as client:
        with pytest.raises(DaemonNotAvailable, match="cannot connect to the D-Bus session bus") as excinfo:
            client.fingerprint("/x.jpg")
        assert isinstance(excinfo.value.__cause__, OSError)


def test_async_client_without_a_session_bus(monkeypatch, tmp_path):
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))

    async def main():
        async with AsyncClient() as client:
            with pytest.raises(DaemonNotAvailable, match="DBUS_SESSION_BUS_ADDRESS is not set"):
                await client.status()

    asyncio.run(main())


# ------------------------------------------------------------ progress


def add_photo(shared, name):
    """Copy a real photo into ``shared``'s library (written whole, then renamed in, as a download would)."""
    source = Path(__file__).parents[1] / "data" / "dog.jpg"
    partial = shared.library / (name + ".part")
    shutil.copyfile(source, partial)
    os.rename(partial, shared.library / name)


def test_client_progress(gated_daemon, wait_until):
    seen = []
    with gated_daemon.client() as client:
        before = client.status().indexed
        client.on_progress(lambda indexed, pending: seen.append((indexed, pending)))
        add_photo(gated_daemon, "progress_sync.jpg")
        wait_until(lambda: (before + 1, 0) in seen, what="Progress with the new photo indexed")
    assert all(isinstance(i, int) and isinstance(p, int) for i, p in seen)


def test_async_client_progress(gated_daemon):
    async def main():
        async with AsyncClient(bus_address=gated_daemon.address) as client:
            before = (await client.status()).indexed
            done = asyncio.get_running_loop().create_future()

            def on_progress(indexed, pending):
                if (indexed, pending) == (before + 1, 0) and not done.done():
                    done.set_result(True)

            await client.on_progress(on_progress)
            add_photo(gated_daemon, "progress_async.jpg")
            await asyncio.wait_for(done, 120)

    asyncio.run(main())
