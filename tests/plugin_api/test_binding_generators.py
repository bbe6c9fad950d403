"""The binding generators of doc/plugin-guide.rst's "The contract", run on the shipped XML.

``gdbus-codegen`` (GLib; Debian: libglib2.0-dev-bin) must accept the file and
give C that compiles. ``qdbusxml2cpp`` (Qt 6; Debian: qt6-base-dev-tools)
must give a typed proxy that, with the guide's type registrations, gets from
a real daemon exactly what the Python client gets.
"""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from imagecluster.plugin_api import interface_xml

from _guide import CONTRACT, DATA, RUN_TIMEOUT, code_blocks, compile_in, pkg_config, qt_moc, run_program, skip_unless


def test_the_binding_generator_command(tmp_path):
    skip_unless(shutil.which("gdbus-codegen"), "gdbus-codegen is missing (Debian: libglib2.0-dev-bin)")
    skip_unless(shutil.which("gcc"), "gcc is missing (Debian: gcc)")
    cflags = pkg_config("--cflags", "gio-2.0", "gio-unix-2.0")
    skip_unless(cflags is not None, "GLib's development files are missing (Debian: libglib2.0-dev, pkg-config)")
    (tmp_path / "org.imagecluster.ImageCluster1.xml").write_text(interface_xml(), encoding="utf-8")
    commands = code_blocks(CONTRACT, "sh", count=2)[0]
    code, output = run_program(["sh", "-ec", commands], cwd=tmp_path, timeout=120)
    assert code == 0, output
    header = (tmp_path / "imagecluster.h").read_text()
    for method in ("cluster", "cluster_library", "write_tree", "fingerprint", "similar", "wait_idle"):
        assert f"ic_image_cluster1_call_{method}_sync (" in header, method
    compile_in(["gcc", "-c", "imagecluster.c", *cflags.split()], tmp_path)


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
    moc = qt_moc()
    generator = Path(pkg_config("--variable=bindir", "Qt6Core") or "/nonexistent") / "qdbusxml2cpp"
    skip_unless(os.access(generator, os.X_OK),
                 f"Qt 6's qdbusxml2cpp is missing ({generator}; Debian: qt6-base-dev-tools)")
    folder = tmp_path_factory.mktemp("typed_proxy")
    (folder / "org.imagecluster.ImageCluster1.xml").write_text(interface_xml(), encoding="utf-8")
    compile_in(["sh", "-ec", code_blocks(CONTRACT, "sh", count=2)[1]], folder)  # the guide's command
    (folder / "guide_registration.inc").write_text(code_blocks(CONTRACT, "cpp")[0], encoding="utf-8")
    (folder / "typed_proxy.cpp").write_text(TYPED_PROXY_PROGRAM, encoding="utf-8")
    compile_in([str(moc), "imagecluster_proxy.h", "-o", "moc_imagecluster_proxy.cpp"], folder)
    output = compile_in(["g++", "-Wall", "-fPIC", "typed_proxy.cpp", "imagecluster_proxy.cpp",
                       "moc_imagecluster_proxy.cpp", "-o", "typed_proxy",
                       *pkg_config("--cflags", "--libs", "Qt6DBus").split()], folder)
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
