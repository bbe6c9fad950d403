"""The examples of doc/plugin-guide.rst, copied out of it, built and run against the real daemon.

Each example is found as the ``.. code-block:: LANGUAGE`` blocks of the
section with a given title; a section or block that is not there fails the
test (so an edit of the guide cannot silently turn a test off). The C++
example is built with the guide's own commands (``moc``, ``g++`` against
Qt 6; Debian: qt6-base-dev, g++), the Vala one with ``valac --pkg gio-2.0``
(valac, libglib2.0-dev). A test whose toolchain is missing skips and says
what to install (with IMAGECLUSTER_REQUIRE_EXAMPLES=1 it fails instead).
Each program then runs on the private session bus of a real daemon, and
what it prints is compared with what the Python client gets from the same
daemon. The binding generators' commands are tested in
test_binding_generators.py; the helpers both use are in _guide.py.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imagecluster.daemon._install import install_service
from imagecluster.plugin_api import BUS_NAME

from _guide import (
    CONTRACT,
    CPP,
    DATA,
    PYTHON,
    RUN_TIMEOUT,
    SHELL,
    VALA,
    code_blocks,
    compile_in,
    pkg_config,
    qt_moc,
    run_program,
    skip_unless,
)


def test_the_examples_are_found():
    assert "Q_OBJECT" in code_blocks(CPP, "cpp")[0]
    assert "g++" in code_blocks(CPP, "sh")[0]
    assert "[DBus (name = " in code_blocks(VALA, "vala")[0]
    blocking, asynchronous = code_blocks(PYTHON, "python", count=2)
    assert "Client()" in blocking and "AsyncClient()" in asynchronous
    assert "imagecluster remote cluster" in code_blocks(SHELL, "bash")[0]
    gdbus_codegen, qdbusxml2cpp = code_blocks(CONTRACT, "sh", count=2)
    assert "gdbus-codegen" in gdbus_codegen and "qdbusxml2cpp" in qdbusxml2cpp
    assert "qDBusRegisterMetaType" in code_blocks(CONTRACT, "cpp")[0]


def build_cpp(folder):
    qt_moc()
    source = folder / "imagecluster_demo.cpp"
    source.write_text(code_blocks(CPP, "cpp")[0], encoding="utf-8")
    output = compile_in(["sh", "-ec", code_blocks(CPP, "sh")[0]], folder)  # the guide's build commands
    warnings = [line for line in output.splitlines() if "warning" in line]
    assert not warnings, "the C++ example compiles with warnings:\n" + output
    return folder / "imagecluster_demo"


def build_vala(folder):
    skip_unless(shutil.which("valac"), "valac is missing (Debian: valac)")
    skip_unless(pkg_config("--exists", "gio-2.0") is not None,
                 "GLib's development files are missing (Debian: libglib2.0-dev, pkg-config)")
    source = folder / "imagecluster_demo.vala"
    source.write_text(code_blocks(VALA, "vala")[0], encoding="utf-8")
    output = compile_in(["valac", "--pkg", "gio-2.0", source.name], folder)
    # Vala's own warnings; the C compiler's about valac's generated C are valac's business.
    warnings = [line for line in output.splitlines() if re.search(r"\.vala:[\d.-]+: warning:", line)]
    assert not warnings, "the Vala example compiles with warnings:\n" + output
    return folder / "imagecluster_demo"


# What each program prints (C++: qInfo, to stderr, strings quoted; Vala: stdout).
DEMOS = {
    "cpp": {
        "build": build_cpp,
        "status": r'^model "(\w+)" indexed (\d+) pending (\d+)$',
        "written": r'^(\d+) clusters in "(.*)"$',
        "progress": "{} fingerprinted, {} to go",
        "not_in_library": (1, "org.imagecluster.ImageCluster1.Error.NotInLibrary"),
        "not_installed": "org.freedesktop.DBus.Error.ServiceUnknown",
    },
    "vala": {
        "build": build_vala,
        "status": r"^model (\w+), (\d+) indexed, (\d+) pending$",
        "written": r"^(\d+) clusters in (.*)$",
        "progress": "{} fingerprinted, {} to go",
        "not_in_library": (5, "not in a watched library: "
                              "GDBus.Error:org.imagecluster.ImageCluster1.Error.NotInLibrary"),
        "not_installed": "imagecluster is not installed: run `imagecluster install-service`",
    },
}


@pytest.fixture(scope="module", params=sorted(DEMOS))
def demo(request, tmp_path_factory):
    """(language, the built example program, what it prints); skips where the toolchain is missing."""
    language = request.param
    folder = tmp_path_factory.mktemp(f"example_{language}")
    return language, DEMOS[language]["build"](folder), DEMOS[language]


def printed_clusters(output):
    """The ``cluster N PATH`` lines, as a list of clusters (lists of paths) in N's order."""
    clusters = {}
    for number, path in re.findall(r"^cluster (\d+) (.+)$", output, re.M):
        clusters.setdefault(int(number), []).append(path)
    assert sorted(clusters) == list(range(1, len(clusters) + 1)), output
    return [clusters[n] for n in sorted(clusters)]


# ------------------------------------------------- the compiled examples


def test_the_example_shows_the_clusters(demo, photo_daemon):
    language, program, prints = demo
    photo = photo_daemon.library / "2024" / "café_ß.jpg"  # a UTF-8 path, through argv and D-Bus
    code, output = run_program([program, photo], env=photo_daemon.env)
    assert code == 0, output

    with photo_daemon.client() as client:
        status = client.status()
        expected = client.cluster(None)  # the daemon's Sim, as the example asks
        fingerprint = client.fingerprint(photo)
    assert len(expected) >= 2

    model, indexed, pending = re.search(prints["status"], output, re.M).groups()
    assert (model, int(indexed), int(pending)) == (status.model, status.indexed, status.pending)
    assert printed_clusters(output) == expected
    assert re.search(rf"^{len(fingerprint)} values$", output, re.M), output
    # ClustersWritten arrived (before the Cluster reply, as the daemon sends it).
    n, tree = re.search(prints["written"], output, re.M).groups()
    assert (int(n), Path(tree).resolve()) == (len(expected), (photo_daemon.library / "clusters").resolve())


def test_the_example_reports_a_photo_outside_the_libraries(demo, photo_daemon, tmp_path):
    language, program, prints = demo
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(DATA / "dog.jpg", outside)
    code, output = run_program([program, outside], env=photo_daemon.env)
    status, message = prints["not_in_library"]
    assert code == status and message in output, output
    assert "values" not in output


def test_the_example_without_an_installed_daemon(demo, session_bus):
    language, program, prints = demo
    code, output = run_program([program])
    assert code == 3 and prints["not_installed"] in output, output
    assert "cluster 1" not in output


def _stop_activated_daemon(wait_until):
    """SIGTERM the daemon the bus started (as systemd would) and wait until its name is gone."""
    def busctl(*args):
        return subprocess.run(["busctl", "--user", "--json=short", "call", "org.freedesktop.DBus",
                               "/org/freedesktop/DBus", "org.freedesktop.DBus", *args],
                              capture_output=True, text=True, check=True, timeout=30).stdout

    os.kill(json.loads(busctl("GetConnectionUnixProcessID", "s", BUS_NAME))["data"][0], signal.SIGTERM)
    wait_until(lambda: json.loads(busctl("NameHasOwner", "s", BUS_NAME))["data"] == [False],
               what="the activated daemon going away")


def test_the_example_starts_the_daemon(demo, session_bus, tmp_path, wait_until):
    language, program, prints = demo
    library = tmp_path / "activated library"
    library.mkdir()
    install_service(unit_dir=tmp_path / "units", dbus_dir=session_bus.servicedir,
                    daemon_args=["--library", str(library)])
    try:
        code, output = run_program([program])
    finally:
        if shutil.which("busctl"):
            _stop_activated_daemon(wait_until)
    assert code == 0, output
    assert re.search(prints["status"], output, re.M).group(2, 3) == ("0", "0"), output
    assert printed_clusters(output) == []
    n, tree = re.search(prints["written"], output, re.M).groups()
    assert (n, Path(tree).resolve()) == ("0", (library / "clusters").resolve())


def _add_photo(shared, name):
    """Copy a real photo into ``shared``'s library (written whole, then renamed in, as a download would)."""
    partial = shared.library / (name + ".part")
    shutil.copyfile(DATA / "dog.jpg", partial)
    os.rename(partial, shared.library / name)


def test_the_example_follows_the_progress(demo, gated_daemon, hold, wait_until):
    """While its Cluster call is held open, the example prints the Progress of a photo being indexed."""
    language, program, prints = demo
    seen = []
    env = dict(gated_daemon.env, LC_ALL="C.UTF-8")
    with gated_daemon.client() as client:
        before = client.status().indexed
        client.on_progress(lambda indexed, pending: seen.append((indexed, pending)))
        with hold(gated_daemon):
            proc = subprocess.Popen([str(program)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                # Clustering: the program's call is in, so are its signal subscriptions (sent before it).
                wait_until(lambda: proc.poll() is not None or client.status().state == "clustering",
                           what="the example's Cluster call")
                assert proc.poll() is None, proc.communicate()[0].decode()
                _add_photo(gated_daemon, f"progress_{language}.jpg")
                wait_until(lambda: (before + 1, 0) in seen, what="Progress with the new photo indexed")
            except BaseException:
                proc.kill()
                proc.communicate()
                raise
        try:
            output, _ = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        output = output.decode("utf-8")
        assert proc.returncode == 0, output
        assert prints["progress"].format(before + 1, 0) in output.splitlines(), output
        assert printed_clusters(output) == client.cluster(None)


# ------------------------------------------------------ Python and shell


def test_the_python_example(photo_daemon, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code_blocks(PYTHON, "python", count=2)[0], encoding="utf-8")
    code, output = run_program([sys.executable, script], env=photo_daemon.env, cwd=tmp_path)
    assert code == 0, output
    with photo_daemon.client() as client:
        expected = client.cluster(0.9)
    assert expected, "sim 0.9 finds no cluster in the test photos: the example shows nothing"
    # The callbacks print from the client's callback thread: their lines may interleave with the others.
    for number, cluster in enumerate(expected, 1):
        assert f"imagecluster/cluster {number}: {cluster}" in output, output
    assert f"imagecluster/cluster {len(expected) + 1}:" not in output
    tree = (photo_daemon.library / "clusters").resolve()
    assert f"{len(expected)} clusters in {tree}" in output, output  # on_clusters_written
    assert "/etc/passwd is not inside a library" in output  # NotInLibrary, caught
    assert "still being analysed" not in output  # everything is indexed


def test_the_async_python_example(photo_daemon, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code_blocks(PYTHON, "python", count=2)[1], encoding="utf-8")
    code, output = run_program([sys.executable, script], env=photo_daemon.env, cwd=tmp_path)
    assert code == 0, output
    with photo_daemon.client() as client:
        n = len(client.cluster(None))
    assert f"{(photo_daemon.library / 'clusters').resolve()} {n}" in output.splitlines(), output


def _shell_tools(folder):
    """A bin folder: ``imagecluster`` (this interpreter's) and ``tag-photo`` (records its arguments)."""
    skip_unless(shutil.which("bash"), "bash is missing")
    skip_unless(shutil.which("jq"), "jq is missing (Debian: jq); the shell example uses it")
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    tags = folder / "tags.tsv"
    (bin_dir / "imagecluster").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m imagecluster "$@"\n')
    (bin_dir / "tag-photo").write_text(f'#!/bin/sh\nprintf "%s\\t%s\\n" "$1" "$2" >> "{tags}"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir, tags


def test_the_shell_example(photo_daemon, tmp_path):
    bin_dir, tags = _shell_tools(tmp_path)
    script = tmp_path / "example.sh"
    script.write_text(code_blocks(SHELL, "bash")[0], encoding="utf-8")
    env = dict(photo_daemon.env, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    code, output = run_program(["bash", script], env=env, cwd=tmp_path)
    assert code == 0, output
    with photo_daemon.client() as client:
        expected = client.cluster(0.9)
    assert expected
    tagged = [tuple(line.split("\t")) for line in tags.read_text(encoding="utf-8").splitlines()]
    assert tagged == [(f"imagecluster/cluster {n}", photo)
                      for n, cluster in enumerate(expected, 1) for photo in cluster]


def test_the_shell_example_without_an_installed_daemon(session_bus, tmp_path):
    bin_dir, tags = _shell_tools(tmp_path)
    script = tmp_path / "example.sh"
    script.write_text(code_blocks(SHELL, "bash")[0], encoding="utf-8")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    code, output = run_program(["bash", script], env=env, cwd=tmp_path, timeout=120)
    assert "imagecluster is not installed: run imagecluster install-service" in output, output
    assert not tags.exists()


