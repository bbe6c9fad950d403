"""The user's XDG folders, and writing the small files that set imagecluster up there.

The daemon's config file and the installers (systemd and D-Bus files, the
darktable plugin) share these: where ``~/.config`` and ``~/.local/share``
are, and a write that is atomic, reports whether anything changed, and keeps
a symlinked file's link.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import InstallError

__all__ = ["InstalledFile", "read_text", "write_if_changed", "xdg_config_home", "xdg_data_home"]


@dataclass(frozen=True)
class InstalledFile:
    """One file an installer handled: where, and whether its content changed."""

    path: Path
    changed: bool


def _xdg_home(environ, variable, *default):
    environ = os.environ if environ is None else environ
    value = environ.get(variable, "")
    if os.path.isabs(value):
        return Path(value)
    return Path(os.path.expanduser("~"), *default)  # unset or relative: the XDG default


def xdg_config_home(environ=None):
    """``$XDG_CONFIG_HOME``, or ``~/.config`` where it is unset or relative (as the XDG spec says)."""
    return _xdg_home(environ, "XDG_CONFIG_HOME", ".config")


def xdg_data_home(environ=None):
    """``$XDG_DATA_HOME``, or ``~/.local/share`` where it is unset or relative."""
    return _xdg_home(environ, "XDG_DATA_HOME", ".local", "share")


def read_text(path):
    """The file's text; "" when it does not exist. InstallError when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def write_if_changed(path, text):
    """Write ``text`` to ``path`` atomically (mode 0644), unless it already holds exactly that.

    A symlink is followed, so a file the user keeps elsewhere stays there.
    Returns an :class:`InstalledFile`; raises :class:`InstallError` when a
    folder or the file cannot be written.
    """
    path = Path(path)
    if path.is_file() and read_text(path) == text:
        return InstalledFile(path, changed=False)
    target = path.resolve() if path.is_symlink() else path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise InstallError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return InstalledFile(path, changed=True)
