"""ClusterEvents over a real private session bus (issue 14 part 3): the daemon, the clients, ``remote``.

The daemon runs as ``python -m imagecluster daemon`` on its own
``dbus-daemon``; the photos are real JPEGs with EXIF times and GPS positions.
The daemon stores their capture data while it indexes them, beside the
fingerprints.
"""

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
from _exif_photos import two_cities

from imagecluster import InvalidParameter, Store
from imagecluster.plugin_api import AsyncClient, Client, Event

FAST = {"settle_seconds": 0.2}


def wait_indexed(n, timeout=180):
    deadline = time.monotonic() + timeout
    with Client() as client:
        while not (client.wait_idle(10) and client.status().indexed == n):
            assert time.monotonic() < deadline, "the photos were not indexed in time"


def test_cluster_events_over_dbus(tmp_path, start_daemon):
    lib = tmp_path / "photos"
    expected = two_cities(lib)
    start_daemon(lib, config=FAST)
    wait_indexed(6)
    # Read while indexing (the header, beside the fingerprint): the daemon has them before any ClusterEvents.
    captures = Store(lib).captures()
    photos = [p for p in lib.rglob("*.jpg") if ".imagecluster" not in p.parts]  # not the store's thumbnails
    assert sorted(captures) == sorted(p.relative_to(lib).as_posix() for p in photos)
    assert captures["turin/1.jpg"].capture.lat == 45.07 and captures["scan.jpg"].capture.original is None
    written = []
    with Client() as client:
        client.on_clusters_written(lambda tree, n: written.append((tree, n)))
        events = client.cluster_events(0.5)
        with pytest.raises(InvalidParameter):
            client.cluster_events(0.5, hours=0)  # refused before anything is sent
    assert [e.name for e in events] == expected and all(isinstance(e, Event) for e in events)
    turin = events[0]
    assert turin.date == "2024-05-01" and turin.place == "45.07N_7.69E"
    assert [os.path.relpath(p, lib) for p in turin.photos] == ["turin/1.jpg", "turin/2.jpg", "turin/3.jpg"]
    assert turin.start < turin.end and events[2].place == ""
    tree = lib / "clusters-events"
    for event in events:
        folder = tree / "events" / event.name
        assert sorted(os.readlink(p) for p in folder.iterdir() if p.is_symlink()) == sorted(event.photos)
        for k, cluster in enumerate(event.clusters):
            assert sorted(os.readlink(p) for p in (folder / f"cluster_{k}").iterdir()) == sorted(cluster)

    async def main():
        async with AsyncClient() as client:
            return await client.cluster_events(0.5, 1e6, 100000.0)

    merged = asyncio.run(main())  # everything within 10^6 h and 100,000 km: one event
    assert len(merged) == 1 and len(merged[0].photos) == 6


def test_cluster_events_errors_and_remote(tmp_path, start_daemon):
    lib = tmp_path / "photos"
    expected = two_cities(lib)
    start_daemon(lib, config=FAST)
    wait_indexed(6)
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    from imagecluster.daemon._service import BUS_NAME, ERROR_PREFIX, INTERFACE, OBJECT_PATH

    async def raw(*body):
        bus = await MessageBus().connect()
        try:
            reply = await bus.call(Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE,
                                           member="ClusterEvents", signature="ddd", body=list(body)))
            return reply
        finally:
            bus.disconnect()

    for body in ([0.5, 0.0, 10.0], [0.5, 24.0, float("nan")], [1.5, 24.0, 10.0]):
        reply = asyncio.run(raw(*body))
        assert reply.error_name == ERROR_PREFIX + "InvalidArgument", body
    result = subprocess.run([sys.executable, "-m", "imagecluster", "remote", "cluster", "--by", "events",
                             "--sim", "0.5", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [e["name"] for e in answer["events"]] == expected
    assert answer["trees"] == [str(lib / "clusters-events")]
    text = subprocess.run([sys.executable, "-m", "imagecluster", "remote", "cluster", "--by", "events",
                           "--hours", "1000000", "--km", "100000"], capture_output=True, text=True, timeout=300)
    assert text.returncode == 0 and "1 event with 6 photos" in text.stdout, text.stdout + text.stderr
