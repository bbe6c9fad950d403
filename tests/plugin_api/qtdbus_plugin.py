"""What a digiKam DPlugin does, through QtDBus (PySide6): run as a script, prints one JSON report.

    python qtdbus_plugin.py PHOTO OUTSIDE_PATH

Run by ``test_interop.py`` in a subprocess on the private session bus, so Qt
never loads into the pytest process. Everything goes through
``QDBusInterface`` on ``QDBusConnection.sessionBus()``, as C++ would.
"""

import json
import sys

from PySide6.QtCore import SLOT, QCoreApplication, QObject, QTimer, Slot
from PySide6.QtDBus import QDBusConnection, QDBusInterface, QDBusMessage

NAME = INTERFACE = "org.imagecluster.ImageCluster1"
PATH = "/org/imagecluster/ImageCluster1"


def read_array(argument):
    """A demarshalled D-Bus array (Qt hands ``aas`` and ``ad`` over as QDBusArgument)."""
    items = []
    argument.beginArray()
    while not argument.atEnd():
        items.append(argument.asVariant())
    return items


class Plugin(QObject):
    """Receives ``ClustersWritten`` through a Qt slot, as a C++ plugin connects one."""

    def __init__(self, app):
        super().__init__()
        self.app = app
        self.written = []

    @Slot(str, "uint")
    def clustersWritten(self, tree, clusters):  # noqa: N802 (Qt naming)
        self.written.append([tree, clusters])
        self.app.quit()


def main():
    photo, outside = sys.argv[1:3]
    app = QCoreApplication(sys.argv)
    bus = QDBusConnection.sessionBus()
    report = {"connected": bus.isConnected()}
    iface = QDBusInterface(NAME, PATH, INTERFACE, bus)
    report["valid"] = iface.isValid()
    iface.setTimeout(120_000)  # milliseconds; Cluster may take a while

    report["properties"] = {name: iface.property(name) for name in
                            ("Libraries", "Model", "Indexed", "Pending", "State", "Sim", "Version")}

    reply = iface.call("Fingerprint", photo)
    report["fingerprint"] = read_array(reply.arguments()[0]) if reply.type() == QDBusMessage.ReplyMessage else None

    reply = iface.call("Fingerprint", outside)
    report["error"] = [reply.errorName(), reply.errorMessage()] if reply.type() == QDBusMessage.ErrorMessage else None

    plugin = Plugin(app)
    report["subscribed"] = bus.connect(NAME, PATH, INTERFACE, "ClustersWritten", plugin,
                                       SLOT("clustersWritten(QString,uint)"))
    pending = iface.asyncCallWithArgumentList("Cluster", [0.7])
    QTimer.singleShot(120_000, app.quit)  # a missing signal fails the test, it does not hang it
    app.exec()
    pending.waitForFinished()
    reply = pending.reply()
    report["clusters"] = read_array(reply.arguments()[0]) if reply.type() == QDBusMessage.ReplyMessage else None
    report["written"] = plugin.written
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
