"""The daemon's settings: one frozen :class:`Config`, from the config file and the command line.

The config file is TOML, ``$XDG_CONFIG_HOME/imagecluster/config.toml``
(``~/.config/imagecluster/config.toml`` when ``XDG_CONFIG_HOME`` is unset)::

    libraries = ["~/Pictures", { path = "/mnt/photos", out = "/mnt/photos/groups" }]
    sim = 0.7
    model = "lite0"
    scheduler = "tcp://nas:8786"                    # optional: a big library's first indexing on Dask
    path_map = ["/mnt/photos=/srv/photos"]          # optional: where the Dask workers mount it
    gallery = false                                 # optional: no thumbnails, no gallery beside each tree

Every key is optional; command-line flags win over the file, and
``--library`` replaces the file's ``libraries``. Unknown keys and bad values
stop the daemon with a message naming them.
"""

import importlib.util
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from .._api import default_tree_folder
from .._distributed import INSTALL_HINT, check_path_map, check_scheduler
from .._exceptions import InvalidParameter, NotOurTree
from .._pairs import PAIR_LINKS
from .._validation import DEFAULT_BATCH_SIZE
from .._xdg import xdg_config_home
from ..cluster import CUTS, DEFAULT_SIM, check_sim
from ..models import DEFAULT_MODEL, MODEL_NAMES
from ..tree import check_tree_folder

__all__ = ["Config", "ConfigError", "default_config_path", "load_config"]

class ConfigError(InvalidParameter):
    """The config file or a flag holds a bad value; the message names it."""


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs to know, checked once.

    Parameters
    ----------
    libraries : tuple of pathlib.Path
        Photo folders to watch, none inside another; made absolute with
        symlinks resolved.
    sim : float, default=DEFAULT_SIM
        Similarity index in 0..1 used when a caller passes none (the service's
        methods always take one; this is the documented default for clients).
    model : str, default="lite0"
        Fingerprint model, one of :data:`imagecluster.models.MODEL_NAMES`.
    cut : {"absolute", "relative"}, default="absolute"
        How ``sim`` cuts the dendrogram.
    min_size : int, default=2
        Smallest cluster reported and written.
    pair_link : {"jpeg", "raw"}, default="jpeg"
        A RAW and a JPEG of one shot (same folder, same name) are one photo:
        which of the two clusters list and trees link.
    settle_seconds : float, default=1.0
        A new or changed file is fingerprinted once its size and mtime stayed
        the same this long.
    worker_idle_seconds : float, default=60.0
        The inference worker (TensorFlow) exits after this long without work (> 0).
    batch_size : int, default=32
        Photos per inference call.
    rescan_seconds : float, default=30.0
        How often missing libraries (unmounted disks) are looked for again (> 0).
    scheduler : str or None, default=None
        A Dask scheduler (``tcp://host:8786``, or ``local:N`` for N worker
        processes here): a library that needs at least 1,000 photos
        fingerprinted at start-up is done there, in the background
        (needs ``pip install 'imagecluster[dask]'``).
    path_map : tuple of (str, str), default=()
        With ``scheduler``: ``"OLD=NEW"`` folders the workers mount elsewhere.
    gallery : bool, default=True
        Keep a gallery thumbnail of each photo as it is fingerprinted (from the
        same decode; ~10 KB each in the store folder), and write an HTML
        gallery beside each tree the daemon writes (in the background, after
        the answer). False: neither (``Gallery`` then answers NotFound).
    out : tuple of pathlib.Path, default=()
        The cluster tree of each library, in the order of ``libraries``;
        empty means ``<library>/clusters`` for each. The indexer never
        indexes these folders, so one inside a library must not exist yet,
        be empty, or be a tree imagecluster wrote (else ConfigError).
    """

    libraries: tuple
    sim: float = DEFAULT_SIM
    model: str = DEFAULT_MODEL
    cut: str = "absolute"
    min_size: int = 2
    pair_link: str = "jpeg"
    settle_seconds: float = 1.0
    worker_idle_seconds: float = 60.0
    batch_size: int = DEFAULT_BATCH_SIZE
    rescan_seconds: float = 30.0
    scheduler: str | None = None
    path_map: tuple = ()
    gallery: bool = True
    out: tuple = field(default=())

    def __post_init__(self):
        libraries = tuple(_absolute(p, "library") for p in self.libraries)
        if not libraries:
            raise ConfigError("no library: pass --library DIR or add libraries = [...] to the config file")
        _check_distinct(libraries)
        if self.out and len(self.out) != len(libraries):
            raise ConfigError(f"out needs one folder per library ({len(libraries)}), got {len(self.out)}")
        out = tuple(_absolute(p, "out") for p in self.out) or tuple(default_tree_folder(p) for p in libraries)
        _check_out(out, libraries)
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "libraries", libraries)
        set_(self, "out", out)
        for name, check in _CHECKS.items():
            set_(self, name, check(getattr(self, name), name))

    def tree_folder(self, library):
        """The cluster tree of one of :attr:`libraries`."""
        return self.out[self.libraries.index(Path(os.path.realpath(library)))]


def default_config_path(environ=None):
    """``$XDG_CONFIG_HOME/imagecluster/config.toml``, or ``~/.config/...`` when unset or relative."""
    return xdg_config_home(environ) / "imagecluster" / "config.toml"


def load_config(path=None, *, environ=None, **flags):
    """Build the :class:`Config` from the config file and command-line flags.

    Parameters
    ----------
    path : path-like, default=None
        The config file; it must exist. None means :func:`default_config_path`,
        which may be missing (then only the flags count).
    environ : mapping, default=None
        Environment for ``XDG_CONFIG_HOME``; None means ``os.environ``.
    **flags
        Config fields from the command line (``libraries``, ``sim``, ...);
        a value of None means "not given" and leaves the file's value.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        Unreadable or invalid file, unknown key, bad value, or no library.
    """
    if path is None:
        path = default_config_path(environ)
        settings = _from_file(_read(path), path) if path.is_file() else {}
    else:
        path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        settings = _from_file(_read(path), path)
    given = {k: v for k, v in flags.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(Config)})
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
    if "libraries" in given:  # --library replaces the file's list, and its out folders
        settings.pop("out", None)
    settings.update(given)
    if not settings.get("libraries"):
        raise ConfigError(f"no library: pass --library DIR or add libraries = [\"~/Pictures\"] to {path}")
    return Config(**settings)


def _read(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc


def _from_file(data, path):
    """Checked config fields from the parsed file; library tables become ``libraries`` + ``out``."""
    known = sorted({f.name for f in fields(Config)} - {"out"})
    settings = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r}; known keys: {', '.join(known)}")
        if key in _CHECKS:
            try:
                settings[key] = _CHECKS[key](value, key)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    entries = data.get("libraries")
    if entries is None:
        return settings
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: libraries must be a list of folders, got {entries!r}")
    libraries, out = [], []
    for entry in entries:
        if isinstance(entry, dict):
            if sorted(entry) not in (["path"], ["out", "path"]):
                raise ConfigError(
                    f"{path}: a library table takes the keys path (required) and out, got {sorted(entry)}"
                )
            lib = _file_path(entry["path"], "library", path)
            libraries.append(lib)
            out.append(_file_path(entry["out"], "out", path) if "out" in entry else default_tree_folder(lib))
        else:
            lib = _file_path(entry, "library", path)
            libraries.append(lib)
            out.append(default_tree_folder(lib))
    settings["libraries"] = tuple(libraries)
    settings["out"] = tuple(out)
    return settings


def _file_path(value, what, path):
    """A folder named in the config file: absolute or starting with ``~``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {what} must be a folder name, got {value!r}")
    folder = os.path.expanduser(value)
    if not os.path.isabs(folder):
        raise ConfigError(f"{path}: {what} {value!r} must be an absolute path (or start with ~)")
    return Path(os.path.normpath(folder))


def _absolute(value, what):
    """An absolute folder with symlinks resolved, as the indexer sees it (it need not exist)."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ConfigError(f"{what} must be a folder name, got {value!r}")
    return Path(os.path.realpath(os.path.expanduser(os.fspath(value))))


def _check_distinct(libraries):
    for i, a in enumerate(libraries):
        for b in libraries[i + 1:]:
            if a == b:
                raise ConfigError(f"library {a} is given twice")
            if a.is_relative_to(b) or b.is_relative_to(a):
                inner, outer = (a, b) if a.is_relative_to(b) else (b, a)
                raise ConfigError(f"library {inner} is inside library {outer}; give only {outer}")


def _check_out(out, libraries):
    """A tree folder inside a library must be new, empty or a tree: else its photos would never be indexed."""
    for folder in out:
        try:
            check_tree_folder(folder, libraries=libraries)
        except NotOurTree:
            pass  # outside every library: refused only when a tree is written there (it may be emptied meanwhile)
        except InvalidParameter as exc:
            raise ConfigError(f"out: {exc}") from None


def _check_choice(choices):
    def check(value, name):
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _check_sim(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number between 0 and 1, got {value!r}")
    try:
        return check_sim(value)
    except InvalidParameter as exc:
        raise ConfigError(str(exc)) from None


def _check_count(value, name):
    return _number(value, name, integer=True, minimum=1)


def _check_seconds(value, name):
    return _number(value, name, minimum=0.0)


def _check_interval(value, name):
    value = _number(value, name, minimum=0.0)
    if value == 0:
        raise ConfigError(f"{name} must be more than 0, got {value!r}")
    return value


def _number(value, name, *, integer=False, minimum):
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or math.isnan(value) or math.isinf(value):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value!r}")
    return value if integer else float(value)


def _check_scheduler(value, name):
    if value is None:
        return None
    try:
        value = check_scheduler(value)
    except InvalidParameter as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if importlib.util.find_spec("distributed") is None:
        raise ConfigError(f"{name} needs the 'distributed' package: {INSTALL_HINT}")
    return value


def _check_path_map(value, name):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f'{name} must be a list of "OLD=NEW" folders, got {value!r}')
    try:
        return check_path_map(value)
    except InvalidParameter as exc:
        raise ConfigError(f"{name}: {exc}") from None


# How each scalar field is checked and normalised (a file's value is checked
# alone first, so the message can name the file).
_CHECKS = {
    "sim": _check_sim,
    "model": _check_choice(MODEL_NAMES),
    "cut": _check_choice(CUTS),
    "min_size": _check_count,
    "pair_link": _check_choice(PAIR_LINKS),
    "batch_size": _check_count,
    "settle_seconds": _check_seconds,
    "worker_idle_seconds": _check_interval,
    "rescan_seconds": _check_interval,
    "scheduler": _check_scheduler,
    "path_map": _check_path_map,
    "gallery": _check_bool,
}
