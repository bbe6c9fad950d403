"""What an answer may hold: photos still on disk, names D-Bus can carry, and a size that fits one message.

A bus disconnects a peer that sends a message over its size limit: a Cluster
answer naming a million photos cut the daemon off from every client. The
daemon measures each large answer first and refuses one that would not fit,
saying what it held and where to read it instead (the tree is written).
"""

import os

from .._exceptions import ImageClusterError

__all__ = [
    "MAX_ANSWER_BYTES", "AnswerTooLarge", "count_clusters", "fit_on_the_bus", "photos_on_disk", "read_the_trees",
    "travels_over_dbus",
]


#: The largest answer the daemon sends, in bytes as marshalled (estimated from
#: above). A bus disconnects a peer that sends a message over its limit, which
#: would cut the daemon off from every client; dbus-daemon's own limit, for a
#: bus whose configuration sets none, is 32 MiB (the usual session bus allows
#: the protocol's 128 MiB). Around 450,000 clustered photos fit.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


class AnswerTooLarge(ImageClusterError):
    """An answer too large for one D-Bus message: refused with a message, so the daemon keeps its bus connection."""


def _answer_bytes(value):
    """An upper bound of the marshalled size of an answer made of strings, numbers and lists of them."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogateescape")) + 8  # length, NUL, alignment
    if isinstance(value, (list, tuple)):
        return 8 + sum(map(_answer_bytes, value))
    return 8


def fit_on_the_bus(answer, what, advice):
    """``answer``, or :class:`AnswerTooLarge` saying what it held and what to do instead."""
    size = _answer_bytes(answer)
    if size > MAX_ANSWER_BYTES:
        raise AnswerTooLarge(
            f"the answer ({what}) would take {size / 2**20:.0f} MB, more than one D-Bus message may carry "
            f"({MAX_ANSWER_BYTES >> 20} MB); {advice}"
        )
    return answer


def count_clusters(groups):
    """``"N photos in K clusters"``."""
    return f"{sum(map(len, groups)):,} photos in {len(groups):,} clusters"


def read_the_trees(trees):
    """What to do instead, when the answer named trees that hold it."""
    where = f"the tree {trees[0]} holds" if len(trees) == 1 else f"the trees {', '.join(trees)} hold"
    return f"{where} them (written): read it there, or ask with a higher sim"


def photos_on_disk(root, groups, min_size):
    """Groups (of paths relative to ``root``) as absolute path strings, without the photos that are gone.

    Groups that became smaller than ``min_size`` are left out.

    The indexer stores a deletion a moment after it happened (it keeps a
    deleted photo's fingerprint for a moment, in case it was a move); an
    answer or a tree must never name a photo that is gone.
    """
    root = os.fspath(root)
    kept = [[path for p in group if os.path.isfile(path := os.path.join(root, p))] for group in groups]
    return [g for g in kept if len(g) >= min_size]


def travels_over_dbus(text):
    """Whether a path can travel over D-Bus (a name with bytes that are not UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
