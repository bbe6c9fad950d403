"""Opening a photo file only if it is a regular file: never a FIFO, socket or device.

A library is untrusted: a file named like a photo may be a FIFO (opening it
waits for a writer, for ever) or a device (opening some has effects of their
own). Everything that reads a photo's bytes opens it here.
"""

import os
import stat

from ._exceptions import NotAnImage

__all__ = ["fd_name", "open_regular", "special_file_kind"]


def open_regular(path):
    """Open ``path`` for reading only if it is a regular file; never blocks on a FIFO or device.

    The type is checked with ``stat`` before any open, because opening some
    devices has effects of its own (a tape rewinds, a watchdog arms) and
    opening a FIFO waits for a writer. The open itself is non-blocking and
    checked again with ``fstat``, so a file swapped for a FIFO in between is
    refused too, and what Pillow reads is exactly the file checked.
    A ``stat`` on a hung hard-mounted network file system still blocks in
    the kernel; no user-space code can bound that.
    """
    _check_regular(os.stat(path), path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check_regular(os.fstat(fd), path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(st, path):
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise NotAnImage(f"{os.fspath(path)}: is a folder")
    raise NotAnImage(f"{os.fspath(path)}: not a regular file ({_file_kind(st.st_mode)})")


def special_file_kind(path):
    """What a special file is (``"FIFO"``, ``"socket"``, ``"character device"``, ...), or None.

    None for a regular file, a folder, a symlink or a path that is not there:
    for a file named like a photo that must be reported, never opened.
    """
    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return None
    return _file_kind(mode)


def _file_kind(mode):
    kinds = (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def fd_name(f, path):
    """A name that opens the same file as ``f`` (Linux), else ``path``."""
    name = f"/proc/self/fd/{f.fileno()}"
    return name if os.path.exists(name) else path
