"""``imagecluster remote``: every command and every exit status, against the in-memory bus.

The command line is parsed by the real parser and run by the real
``run_remote``; only the bus is :class:`~imagecluster.plugin_api._mockbus.MockBus`.
``test_remote.py`` runs the same commands as processes against the real daemon.
"""

import asyncio
import json

import pytest
from dbus_fast import DBusError

from imagecluster.cli import _build_parser
from imagecluster.plugin_api._mockbus import FakeDaemon, MockBus
from imagecluster.plugin_api._remote import EXIT_CODES, run_remote

pytestmark = pytest.mark.mockbus

LIB = "/photos"
PHOTOS = {
    f"{LIB}/a/dog_1.jpg": [1.0, 0.0],
    f"{LIB}/a/dog_2.jpg": [0.99, 0.05],
    f"{LIB}/b/cat.jpg": [0.0, 1.0],
    f"{LIB}/notes.jpg": None,
}


def remote(capsys, bus, *argv):
    """(exit status, stdout, stderr) of ``imagecluster remote ARGV`` on ``bus``."""
    args = _build_parser().parse_args(["remote", *argv])
    code = run_remote(args, transport=bus)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def bus():
    return MockBus(FakeDaemon([LIB, "/mnt/card"], PHOTOS, unmounted=["/mnt/card"], sim=0.9))


def test_status_text_and_json(capsys, bus):
    code, out, _ = remote(capsys, bus, "status")
    assert code == 0 and "libraries: /photos\n           /mnt/card" in out and "indexed:   3" in out
    code, out, _ = remote(capsys, bus, "status", "--json")
    assert code == 0 and json.loads(out)["sim"] == 0.9 and json.loads(out)["libraries"] == [LIB, "/mnt/card"]


def test_cluster_json_takes_the_daemons_sim(capsys, bus):
    code, out, _ = remote(capsys, bus, "cluster", "--json")
    assert code == 0
    assert json.loads(out) == {"sim": 0.9, "clusters": [[f"{LIB}/a/dog_1.jpg", f"{LIB}/a/dog_2.jpg"]],
                               "trees": [f"{LIB}/clusters"]}


def test_cluster_text_names_folders_as_the_tree_does(capsys, bus):
    code, out, _ = remote(capsys, bus, "cluster", "--library", LIB, "--sim", "0.95")
    assert code == 0
    assert "cluster_with_2/cluster_0: 2 photos\n" in out and f"tree written: {LIB}/clusters" in out
    code, out, _ = remote(capsys, bus, "cluster", "--library", LIB, "--sim", "1")
    assert "0 clusters with 0 photos at sim 1; try a lower --sim" in out


def test_cluster_to_a_tree(capsys, bus, tmp_path):
    code, out, _ = remote(capsys, bus, "cluster", "--library", LIB, "--out", str(tmp_path / "t"), "--json")
    assert code == 0 and json.loads(out) == {"sim": 0.9, "tree": str(tmp_path / "t"), "n_clusters": 1}


def test_fingerprint_and_similar(capsys, bus):
    code, out, _ = remote(capsys, bus, "fingerprint", f"{LIB}/b/cat.jpg")
    assert code == 0 and out == "0\n1\n"
    code, out, _ = remote(capsys, bus, "similar", f"{LIB}/a/dog_1.jpg", "--json")
    document = json.loads(out)
    assert code == 0 and [m["path"] for m in document["matches"]] == [f"{LIB}/a/dog_2.jpg"]


def test_wait_idle_and_still_busy(capsys, bus):
    code, out, _ = remote(capsys, bus, "wait", "1", "--quiet")
    assert code == 0 and out == "idle\n"
    bus.handler.Pending = 4
    code, out, _ = remote(capsys, bus, "wait", "0", "--quiet", "--json")
    assert code == 4 and json.loads(out) == {"idle": False, "pending": 4}


EXIT = {kind.__name__: code for kind, code, _ in EXIT_CODES}


@pytest.mark.parametrize("argv, kind", [
    (["fingerprint", "/elsewhere/x.jpg"], "NotInLibrary"),
    (["fingerprint", f"{LIB}/missing.jpg"], "PhotoNotFound"),
    (["fingerprint", f"{LIB}/notes.jpg"], "NotAnImage"),
    (["cluster", "--library", "/mnt/card"], "LibraryNotFound"),
    (["cluster", "--out", "/tmp/tree"], "InvalidParameter"),  # --out needs --library
])
def test_each_failure_has_its_exit_status_and_json(capsys, bus, argv, kind):
    code, out, err = remote(capsys, bus, *argv, "--json")
    assert code == EXIT[kind] and code != 0
    document = json.loads(out)
    assert document["error"] == kind and document["exit_code"] == code
    assert err.startswith("imagecluster: error: ")


def test_no_daemon_is_status_3(capsys):
    code, out, err = remote(capsys, MockBus(None), "status", "--json")
    assert code == 3 and json.loads(out)["error"] == "DaemonNotAvailable" and "install-service" in err


def test_a_timeout_is_status_4_and_says_how_to_wait_longer(capsys, bus):
    bus.handler.gate = asyncio.Event()
    code, _, err = remote(capsys, bus, "cluster", "--sim", "0.5", "--timeout", "0.2")
    assert code == 4 and "--timeout SECONDS" in err


class Broken(FakeDaemon):
    def __init__(self, name):
        super().__init__([LIB], PHOTOS)
        self.name = name

    async def Cluster(self, sim):
        raise DBusError(self.name, "as the daemon says it")


@pytest.mark.parametrize("name, code", [
    ("org.imagecluster.ImageCluster1.Error.NotOurTree", 8),
    ("org.freedesktop.DBus.Error.NoReply", 9),
    ("org.imagecluster.ImageCluster1.Error.Failed", 1),
])
def test_daemon_errors_are_their_exit_status(capsys, name, code):
    status, out, _ = remote(capsys, MockBus(Broken(name)), "cluster", "--sim", "0.5", "--json")
    assert status == code and json.loads(out)["exit_code"] == code
