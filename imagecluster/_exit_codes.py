"""The exit statuses of ``imagecluster remote``: one table for the command, its ``--help`` and the guide.

Light on purpose (only the exception classes): the CLI builds its help from
it without importing the D-Bus client.
"""

from ._exceptions import (
    DaemonDisconnected,
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

__all__ = ["EXIT_CODES", "exit_code", "exit_codes_text"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_AVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_NOT_IN_LIBRARY = 5
EXIT_NOT_FOUND = 6
EXIT_NOT_AN_IMAGE = 7
EXIT_NOT_OUR_TREE = 8
EXIT_DISCONNECTED = 9
EXIT_INTERRUPTED = 130

#: (exception, exit status, what it means), most specific first; the guide's table.
EXIT_CODES = (
    (InvalidParameter, EXIT_USAGE, "usage: a bad option or value (e.g. --sim not a number or outside 0..1)"),
    (DaemonNotAvailable, EXIT_NOT_AVAILABLE,
     "no session bus, or the daemon is not running and not installed, or its systemd unit failed"),
    (DaemonTimeout, EXIT_TIMEOUT, "no answer within --timeout (remote wait: still busy)"),
    (NotInLibrary, EXIT_NOT_IN_LIBRARY, "the path (or --library) is outside every watched library"),
    (PhotoNotFound, EXIT_NOT_FOUND, "no such photo"),
    (LibraryNotFound, EXIT_NOT_FOUND, "the library is not mounted now"),
    (NotAnImage, EXIT_NOT_AN_IMAGE, "the file cannot be decoded as a photo"),
    (NotOurTree, EXIT_NOT_OUR_TREE, "the tree folder exists and was not written by imagecluster"),
    (DaemonDisconnected, EXIT_DISCONNECTED, "the daemon went away during the call (exited or crashed)"),
    (ImageClusterError, EXIT_FAILED, "any other failure (the daemon answered Failed; see its log)"),
)


def exit_code(exc):
    """The exit status for an exception raised by the client.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    int
    """
    for kind, code, _ in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILED


def exit_codes_text():
    """The table in one line, as the ``--help`` epilog says it (``exit status: 0 success; 1 ...``).

    Returns
    -------
    str
    """
    meanings = {EXIT_OK: ["success"]}
    for _, code, meaning in EXIT_CODES:
        meanings.setdefault(code, []).append(meaning)
    meanings[EXIT_INTERRUPTED] = ["interrupted"]
    return "exit status: " + "; ".join(f"{code} {', or '.join(m)}" for code, m in sorted(meanings.items())) + "."
