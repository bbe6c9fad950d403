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
daemon. So does a program using the typed proxy that the guide's
``qdbusxml2cpp`` command makes of the shipped XML (Debian: qt6-base-dev-tools),
with the guide's type registrations.
"""

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagecluster.daemon._install import install_service
from imagecluster.plugin_api import BUS_NAME, interface_xml

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "doc" / "plugin-guide.rst"
DATA = ROOT / "tests" / "data"

CPP = "C++ / Qt (a digiKam DPlugin)"
VALA = "Vala (a Shotwell-style GLib application)"
PYTHON = "Python"
SHELL = "Shell (or any program that can run a command)"
CONTRACT = "The contract"

RUN_TIMEOUT = 300  # seconds; a first Cluster or an activation on a loaded 2-core machine


# ------------------------------------------------------------ the guide


def sections(text):
    """{title: [lines]} of the guide's ``====``-underlined sections."""
    lines = text.splitlines()
    found, title, body = {}, None, []
    for i, line in enumerate(lines):
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.strip() and underline and set(underline) == {"="} and len(underline) >= len(line.strip()):
            if title is not None:
                found[title] = body
            title, body = line.strip(), []
        elif title is not None:
            body.append(line)
    if title is not None:
        found[title] = body
    return found


def code_blocks(title, language, count=1):
    """The ``count`` ``.. code-block:: language`` blocks of the guide's section ``title``, as text."""
    found = sections(GUIDE.read_text(encoding="utf-8"))
    assert title in found, f"doc/plugin-guide.rst has no section {title!r} (the test looks its examples up there)"
    lines = found[title]
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}" or line != line.lstrip():
            continue
        body = []
        for following in lines[i + 1:]:
            if following.strip() and not following.startswith((" ", "\t")):
                break
            body.append(following)
        code = textwrap.dedent("\n".join(body)).strip("\n")
        code = "\n".join(line for line in code.splitlines() if not re.match(r":\w[\w-]*:", line))  # options
        blocks.append(code.strip("\n") + "\n")
    assert len(blocks) == count, (
        f"section {title!r} of doc/plugin-guide.rst has {len(blocks)} ``.. code-block:: {language}`` "
        f"blocks, the test expects {count}"
    )
    assert all(block.strip() for block in blocks), f"an empty ``.. code-block:: {language}`` in {title!r}"
    return blocks


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


def test_the_guide_is_valid_restructuredtext():
    docutils_core = pytest.importorskip("docutils.core")
    pytest.importorskip("pygments")  # the code blocks' languages must be ones Pygments knows
    messages = io.StringIO()
    docutils_core.publish_doctree(
        GUIDE.read_text(encoding="utf-8"), source_path=str(GUIDE),
        settings_overrides={"warning_stream": messages, "report_level": 1, "halt_level": 5},
    )
    assert messages.getvalue() == ""


# --------------------------------------------------------------- building


# Set to 1 where the toolchains are installed (as CI may): a missing one is then a failure, not a skip.
REQUIRE = os.environ.get("IMAGECLUSTER_REQUIRE_EXAMPLES") == "1"


def _skip_unless(condition, reason):
    if not condition:
        if REQUIRE:
            pytest.fail(f"{reason}, and IMAGECLUSTER_REQUIRE_EXAMPLES=1")
        pytest.skip(reason)


def _pkg_config(*args):
    if not shutil.which("pkg-config"):
        return None
    answer = subprocess.run(["pkg-config", *args], capture_output=True, text=True, timeout=60)
    return answer.stdout.strip() if answer.returncode == 0 else None


def _compile(argv, folder):
    answer = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=600)
    assert answer.returncode == 0, f"{' '.join(argv)} failed:\n{answer.stdout}\n{answer.stderr}"
    return answer.stdout + answer.stderr


def _qt_moc():
    """Qt 6's moc; skips (or fails) where g++ or Qt 6's D-Bus development files are missing."""
    _skip_unless(shutil.which("g++"), "g++ is missing (Debian: g++)")
    _skip_unless(_pkg_config("--exists", "Qt6DBus") is not None,
                 "Qt 6 D-Bus development files are missing (Debian: qt6-base-dev, pkg-config)")
    moc = Path(_pkg_config("--variable=libexecdir", "Qt6Core") or "/nonexistent") / "moc"
    _skip_unless(os.access(moc, os.X_OK), f"Qt 6's moc is missing ({moc}; Debian: qt6-base-dev)")
    return moc


def build_cpp(folder):
    _qt_moc()
    source = folder / "imagecluster_demo.cpp"
    source.write_text(code_blocks(CPP, "cpp")[0], encoding="utf-8")
    output = _compile(["sh", "-ec", code_blocks(CPP, "sh")[0]], folder)  # the guide's build commands
    warnings = [line for line in output.splitlines() if "warning" in line]
    assert not warnings, "the C++ example compiles with warnings:\n" + output
    return folder / "imagecluster_demo"


def build_vala(folder):
    _skip_unless(shutil.which("valac"), "valac is missing (Debian: valac)")
    _skip_unless(_pkg_config("--exists", "gio-2.0") is not None,
                 "GLib's development files are missing (Debian: libglib2.0-dev, pkg-config)")
    source = folder / "imagecluster_demo.vala"
    source.write_text(code_blocks(VALA, "vala")[0], encoding="utf-8")
    output = _compile(["valac", "--pkg", "gio-2.0", source.name], folder)
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


def run_program(argv, env=None, cwd=None, timeout=RUN_TIMEOUT):
    """Run a program; (exit status, stdout and stderr together as text)."""
    env = dict(os.environ if env is None else env, LC_ALL="C.UTF-8")  # as in a desktop session
    answer = subprocess.run(list(map(str, argv)), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=timeout)
    return answer.returncode, answer.stdout.decode("utf-8")


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
    _skip_unless(shutil.which("bash"), "bash is missing")
    _skip_unless(shutil.which("jq"), "jq is missing (Debian: jq); the shell example uses it")
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


# ---------------------------------------------------------- the XML


def test_the_binding_generator_command(tmp_path):
    _skip_unless(shutil.which("gdbus-codegen"), "gdbus-codegen is missing (Debian: libglib2.0-dev-bin)")
    _skip_unless(shutil.which("gcc"), "gcc is missing (Debian: gcc)")
    cflags = _pkg_config("--cflags", "gio-2.0", "gio-unix-2.0")
    _skip_unless(cflags is not None, "GLib's development files are missing (Debian: libglib2.0-dev, pkg-config)")
    (tmp_path / "org.imagecluster.ImageCluster1.xml").write_text(interface_xml(), encoding="utf-8")
    commands = code_blocks(CONTRACT, "sh", count=2)[0]
    code, output = run_program(["sh", "-ec", commands], cwd=tmp_path, timeout=120)
    assert code == 0, output
    header = (tmp_path / "imagecluster.h").read_text()
    for method in ("cluster", "cluster_library", "write_tree", "fingerprint", "similar", "wait_idle"):
        assert f"ic_image_cluster1_call_{method}_sync (" in header, method
    _compile(["gcc", "-c", "imagecluster.c", *cflags.split()], tmp_path)


# A plugin's calls through the typed proxy qdbusxml2cpp makes of the shipped XML; prints one JSON
# document. argv: photo, a photo outside the libraries, sim for Cluster, sim for Similar; options
# --unregistered (skip the guide's registrations, to show they are needed), --only-similar.
TYPED_PROXY_PROGRAM = r"""
#include <QCoreApplication>
#include <QEventLoop>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <cstdio>
#include <type_traits>

#include "imagecluster_proxy.h"

// The types the guide names are the ones the proxy returns.
static_assert(std::is_same_v<decltype(std::declval<ImageClusterProxy>().Cluster(0)),
                             QDBusPendingReply<QList<QStringList>>>);
static_assert(std::is_same_v<decltype(std::declval<ImageClusterProxy>().ClusterLibrary({}, 0)),
                             QDBusPendingReply<QList<QStringList>>>);
static_assert(std::is_same_v<decltype(std::declval<ImageClusterProxy>().Fingerprint({})),
                             QDBusPendingReply<QList<double>>>);
static_assert(std::is_same_v<decltype(std::declval<ImageClusterProxy>().Similar({}, 0)),
                             QDBusPendingReply<QList<QPair<QString, double>>>>);

static void registerImageClusterTypes()
{
#include "guide_registration.inc"
}

// Wait for a reply while the event loop runs (and delivers the proxy's signals); its error, if any.
template <typename Reply>
static QJsonValue finish(Reply &reply)
{
    QDBusPendingCallWatcher watcher(reply);
    QEventLoop loop;
    QObject::connect(&watcher, &QDBusPendingCallWatcher::finished, &loop, &QEventLoop::quit);
    if (!watcher.isFinished())
        loop.exec();
    if (reply.isError())
        return QJsonArray{reply.error().name(), reply.error().message()};
    return QJsonValue();
}

static QJsonValue clusters(QDBusPendingReply<QList<QStringList>> reply)
{
    QJsonValue error = finish(reply);
    if (!error.isNull())
        return QJsonObject{{"error", error}};
    QJsonArray found;
    for (const QStringList &cluster : reply.value())
        found.append(QJsonArray::fromStringList(cluster));
    return found;
}

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    const QStringList args = app.arguments();
    if (args.size() < 5)
        return 2;
    const QString photo = args[1], outside = args[2];
    const double sim = args[3].toDouble(), similarSim = args[4].toDouble();
    if (!args.contains("--unregistered"))
        registerImageClusterTypes();

    ImageClusterProxy ic("org.imagecluster.ImageCluster1", "/org/imagecluster/ImageCluster1",
                         QDBusConnection::sessionBus());
    ic.setTimeout(10 * 60 * 1000);
    QJsonArray written;
    QObject::connect(&ic, &ImageClusterProxy::ClustersWritten, [&written](const QString &tree, uint n) {
        written.append(QJsonArray{tree, qint64(n)});
    });

    QJsonObject out;
    out["model"] = ic.model();
    out["libraries"] = QJsonArray::fromStringList(ic.libraries());
    if (!args.contains("--only-similar")) {
        out["cluster"] = clusters(ic.Cluster(sim));
        QJsonObject byLibrary;
        for (const QString &library : ic.libraries())
            byLibrary[library] = clusters(ic.ClusterLibrary(library, sim));
        out["cluster_library"] = byLibrary;
        out["written"] = written;
    }

    auto fingerprint = ic.Fingerprint(photo);
    QJsonValue error = finish(fingerprint);
    if (error.isNull()) {
        QJsonArray values;
        for (double value : fingerprint.value())
            values.append(value);
        out["fingerprint"] = values;
    } else {
        out["fingerprint"] = QJsonObject{{"error", error}};
    }

    auto similar = ic.Similar(photo, similarSim);
    error = finish(similar);
    if (error.isNull()) {
        QJsonArray matches;
        for (const auto &match : similar.value())
            matches.append(QJsonArray{match.first, match.second});
        out["similar"] = matches;
    } else {
        out["similar"] = QJsonObject{{"error", error}};
    }

    auto notInLibrary = ic.Fingerprint(outside);
    out["outside"] = finish(notInLibrary);

    std::fputs(QJsonDocument(out).toJson(QJsonDocument::Compact).constData(), stdout);
    return 0;
}
"""


@pytest.fixture(scope="module")
def typed_proxy(tmp_path_factory):
    """A program using the proxy the guide's qdbusxml2cpp command makes of the shipped XML."""
    moc = _qt_moc()
    generator = Path(_pkg_config("--variable=bindir", "Qt6Core") or "/nonexistent") / "qdbusxml2cpp"
    _skip_unless(os.access(generator, os.X_OK),
                 f"Qt 6's qdbusxml2cpp is missing ({generator}; Debian: qt6-base-dev-tools)")
    folder = tmp_path_factory.mktemp("typed_proxy")
    (folder / "org.imagecluster.ImageCluster1.xml").write_text(interface_xml(), encoding="utf-8")
    _compile(["sh", "-ec", code_blocks(CONTRACT, "sh", count=2)[1]], folder)  # the guide's command
    (folder / "guide_registration.inc").write_text(code_blocks(CONTRACT, "cpp")[0], encoding="utf-8")
    (folder / "typed_proxy.cpp").write_text(TYPED_PROXY_PROGRAM, encoding="utf-8")
    _compile([str(moc), "imagecluster_proxy.h", "-o", "moc_imagecluster_proxy.cpp"], folder)
    output = _compile(["g++", "-Wall", "-fPIC", "typed_proxy.cpp", "imagecluster_proxy.cpp",
                       "moc_imagecluster_proxy.cpp", "-o", "typed_proxy",
                       *_pkg_config("--cflags", "--libs", "Qt6DBus").split()], folder)
    assert "warning" not in output, "the generated proxy compiles with warnings:\n" + output
    return folder / "typed_proxy"


CLUSTER_SIM, SIMILAR_SIM = 0.9, 0.5  # the photos give two clusters, and three matches (not all six)


def _run_typed_proxy(program, shared, photo, outside, *options):
    """(exit status, stdout, stderr) of the typed proxy program on ``shared``'s bus."""
    answer = subprocess.run([str(program), str(photo), str(outside), repr(CLUSTER_SIM), repr(SIMILAR_SIM), *options],
                            env=dict(shared.env, LC_ALL="C.UTF-8"), capture_output=True, timeout=RUN_TIMEOUT)
    return answer.returncode, answer.stdout.decode("utf-8"), answer.stderr.decode("utf-8", "replace")


def test_the_qt_binding_generator_command(typed_proxy, photo_daemon, tmp_path):
    """The typed Qt proxy made of the shipped XML, with the guide's registrations, gets what Python gets."""
    photo = photo_daemon.library / "2024" / "café_ß.jpg"
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(DATA / "dog.jpg", outside)
    code, output, errors = _run_typed_proxy(typed_proxy, photo_daemon, photo, outside)
    assert code == 0, errors
    got = json.loads(output)

    with photo_daemon.client() as client:
        status = client.status()
        clusters = client.cluster(CLUSTER_SIM)
        (library,) = status.libraries
        library_clusters = client.cluster_library(library, CLUSTER_SIM)
        fingerprint = client.fingerprint(photo)
        similar = client.similar(photo, SIMILAR_SIM)
    assert len(clusters) >= 2 and similar, "the test photos give nothing to compare"
    assert (got["model"], got["libraries"]) == (status.model, [library])
    assert got["cluster"] == clusters
    assert got["cluster_library"] == {library: library_clusters}
    # ClustersWritten through the proxy's typed signal: once per library and call.
    tree = (photo_daemon.library / "clusters").resolve()
    assert [(Path(t).resolve(), n) for t, n in got["written"]] == [(tree, len(clusters)), (tree, len(library_clusters))]
    # ad: the daemon sends its float32 values as doubles; both sides see the same ones.
    assert len(got["fingerprint"]) == len(fingerprint)
    assert all(float(a) == b for a, b in zip(fingerprint, got["fingerprint"]))
    assert [tuple(match) for match in got["similar"]] == [tuple(match) for match in similar]
    assert got["outside"] and got["outside"][0] == "org.imagecluster.ImageCluster1.Error.NotInLibrary", got


@pytest.mark.parametrize("only, qt_type", [((), "QList<QList<QString>>"),
                                           (("--only-similar",), "QList<std::pair<QString,double>>")],
                         ids=["aas", "a(sd)"])
def test_the_qt_binding_needs_the_registrations(typed_proxy, photo_daemon, only, qt_type):
    """What the guide says: without its qDBusRegisterMetaType calls, the first aas (a(sd)) call aborts."""
    photo = photo_daemon.library / "2024" / "café_ß.jpg"
    code, output, errors = _run_typed_proxy(typed_proxy, photo_daemon, photo, photo, "--unregistered", *only)
    assert code == -signal.SIGABRT and not output, (code, output, errors)
    assert f"type {qt_type} is not registered with QtDBus" in errors, errors
