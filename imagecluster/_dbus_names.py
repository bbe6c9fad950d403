"""The names of the D-Bus contract, shared by the daemon and the plugin API.

Plain strings and a table, no D-Bus code: the daemon (``imagecluster.daemon``)
answers under these names and the client side (``imagecluster.plugin_api``)
calls and decodes them, so the two can never disagree about a name.
"""

from ._exceptions import (
    ImageClusterError,
    InvalidParameter,
    LibraryNotFound,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
)

__all__ = ["BUS_NAME", "ERROR_NAMES", "ERROR_PREFIX", "INTERFACE", "OBJECT_PATH"]

# Version 1 of the interface; an incompatible change gets ...ImageCluster2.
BUS_NAME = "org.imagecluster.ImageCluster1"
OBJECT_PATH = "/org/imagecluster/ImageCluster1"
INTERFACE = "org.imagecluster.ImageCluster1"
ERROR_PREFIX = INTERFACE + ".Error."

#: Our exceptions and the D-Bus error each is sent as (the part after
#: :data:`ERROR_PREFIX`), most specific first: the daemon names an error by
#: the first class that matches, a client decodes a name to the first class
#: listed for it (``NotFound`` means ``LibraryNotFound`` only for the calls
#: about libraries, which the client knows).
ERROR_NAMES = (
    (InvalidParameter, "InvalidArgument"),
    (NotInLibrary, "NotInLibrary"),
    (PhotoNotFound, "NotFound"),
    (LibraryNotFound, "NotFound"),
    (NotAnImage, "NotAnImage"),
    (NotOurTree, "NotOurTree"),
    (ImageClusterError, "Failed"),
)
