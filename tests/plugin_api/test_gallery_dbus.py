"""The daemon writes a gallery beside each tree it writes, and ``Gallery(library)`` names it (both clients)."""

import asyncio
import json
import os
import re
from pathlib import Path

import pytest

from imagecluster.plugin_api import AsyncClient, Client, NotInLibrary, PhotoNotFound


def _data(index):
    text = Path(index).read_text(encoding="utf-8")
    return json.loads(re.search(r'id="gallery-data">(.*?)</script>', text, re.S).group(1))


def test_each_tree_gets_its_gallery_and_gallery_names_it(photo_daemon, tmp_path):
    lib = photo_daemon.library
    with photo_daemon.client() as client:
        tree, count = client.write_tree(lib, 0.8, tmp_path / "tree")
        index = client.gallery(lib)  # waits while the gallery is written, after the call answered
        assert index == str(tmp_path / "tree-gallery" / "index.html")
        data = _data(index)
        assert data["sim"] == 0.8 and len(data["names"]) == client.status().indexed
        thumbs = Path(index).parent / ".thumbs"
        assert sorted(p.name for p in thumbs.iterdir()) == sorted(t for t in data["thumbs"] if t)
        assert len(list(thumbs.iterdir())) == len(data["names"])
        with pytest.raises(NotInLibrary):
            client.gallery(str(tmp_path))

        client.write_tree(lib, 0.6, tmp_path / "other")

        async def asked():
            async with AsyncClient(bus_address=photo_daemon.address) as twin:
                return await twin.gallery(lib)

        newest = asyncio.run(asked())
        assert newest == str(tmp_path / "other-gallery" / "index.html") and _data(newest)["sim"] == 0.6


def test_gallery_false_in_the_config_writes_none_and_says_so(session_bus, start_daemon, burst_library):
    """A big library's user can turn the daemon's galleries (and their thumbnails) off."""
    start_daemon(burst_library, config={"gallery": False, "settle_seconds": 0.2})
    with Client() as client:
        assert client.wait_idle(120) and client.status().indexed == 6
        tree, count = client.write_tree(burst_library, 0.7, burst_library / "groups")
        assert count == 2 and Path(tree, ".imagecluster-tree").is_file()
        with pytest.raises(PhotoNotFound, match=r"galleries are off \(gallery = false in the config\)"):
            client.gallery(burst_library)
    store_folder = burst_library / ".imagecluster"
    assert not (burst_library / "groups-gallery").exists() and not list(store_folder.glob("thumbs-*"))


def test_the_daemon_keeps_thumbnails_as_it_fingerprints_and_its_gallery_uses_them(
        session_bus, start_daemon, burst_library):
    """The worker writes each photo's thumbnail from the decode that fingerprints it; the gallery makes none."""
    start_daemon(burst_library, config={"settle_seconds": 0.2})
    with Client() as client:
        assert client.wait_idle(120) and client.status().indexed == 6
        thumbs = burst_library / ".imagecluster" / "thumbs-256"
        kept = {p.name: os.stat(p).st_ino for p in thumbs.glob("*.jpg")}
        assert len(kept) == 6 and not (thumbs / "index.json").exists()  # the worker lists them nowhere
        client.cluster_library(burst_library, 0.7)
        data = _data(client.gallery(burst_library))
    assert sorted(data["thumbs"]) == sorted(kept) and min(data["tw"]) > 0
    assert {p.name: os.stat(p).st_ino for p in thumbs.glob("*.jpg")} == kept  # the same files: none made again
    assert sorted(json.loads((thumbs / "index.json").read_text())) == sorted(kept)
