"""Writing a library's gallery: ``OUT/index.html`` and ``OUT/.thumbs/``.

The folder is the gallery's own: it holds a marker file, and an existing
folder without it is written into only when empty, so a mistaken ``--out``
never touches anyone's files. Thumbnails are hard links to the cache in the
store folder (copies across file systems); the leading dot keeps them out of
indexing when the gallery lives inside the library.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

from .._edges import Edges, UnitRows
from .._exceptions import InvalidParameter, NotOurTree, TreeError
from .._pairs import _is_raw, check_pair_link
from ..cluster import DEFAULT_SIM, check_min_size, check_sim
from ..graph import LibraryGraph
from ..images import check_library
from ..models import DEFAULT_MODEL
from ..store import Store
from ._merges import cut_merges, library_merges
from ._page import render_page
from ._thumbs import DEFAULT_SIDE, library_thumbnails

__all__ = ["GALLERY_MARKER", "Gallery", "default_gallery_folder", "display_name", "write_gallery"]

logger = logging.getLogger(__name__)

#: The file that marks a folder as a gallery imagecluster wrote (and may rewrite).
GALLERY_MARKER = ".imagecluster-gallery"
_THUMB_DIR = ".thumbs"
# A thumbnail written this shortly before the store was read may be the daemon worker's, for a photo it stored
# since (it writes the thumbnail, then stores the batch): a prune leaves it to the next gallery. Ten minutes is
# many batches, even of RAW files demosaiced on a slow machine.
_WORKER_SECONDS = 600


class Gallery:
    """What :func:`write_gallery` wrote.

    Attributes
    ----------
    index : Path
        ``OUT/index.html``.
    photos : int
        Photos in the gallery.
    clusters : list of list of str
        The clusters the page opens with (at ``sim``), library-relative paths.
    thumbnails_made : int
        Thumbnails decoded in this run (the rest came from the cache).
    """

    def __init__(self, index, photos, clusters, thumbnails_made):
        self.index = index
        self.photos = photos
        self.clusters = clusters
        self.thumbnails_made = thumbnails_made


def default_gallery_folder(tree):
    """Where the gallery of a cluster tree goes: beside it, ``<tree>-gallery``.

    Parameters
    ----------
    tree : path-like
        The tree's folder.

    Returns
    -------
    Path
        Absolute.
    """
    tree = Path(os.path.abspath(os.path.expanduser(os.fspath(tree))))
    return tree.with_name(tree.name + "-gallery")


def check_gallery_folder(out):
    """Return ``out`` absolute if a gallery may be written there, else raise NotOurTree.

    Parameters
    ----------
    out : path-like
        The gallery's folder: missing, empty, or a gallery imagecluster wrote
        before (it holds :data:`GALLERY_MARKER`).

    Returns
    -------
    Path
        Absolute (``~`` expanded).
    """
    if out is None or os.fspath(out) == "":
        raise InvalidParameter("no folder given for the gallery")
    out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise NotOurTree(f"{out} is not a folder imagecluster wrote; the gallery needs a new or empty folder")
    if out.is_dir() and not (out / GALLERY_MARKER).is_file() and any(out.iterdir()):
        raise NotOurTree(f"{out} is not empty and was not written by imagecluster; the gallery needs a new "
                         "or empty folder")
    return out


def write_gallery(
    library, out, *, sim=DEFAULT_SIM, model=DEFAULT_MODEL, store=None, graph=None, min_size=2, pair_link="jpeg",
    side=DEFAULT_SIDE, workers=None, progress=None, compare_progress=None,
):
    """Write the gallery of a library's fingerprinted photos.

    Parameters
    ----------
    library : path-like
        The photo folder (already indexed; photos without a fingerprint are not shown).
    out : path-like
        The gallery's folder (see :func:`check_gallery_folder`).
    sim : float, default=DEFAULT_SIM
        The sim the page opens at; the slider offers the graph's floor (0.5) to 1.
    model : str, default=DEFAULT_MODEL
        Whose fingerprints.
    store : Store, default=None
        The library's store; None opens it.
    graph : LibraryGraph, default=None
        The library's similarity graph when the caller keeps one; None opens the saved one.
    min_size : int, default=2
        Smallest cluster shown as a row.
    pair_link : {"jpeg", "raw"}, default="jpeg"
        Which file of a RAW + JPEG pair stands for the shot (as ``cluster``).
    side : int, default=DEFAULT_SIDE
        Longest side of the thumbnails.
    workers : int, default=None
        Threads making thumbnails; None means one per core.
    progress : callable, default=None
        For thumbnails: ``progress(total)`` returns a callable given the number just made.
    compare_progress : callable, default=None
        ``compare_progress(done, total)`` while the similarity graph is first built.

    Returns
    -------
    Gallery
    """
    root = check_library(library)
    out = check_gallery_folder(out)
    sim, min_size, pair_link = check_sim(sim), check_min_size(min_size), check_pair_link(pair_link)
    store = store if store is not None else Store(root)
    graph = graph if graph is not None else LibraryGraph(store, model)
    if sim < graph.floor:
        raise InvalidParameter(f"the gallery shows sim {graph.floor} to 1, got {sim}")
    graph.update(progress=compare_progress)
    read_at = time.time()
    view = store.view(model)
    paths = sorted(view.paths)
    row = {p: k for k, p in enumerate(view.paths)}
    rows = [row[p] for p in paths]
    # The graph's nodes as rows of the sorted paths (a photo written since the graph's catch-up has no edges yet).
    node = {p: k for k, p in enumerate(paths)}
    known = np.array([node.get(p, -1) for p in graph.paths] + [-1], dtype=np.int64)
    i, j = known[graph.edges.i], known[graph.edges.j]
    keep = (i >= 0) & (j >= 0)
    merges = library_merges(UnitRows(view.matrix[rows]), Edges(i[keep], j[keep], graph.edges.sim[keep]), graph.floor)

    cache = library_thumbnails(store, side)
    stats = [(p, view.entries[p].size, view.entries[p].mtime_ns) for p in paths]
    thumbs = cache.ensure(root, stats, workers=workers, progress=progress)
    names = [cache.name(*s) for s in stats]
    cache.prune(names, written_before=read_at - _WORKER_SECONDS)

    data = {
        "version": 1, "sim": sim, "floor": graph.floor, "minSize": min_size, "thumbDir": _THUMB_DIR + "/",
        "names": [display_name(p) for p in paths],
        "urls": [_file_url(root / p) for p in paths],
        "thumbs": [t[0] if t else None for t in thumbs],
        "tw": [t[1] if t else 0 for t in thumbs],
        "th": [t[2] if t else 0 for t in thumbs],
        "ma": merges.a.tolist(), "mb": merges.b.tolist(), "ms": merges.sim.tolist(),
    }
    partner, linked = _pairs(paths, pair_link)
    if partner is not None:
        data["partner"], data["linked"] = partner, linked
    _write(out, render_page(data, title=f"imagecluster: {display_name(root.name or os.fspath(root))}"),
           cache.folder, [t[0] for t in thumbs if t])
    groups = [[paths[k] for k in g] for g in cut_merges(merges, len(paths), sim, min_size)]
    return Gallery(out / "index.html", len(paths), groups, cache.made)


def _pairs(paths, link):
    """Per photo, its RAW or JPEG partner (index, or -1) and whether it is the file the shot keeps."""
    by_stem = {}
    for k, p in enumerate(paths):
        by_stem.setdefault(os.path.splitext(p)[0], []).append(k)
    partner, linked, found = [-1] * len(paths), [True] * len(paths), False
    for members in by_stem.values():
        raws = [k for k in members if _is_raw(paths[k])]
        others = [k for k in members if not _is_raw(paths[k])]
        if len(raws) == 1 and len(others) == 1:
            found = True
            partner[raws[0]], partner[others[0]] = others[0], raws[0]
            linked[raws[0] if link == "jpeg" else others[0]] = False
    return (partner, linked) if found else (None, None)


def display_name(text):
    r"""A path as one line of valid Unicode: a newline shows as ``\n``, a byte that is not UTF-8 as ``\xff``.

    Parameters
    ----------
    text : str
        A file name or path (from ``os.fsdecode``: bytes that are not UTF-8 are surrogates).

    Returns
    -------
    str
    """
    return "".join(
        c if c.isprintable() else f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff"
        else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def _file_url(path):
    """``file://`` URL of a path, percent-encoded from its bytes (any name, any encoding)."""
    return "file://" + urllib.parse.quote(os.fsencode(path), safe="/")


def _write(out, page, cache_folder, thumbs):
    """Write the page atomically and link the thumbnails in; drop thumbnails no longer shown."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / GALLERY_MARKER).touch()
        folder = out / _THUMB_DIR
        folder.mkdir(exist_ok=True)
        wanted = set(thumbs)
        present = set(os.listdir(folder))
        for name in present - wanted:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(folder / name)
        for name in wanted - present:
            try:
                os.link(cache_folder / name, folder / name)
            except OSError:  # another file system, or no hard links there
                shutil.copyfile(cache_folder / name, folder / name)
        fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".tmp", dir=out)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(page)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out / "index.html")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise TreeError(f"cannot write the gallery in {out}: {exc.strerror or exc}") from exc
