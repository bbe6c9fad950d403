"""``imagecluster remote`` as a plugin runs it: real processes, real daemon, JSON, exit codes, no tracebacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagecluster.plugin_api._remote import EXIT_CODES

CATS = sorted(["cat_1.jpg", "cat_2.jpg", "cat_3.jpg", "café_ß.jpg"])
DOGS = ["dog_1.jpg", "dog_2.jpg", "dog_3.jpg"]


def remote(shared, *args, env=None):
    """Run ``imagecluster remote ARGS`` on ``shared``'s bus; (exit status, stdout bytes, stderr text)."""
    result = subprocess.run(
        [sys.executable, "-m", "imagecluster", "remote", *map(str, args)],
        env=env or shared.env, capture_output=True, timeout=300,
    )
    stderr = result.stderr.decode("utf-8")
    assert "Traceback" not in stderr, stderr
    return result.returncode, result.stdout, stderr


def test_cluster_json_is_utf8_without_escapes(photo_daemon):
    code, out, err = remote(photo_daemon, "cluster", "--sim", "0.7", "--json")
    assert code == 0, err
    assert b"\\u" not in out and "café_ß.jpg".encode("utf-8") in out
    document = json.loads(out.decode("utf-8"))
    assert document["sim"] == 0.7
    assert [sorted(os.path.basename(p) for p in c) for c in document["clusters"]] == [CATS, DOGS]
    assert document["trees"] == [str(photo_daemon.library / "clusters")]


def test_cluster_text_and_one_library(photo_daemon, tmp_path):
    lib = photo_daemon.library
    code, out, err = remote(photo_daemon, "cluster", "--library", lib)  # the daemon's sim, 0.7
    assert code == 0, err
    text = out.decode("utf-8")
    assert f"  {lib / '2024/café_ß.jpg'}" in text
    for name in ("cluster_with_4/cluster_0: 4 photos", "cluster_with_3/cluster_0: 3 photos"):  # as in the tree
        assert name in text and (lib / "clusters" / name.split(":")[0]).is_dir()
    assert "2 clusters with 7 photos at sim 0.7" in text and f"tree written: {lib / 'clusters'}" in text

    code, out, err = remote(photo_daemon, "cluster", "--library", lib, "--out", tmp_path / "tree", "--json")
    assert code == 0, err
    assert json.loads(out) == {"sim": 0.7, "tree": str(tmp_path / "tree"), "n_clusters": 2}


def test_fingerprint_similar_status_wait(photo_daemon, monkeypatch):
    lib = photo_daemon.library
    code, out, err = remote(photo_daemon, "fingerprint", lib / "2024/café_ß.jpg", "--json")
    assert code == 0, err
    document = json.loads(out.decode("utf-8"))
    assert document["path"] == str(lib / "2024/café_ß.jpg") and len(document["fingerprint"]) == 1280

    monkeypatch.chdir(lib)  # a relative path is taken from the current folder
    code, out, err = remote(photo_daemon, "fingerprint", "2024/café_ß.jpg")
    assert code == 0, err
    values = [float(v) for v in out.decode().split()]
    assert values == pytest.approx(document["fingerprint"], abs=1e-6)

    code, out, err = remote(photo_daemon, "similar", lib / "2024/café_ß.jpg", "--sim", "0.7", "--json")
    assert code == 0, err
    matches = json.loads(out)["matches"]
    assert sorted(os.path.basename(m["path"]) for m in matches) == ["cat_1.jpg", "cat_2.jpg", "cat_3.jpg"]

    code, out, err = remote(photo_daemon, "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert (status["libraries"], status["model"], status["indexed"]) == ([str(lib)], "lite0", 7)
    assert status["state"] == "idle"
    code, out, err = remote(photo_daemon, "status")
    assert code == 0 and "model:     lite0" in out.decode() and "indexed:   7" in out.decode()

    code, out, err = remote(photo_daemon, "wait", "5", "--json")
    assert (code, json.loads(out)) == (0, {"idle": True, "pending": 0})


@pytest.mark.parametrize("sim", ["high", "1.5", "-0.1", "nan"])
def test_a_bad_sim_is_a_usage_error(photo_daemon, sim):
    code, out, err = remote(photo_daemon, "cluster", "--sim", sim, "--json")
    assert code == 2 and out == b""
    assert "--sim" in err and ("not a number" in err or "outside 0..1" in err)


def test_each_error_kind_has_its_exit_code(photo_daemon, tmp_path):
    lib = photo_daemon.library
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    cases = [
        (5, "NotInLibrary", ["fingerprint", "/etc/passwd"]),
        (5, "NotInLibrary", ["cluster", "--library", tmp_path]),
        (6, "PhotoNotFound", ["fingerprint", lib / "2024/missing.jpg"]),
        (7, "NotAnImage", ["fingerprint", lib / "notes.jpg"]),
        (8, "NotOurTree", ["cluster", "--library", lib, "--out", foreign]),
        (2, "InvalidParameter", ["cluster", "--out", foreign]),  # --out needs --library
    ]
    for code, kind, args in cases:
        got, out, err = remote(photo_daemon, *args, "--json")
        assert got == code, (args, err)
        assert json.loads(out.decode("utf-8")) == {"error": kind, "message": err.strip()[len("imagecluster: error: "):],
                                                   "exit_code": code}
        assert err.startswith("imagecluster: error: ") and err.count("\n") == 1
    assert os.listdir(foreign) == ["keep.txt"]


def test_no_daemon_and_no_bus(session_bus, photo_daemon, tmp_path):
    env = dict(photo_daemon.env, DBUS_SESSION_BUS_ADDRESS=session_bus.address)  # a bus with no daemon
    code, out, err = remote(photo_daemon, "status", env=env)
    assert code == 3 and "imagecluster install-service" in err and "systemctl --user daemon-reload" in err

    env = {k: v for k, v in photo_daemon.env.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    code, out, err = remote(photo_daemon, "cluster", env=env)
    assert code == 3 and "DBUS_SESSION_BUS_ADDRESS is not set" in err


def test_timeout_and_still_busy(gated_daemon, hold):
    with hold(gated_daemon):
        code, out, err = remote(gated_daemon, "cluster", "--sim", "0.5", "--timeout", "0.5", "--json")
        assert code == 4 and "did not answer Cluster within 0.5 s" in err
        assert json.loads(out)["error"] == "DaemonTimeout"


def test_the_daemon_dying_mid_call(session_bus, start_daemon, tmp_path, wait_until):
    (tmp_path / "lib").mkdir()
    daemon = start_daemon(tmp_path / "lib", gate=tmp_path / "gate")
    call = subprocess.Popen([sys.executable, "-m", "imagecluster", "remote", "cluster", "--sim", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def clustering():
            state = subprocess.run([sys.executable, "-m", "imagecluster", "remote", "status", "--json"],
                                   capture_output=True, timeout=60)
            return json.loads(state.stdout)["state"] == "clustering"

        wait_until(clustering, what="the clustering to start")
        daemon.proc.kill()
        _, err = call.communicate(timeout=60)
    finally:
        if call.poll() is None:
            call.kill()
            call.communicate()
    assert call.returncode == 9
    assert b"went away before answering Cluster" in err and b"Traceback" not in err


def test_the_exit_codes_are_documented():
    text = (Path(__file__).parents[2] / "doc" / "plugin-guide.rst").read_text(encoding="utf-8")
    for kind, code, _ in EXIT_CODES:
        assert f"``{code}``" in text and kind.__name__ in text, kind
    for code in (0, 130):
        assert f"``{code}``" in text
