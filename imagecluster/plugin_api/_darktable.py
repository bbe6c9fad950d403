"""``imagecluster install-darktable-plugin``: put the darktable plugin where darktable loads it.

darktable runs ``<configdir>/luarc`` at start-up, and its Lua ``require``
finds modules under ``<configdir>/lua/``. The plugin (``darktable/imagecluster.lua``,
shipped in this package) goes to ``lua/contrib/``, where darktable's own
lua-scripts keep contributed scripts, so ``require "contrib/imagecluster"``
in ``luarc`` loads it.
"""

import os
import re
import shutil
from importlib import resources
from pathlib import Path

from .._exceptions import InstallError, InvalidParameter
from .._xdg import InstalledFile, read_text, write_if_changed, xdg_config_home

__all__ = [
    "COMMAND_VARIABLE",
    "InstallError",
    "InstalledFile",
    "PLUGIN_NAME",
    "REQUIRE_LINE",
    "darktable_configdir",
    "install_darktable_plugin",
    "plugin_source",
    "plugin_warnings",
]

PLUGIN_NAME = "contrib/imagecluster"
REQUIRE_LINE = f'require "{PLUGIN_NAME}"'
#: The environment variable the plugin takes its command from (default ``imagecluster``).
COMMAND_VARIABLE = "IMAGECLUSTER_DARKTABLE_COMMAND"

# A luarc line that already loads the plugin, however it is quoted or spaced
# (require "x", require 'x', require("x")); a commented-out one does not count.
_REQUIRED = re.compile(r"""^\s*require\s*\(?\s*["']""" + re.escape(PLUGIN_NAME) + """["']""", re.MULTILINE)


def darktable_configdir(environ=None):
    """Darktable's default configuration folder: ``$XDG_CONFIG_HOME/darktable`` (else ``~/.config/darktable``).

    Parameters
    ----------
    environ : mapping, default=None
        The environment to read ``XDG_CONFIG_HOME`` from; None means ``os.environ``.
        An unset or relative value means ``~/.config``, as darktable does.
    """
    return xdg_config_home(environ) / "darktable"


def plugin_source():
    """The plugin's Lua source, as shipped in the package."""
    return (resources.files(__package__) / "darktable" / "imagecluster.lua").read_text(encoding="utf-8")


def install_darktable_plugin(*, configdir=None):
    """Copy the plugin into darktable's ``lua/contrib/`` and require it from ``luarc``; idempotent.

    Parameters
    ----------
    configdir : path-like, default=None
        darktable's configuration folder (what ``darktable --configdir`` names),
        which must exist; None means ``$XDG_CONFIG_HOME/darktable`` (else
        ``~/.config/darktable``), created if darktable never ran.

    Returns
    -------
    list of InstalledFile
        ``lua/contrib/imagecluster.lua``, then ``luarc``. A file is rewritten
        only when its content changes; ``luarc`` keeps its other lines and
        gets the ``require`` line once.

    Raises
    ------
    InvalidParameter
        ``configdir`` is empty, does not exist or is not a folder.
    InstallError
        A folder or file could not be written.
    """
    if configdir is None:
        configdir = darktable_configdir()
        _makedirs(configdir)
    else:
        configdir = _check_configdir(configdir)
    plugin = configdir / "lua" / (PLUGIN_NAME + ".lua")
    luarc = configdir / "luarc"
    return [write_if_changed(plugin, plugin_source()), write_if_changed(luarc, _with_require(read_text(luarc)))]


def plugin_warnings(*, environ=None):
    """What would stop the plugin from reaching the daemon, in words (empty when all is well).

    The plugin runs ``imagecluster`` from darktable's ``PATH``, unless
    ``IMAGECLUSTER_DARKTABLE_COMMAND`` names another command.

    Parameters
    ----------
    environ : mapping, default=None
        The environment darktable would run with; None means ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    if environ.get(COMMAND_VARIABLE, "").strip() or shutil.which("imagecluster", path=environ.get("PATH")):
        return []
    return [
        "the plugin runs `imagecluster`, which is not on PATH: install imagecluster where darktable "
        f"finds it, or start darktable with {COMMAND_VARIABLE} set to its full path"
    ]


def _check_configdir(configdir):
    if not isinstance(configdir, (str, os.PathLike)) or not os.fspath(configdir):
        raise InvalidParameter(f"configdir must be a folder, not {configdir!r}")
    path = Path(configdir).expanduser()
    if not path.exists():
        raise InvalidParameter(f"darktable's configdir {path} does not exist (start darktable once with it)")
    if not path.is_dir():
        raise InvalidParameter(f"darktable's configdir {path} is not a folder")
    return path


def _with_require(text):
    if _REQUIRED.search(text):
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + REQUIRE_LINE + "\n"


def _makedirs(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError(f"cannot create {path}: {exc.strerror or exc}") from exc
