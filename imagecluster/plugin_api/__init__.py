"""What a photo-manager plugin uses to talk to the imagecluster daemon over D-Bus.

The contract is the interface ``org.imagecluster.ImageCluster1`` on the session
bus; :func:`interface_xml` gives its introspection XML (also installed as
``share/dbus-1/interfaces/org.imagecluster.ImageCluster1.xml``) for C++/Qt,
Vala or any other D-Bus binding. From Python, use a client::

    from imagecluster.plugin_api import Client

    with Client() as client:
        client.on_clusters_written(lambda tree, n: print(f"{n} clusters in {tree}"))
        client.wait_idle(60)
        for cluster in client.cluster(0.7):
            print(len(cluster), cluster)

:class:`AsyncClient` is the same for asyncio. The daemon's named errors come
back as the imagecluster exceptions of the same meaning (``NotInLibrary``,
``PhotoNotFound``, ...); trouble reaching the daemon is ``DaemonNotAvailable``,
``DaemonTimeout`` or ``DaemonDisconnected``. ``doc/plugin-guide.rst`` is the
plugin author's guide; ``imagecluster remote`` is the same for shell scripts.
"""

from .._exceptions import (
    DaemonDisconnected,
    DaemonFailed,
    DaemonNotAvailable,
    DaemonTimeout,
    ImageClusterError,
    InvalidParameter,
    LibraryNotFound,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
)
from ._base import DEFAULT_TIMEOUT, DEFAULT_WORK_TIMEOUT, USE_CLIENT_DEFAULT, Event, Status
from ._client import AsyncClient, Client
from ._contract import BUS_NAME, ERROR_PREFIX, INTERFACE, INTERFACE_XML, OBJECT_PATH, interface_xml

__all__ = [
    "AsyncClient",
    "BUS_NAME",
    "Client",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORK_TIMEOUT",
    "DaemonDisconnected",
    "DaemonFailed",
    "DaemonNotAvailable",
    "DaemonTimeout",
    "ERROR_PREFIX",
    "Event",
    "INTERFACE",
    "INTERFACE_XML",
    "ImageClusterError",
    "InvalidParameter",
    "LibraryNotFound",
    "NotAnImage",
    "NotInLibrary",
    "NotOurTree",
    "OBJECT_PATH",
    "PhotoNotFound",
    "Status",
    "USE_CLIENT_DEFAULT",
    "interface_xml",
]
