"""Every error imagecluster raises on purpose.

One root, named leaves; each leaf also subclasses the builtin a caller would
naturally catch, so ``except ValueError`` keeps working for callers that do
not know our names::

    ImageClusterError
    ├── InvalidParameter        (ValueError)    a bad argument at a public boundary
    ├── NotAnImage              (ValueError)    a file that cannot be decoded as a photo
    ├── NotInLibrary            (ValueError)    a path outside every watched library
    ├── PhotoNotFound           (FileNotFoundError)
    ├── LibraryNotFound         (FileNotFoundError)
    ├── ModelError              (RuntimeError)  weights missing or unreadable, unknown model
    ├── MissingDependency       (ImportError)   an optional package a feature needs is not installed
    ├── SchedulerError          (ConnectionError)  a Dask scheduler unreachable, or no worker can do the work
    ├── StoreError              (OSError)
    │   ├── StoreCorrupt        (ValueError)    a snapshot that is not ours or was tampered with
    │   └── StoreLocked         (TimeoutError)  another process holds the library's lock
    ├── TreeError               (OSError)
    │   └── NotOurTree          (FileExistsError)  refusing to replace a folder we did not write
    ├── DaemonNotAvailable      (ConnectionError)  no session bus, or no daemon running or installed
    ├── DaemonDisconnected      (ConnectionError)  the daemon (or the bus) went away during a call
    ├── DaemonTimeout           (TimeoutError)     no answer from the daemon within the call's timeout
    └── DaemonFailed            (RuntimeError)     the daemon answered Failed (or an error we do not know)

The ``Daemon*`` errors are raised by the D-Bus client (:mod:`imagecluster.plugin_api`),
which also raises the leaves above when the daemon answers with their named
error (``InvalidArgument`` -> InvalidParameter, ``NotInLibrary``, ``NotFound``
-> PhotoNotFound / LibraryNotFound, ``NotAnImage``, ``NotOurTree``).

Foreign errors are wrapped with ``raise ... from exc`` so the cause stays visible.
"""

__all__ = [
    "ImageClusterError",
    "InvalidParameter",
    "NotAnImage",
    "NotInLibrary",
    "PhotoNotFound",
    "LibraryNotFound",
    "ModelError",
    "MissingDependency",
    "SchedulerError",
    "StoreError",
    "StoreCorrupt",
    "StoreLocked",
    "TreeError",
    "NotOurTree",
    "DaemonNotAvailable",
    "DaemonDisconnected",
    "DaemonTimeout",
    "DaemonFailed",
    "InstallError",
]


class ImageClusterError(Exception):
    """Root of every error imagecluster raises on purpose."""


class InvalidParameter(ImageClusterError, ValueError):
    """An argument given at a public boundary is out of range or of the wrong kind."""


class NotAnImage(ImageClusterError, ValueError):
    """A file could not be decoded as a photo (not an image, truncated, too large)."""


class NotInLibrary(ImageClusterError, ValueError):
    """A path lies outside every library (also through ``..`` or a symlink that leads out)."""


class PhotoNotFound(ImageClusterError, FileNotFoundError):
    """A photo path names no file."""


class LibraryNotFound(ImageClusterError, FileNotFoundError):
    """The photo folder does not exist or is not a folder."""


class ModelError(ImageClusterError, RuntimeError):
    """A fingerprint model could not be built: unknown name, missing or bad weights."""


class MissingDependency(ImageClusterError, ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""


class SchedulerError(ImageClusterError, ConnectionError):
    """A Dask scheduler cannot be reached, has no worker, or none of its workers can read the library."""


class StoreError(ImageClusterError, OSError):
    """The per-library fingerprint store could not be read or written."""


class StoreCorrupt(StoreError, ValueError):
    """The store's snapshot is not a valid imagecluster store (damaged or tampered with)."""


class StoreLocked(StoreError, TimeoutError):
    """Another process (the daemon or another run) holds the library's store lock."""


class TreeError(ImageClusterError, OSError):
    """The cluster tree could not be written."""


class NotOurTree(TreeError, FileExistsError):
    """The output folder exists and was not written by imagecluster; it is left untouched."""


class DaemonNotAvailable(ImageClusterError, ConnectionError):
    """The daemon cannot be reached: no session bus, or not running and not installed for D-Bus activation."""


class DaemonDisconnected(ImageClusterError, ConnectionError):
    """The daemon, or the connection to the bus, went away before answering a call."""


class DaemonTimeout(ImageClusterError, TimeoutError):
    """The daemon did not answer a call within its timeout (the work may still finish)."""


class DaemonFailed(ImageClusterError, RuntimeError):
    """The daemon answered with ``...Error.Failed`` or another error without a closer meaning."""


class InstallError(ImageClusterError, OSError):
    """A file that sets imagecluster up for another program (systemd, D-Bus, darktable) could not be written."""
