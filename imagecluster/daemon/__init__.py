"""The per-user sidecar daemon: background indexing of photo libraries and a D-Bus service.

Nothing in the core imports this package. Its parts::

    LibraryWatcher  watchdog (inotify) -> frozen PathChange records
    Indexer         keeps every library's store in step with its folder (asyncio)
    InferenceWorker a spawn process that owns the model; the only one importing TensorFlow
    Config          the daemon's settings: config.toml (XDG) merged with command-line flags
    ImageClusterInterface  org.imagecluster.ImageCluster1 on the session bus (dbus-fast)
    Daemon          owns all of the above: startup -> main_loop -> shutdown
    install_service the systemd user unit and the D-Bus activation file
"""

from ._config import Config, ConfigError, default_config_path, load_config
from ._daemon import EXIT_FAILED, EXIT_NAME_TAKEN, EXIT_OK, BusNameTaken, Daemon, DaemonError, configure_logging
from ._indexer import Indexer
from ._install import InstalledFile, InstallError, install_service, service_dirs
from ._service import BUS_NAME, ERROR_PREFIX, INTERFACE, OBJECT_PATH, ImageClusterInterface
from ._watch import LibraryWatcher, PathChange
from ._worker import InferenceWorker, WorkerError

__all__ = [
    "Indexer",
    "InferenceWorker",
    "LibraryWatcher",
    "PathChange",
    "WorkerError",
    # the service (appended)
    "BUS_NAME",
    "BusNameTaken",
    "Config",
    "ConfigError",
    "Daemon",
    "DaemonError",
    "ERROR_PREFIX",
    "EXIT_FAILED",
    "EXIT_NAME_TAKEN",
    "EXIT_OK",
    "INTERFACE",
    "ImageClusterInterface",
    "InstallError",
    "InstalledFile",
    "OBJECT_PATH",
    "configure_logging",
    "default_config_path",
    "install_service",
    "load_config",
    "service_dirs",
]
