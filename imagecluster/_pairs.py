"""RAW + JPEG from one shot count as one photo.

Most cameras can save every shot twice, as ``IMG_0001.CR2`` and
``IMG_0001.JPG`` in the same folder. Both are fingerprinted (so either path
can be asked about), and their fingerprints are nearly the same, so clustering
would put the two together: a "cluster" of one shot. Clusters are therefore
reduced to one entry per shot afterwards, and a cluster left with fewer shots
than the minimum size is dropped.
"""

import os

from ._exceptions import InvalidParameter
from ._raw import RAW_SUFFIXES

__all__ = ["PAIR_LINKS", "check_pair_link", "count_pairs", "one_per_shot", "similar_shots"]

#: Which file of a RAW + JPEG pair stands for the shot in clusters and trees:
#: ``"jpeg"`` the camera's JPEG (or HEIC; any non-RAW photo), ``"raw"`` the RAW file.
PAIR_LINKS = ("jpeg", "raw")


def check_pair_link(link):
    """Return ``link`` if it is one of :data:`PAIR_LINKS`, else raise InvalidParameter."""
    if link not in PAIR_LINKS:
        raise InvalidParameter(f"pair_link must be one of {', '.join(PAIR_LINKS)}, got {link!r}")
    return link


def _is_raw(path):
    return os.path.splitext(os.fspath(path))[1].lower() in RAW_SUFFIXES


def one_per_shot(groups, *, link="jpeg", min_size=2):
    """Keep one file per shot in each cluster; drop clusters left too small.

    Parameters
    ----------
    groups : list of list of path-like
        Clusters, largest first (as :func:`imagecluster.cluster.cluster` orders them).
    link : {"jpeg", "raw"}, default="jpeg"
        Which file of a RAW + JPEG pair is kept (see :data:`PAIR_LINKS`).
    min_size : int, default=2
        Smallest number of shots a cluster must keep.

    Returns
    -------
    list of list of path-like
        Clusters of distinct shots (the paths as given), in their order
        (largest first, ties as given).
        Files that are not part of a pair are untouched.
    """
    if not any(_is_raw(path) for group in groups for path in group):  # no RAW file: no pair (the usual case)
        return [list(group) for group in groups if len(group) >= min_size]
    out = []
    for group in groups:
        by_stem = {}  # a shot: its folder and its name without the ending
        for path in group:
            by_stem.setdefault(os.path.splitext(os.fspath(path))[0], []).append(path)
        kept = [path for files in by_stem.values() for path in _keep(files, link)]
        if len(kept) >= min_size:
            out.append(kept)
    out.sort(key=len, reverse=True)  # stable: equal sizes keep their order
    return out


def count_pairs(paths):
    """How many RAW files among ``paths`` have a JPEG (any other photo) of the same shot.

    A summary counts shots, not files, with it: ``len(paths) - count_pairs(paths)``
    is the number of photos as clusters count them (``pair_link="jpeg"``).

    Parameters
    ----------
    paths : iterable of path-like
        Photo paths (absolute, or all relative to one library).

    Returns
    -------
    int
        The number of RAW + JPEG pairs (one per shot, as cameras write them).
    """
    raws, others = {}, set()
    for path in paths:
        stem = os.path.splitext(os.fspath(path))[0]
        if _is_raw(path):
            raws[stem] = raws.get(stem, 0) + 1
        else:
            others.add(stem)
    return sum(n for stem, n in raws.items() if stem in others)


def _keep(files, link):
    """The files of one stem that stay: the wanted side of a RAW + JPEG pair, else all of them."""
    raws = [f for f in files if _is_raw(f)]
    others = [f for f in files if not _is_raw(f)]
    if raws and others:
        return others if link == "jpeg" else raws
    return files  # a.jpg beside a.png are two photos: not our rule


def similar_shots(matches, own, *, link="jpeg"):
    """Matches of one photo, one entry per shot, without the other file of its own shot.

    Parameters
    ----------
    matches : list of (str, float)
        ``(path, similarity)`` pairs, best first, ``own`` already left out.
    own : str
        The photo that was asked about; its RAW or JPEG partner is no match,
        it is the same shot.
    link : {"jpeg", "raw"}, default="jpeg"
        Which file of another shot's pair is listed (with the better of the
        two similarities).

    Returns
    -------
    list of (str, float)
        Best first; equal similarities by path.
    """
    own_stem, own_raw = os.path.splitext(own)[0], _is_raw(own)
    by_stem = {}
    for path, similarity in matches:
        stem = os.path.splitext(path)[0]
        if stem == own_stem and _is_raw(path) != own_raw:
            continue
        by_stem.setdefault(stem, []).append((path, similarity))
    out = []
    for found in by_stem.values():
        kept = _keep([p for p, _ in found], link)
        if len(kept) < len(found):  # a RAW + JPEG pair: one entry, the shot's best similarity
            best = max(s for _, s in found)
            out.extend((p, best) for p in kept)
        else:
            out.extend(found)
    out.sort(key=lambda m: (-m[1], m[0]))
    return out
