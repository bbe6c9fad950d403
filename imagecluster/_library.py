"""Keeping a library's store in step with its photos, and clustering what it holds.

A photo is fingerprinted again only when its size or modification time
changed; a photo that is gone loses its record. Work is stored batch by batch,
so an interrupted run keeps what it had done.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ._library_events import capture_items
from ._pairs import count_pairs, one_per_shot
from ._pipeline import DEFAULT_BATCH_SIZE, Failure, iter_fingerprint_batches, resolve_model
from .cluster import cluster
from .graph import LibraryGraph
from .images import check_library, listing_order, walk_photos
from .store import Store

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What one indexing pass over a library found and did.

    Attributes
    ----------
    library : Path
        The photo folder.
    model : str
        The fingerprint model.
    found : int, default=0
        Photos found on disk.
    added, updated, unchanged, removed : int, default=0
        Fingerprints stored for new photos, stored again for changed ones,
        kept as they were, and removed for photos that are gone.
    failures : list of Failure, default=[]
        Files that could not be read in this pass, and why.
    known_failures : list, default=[]
        Files that could not be read before and have not changed since: not tried again.
    pairs : int, default=0
        RAW files among the fingerprinted ones whose shot has a JPEG too (one photo, two files).
    """

    library: Path
    model: str
    found: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failures: list = field(default_factory=list)
    #: Files that could not be read before and have not changed since: not tried again.
    known_failures: list = field(default_factory=list)
    #: RAW files among the fingerprinted ones whose shot has a JPEG too (one photo, two files).
    pairs: int = 0

    @property
    def fingerprinted(self):
        """Photos with a fingerprint in the store after this pass."""
        return self.added + self.updated + self.unchanged

    @property
    def shots(self):
        """Photos as clusters count them: a RAW + JPEG pair is one."""
        return self.fingerprinted - self.pairs


def scan_library(root, store, model_name, *, exclude=()):
    """Compare the photos on disk with the store.

    Returns
    -------
    todo : list of (str, int, int)
        (relative path, size, mtime_ns) of photos new or changed since stored.
    gone : list of str
        Relative paths stored but no longer on disk.
    report : IndexReport
        Counts so far (found, unchanged) and photos that could not be read.
    """
    report = IndexReport(library=root, model=model_name)
    known = store.entries(model_name)
    unreadable = store.unreadable(model_name)
    present = set()
    todo = []
    for rel, listed in walk_photos(check_library(root), exclude=exclude):
        try:
            st = listed.stat()
        except OSError as exc:
            report.failures.append(Failure(listed.path, exc.strerror or str(exc)))
            continue
        present.add(rel)
        entry = known.get(rel)
        bad = unreadable.get(rel)
        if entry is not None and entry.size == st.st_size and entry.mtime_ns == st.st_mtime_ns:
            report.unchanged += 1
        elif bad is not None and bad.size == st.st_size and bad.mtime_ns == st.st_mtime_ns:
            report.known_failures.append(Failure(listed.path, bad.reason))
        else:
            todo.append((rel, st.st_size, st.st_mtime_ns))
    report.found = len(present)
    todo.sort(key=listing_order)
    gone = sorted((set(known) | set(unreadable)) - present)
    return todo, gone, report


def index_library(
    library,
    *,
    model=None,
    store=None,
    exclude=(),
    batch_size=DEFAULT_BATCH_SIZE,
    progress=None,
    compact=True,
    thumbnails=None,
):
    """Fingerprint the new and changed photos of a library into its store.

    Parameters
    ----------
    library : path-like
        The photo folder.
    model : str or model object, default=None
        Fingerprint model or its name; None means the default model.
    store : Store, default=None
        The library's store; None opens ``<library>/.imagecluster``.
    exclude : iterable of path-like, default=()
        Folders not to index (e.g. the cluster output).
    batch_size : int, default=DEFAULT_BATCH_SIZE
        Photos per inference call.
    progress : callable, default=None
        ``progress(total)`` is called once with the number of photos to
        fingerprint and must return a callable that is then called with the
        number of photos just finished; None reports nothing.
    compact : bool, default=True
        Rewrite the store's snapshot at the end, so it holds everything.
    thumbnails : ThumbnailCache, default=None
        Also keep a gallery thumbnail of every photo fingerprinted, made from
        the same decode (:mod:`imagecluster.gallery`).

    Returns
    -------
    IndexReport
    """
    root = check_library(library)
    model = resolve_model(model)
    store = store if store is not None else Store(root)
    todo, gone, report = scan_library(root, store, model.name, exclude=exclude)
    if gone:
        store.remove(gone)
        report.removed = len(gone)
    stats = {rel: (size, mtime) for rel, size, mtime in todo}
    known = store.entries(model.name)
    advance = progress(len(todo)) if progress is not None and todo else None
    absolute = [root / rel for rel, _, _ in todo]
    sink = thumbnails.sink(root, todo) if thumbnails is not None else None
    for batch in iter_fingerprint_batches(absolute, model, batch_size=batch_size, progress=advance,
                                          thumbnails=sink):
        store_batch(store, model.name, batch, root=root, stats=stats, known=known, report=report)
    if compact:
        store.compact()
    report.pairs = count_pairs(store.entries(model.name))
    return report


def store_batch(store, model_name, batch, *, root, stats, known, report, captures=None):
    """Write one batch of results into the store and count it in ``report``.

    Shared by the local pipeline and the Dask client, so both store exactly
    the same records for the same results.

    Parameters
    ----------
    store : Store
    model_name : str
    batch : FingerprintBatch
        Absolute paths below ``root``, their fingerprints, and failures.
    root : Path
        The library.
    stats : dict of str to (int, int)
        (size, mtime_ns) of each relative path, as scanned.
    known : dict of str to Entry
        The store's entries before this run (added vs updated).
    report : IndexReport
        Counts and failures are added to it.
    captures : list of Capture, default=None
        The headers of ``batch.paths``, in order, when they were read where
        the photos were decoded (a Dask worker); None reads them here.
    """
    items = []
    for path, vector in zip(batch.paths, batch.fingerprints):
        rel = _relative(path, root)
        size, mtime = stats[rel]
        items.append((rel, size, mtime, vector))
        if rel in known:
            report.updated += 1
        else:
            report.added += 1
    if items:
        store.put(model_name, items)
        # When and where each was taken, read from the header while the file is cached:
        # `cluster --by events` then reads nothing.
        if captures is None:
            store.put_captures(capture_items(root, [item[:3] for item in items]))
        else:
            store.put_captures([(*item[:3], capture) for item, capture in zip(items, captures)])
    # A photo that changed into something unreadable must not keep its old fingerprint,
    # and is not tried again until it changes.
    failed = [(_relative(f.path, root), f.reason) for f in batch.failures]
    stale = [rel for rel, _ in failed if rel in known]
    if stale:
        store.remove(stale, model=model_name)
    if failed:
        store.mark_unreadable(model_name, [(rel, *stats[rel], reason) for rel, reason in failed])
    report.failures.extend(batch.failures)


def _relative(path, root):
    return Path(path).relative_to(root).as_posix()


def library_clusters(
    root, store, model_name, *, sim, min_size=2, cut="absolute", graph=None, progress=None, pair_link="jpeg",
):
    """Cluster the stored fingerprints of one library; clusters of absolute Paths, largest first.

    As :func:`relative_clusters`, each path joined to ``root``.

    Parameters
    ----------
    root : Path
        The library.
    store, model_name, sim, min_size, cut, graph, progress, pair_link
        As :func:`relative_clusters`.

    Returns
    -------
    list of list of Path
    """
    groups = relative_clusters(store, model_name, sim=sim, min_size=min_size, cut=cut, graph=graph,
                               progress=progress, pair_link=pair_link)
    return [[root / p for p in group] for group in groups]


def relative_clusters(
    store, model_name, *, sim, min_size=2, cut="absolute", graph=None, progress=None, pair_link="jpeg",
):
    """Cluster the stored fingerprints of one library; clusters of library-relative paths, largest first.

    With the absolute cut at a ``sim`` at or above the graph's floor, the
    library's similarity graph (:class:`~imagecluster.graph.LibraryGraph`,
    kept in the store folder) is brought up to date and answers; otherwise
    every pair is searched. Strings, not Paths: at 100,000 photos making a
    Path of each took longer than the clustering (the daemon joins them).

    Parameters
    ----------
    store : Store
        The library's store.
    model_name : str
    sim : float
    min_size : int, default=2
    cut : {"absolute", "relative"}, default="absolute"
    graph : LibraryGraph, default=None
        The library's graph, when the caller keeps one (the daemon); None
        opens the saved one.
    progress : callable, default=None
        ``progress(done, total)`` while a graph is first built.
    pair_link : {"jpeg", "raw"}, default="jpeg"
        Which file of a RAW + JPEG pair (one shot) is listed; the other is
        left out, and clusters count shots (see :mod:`imagecluster._pairs`).

    Returns
    -------
    list of list of str
    """
    if cut == "absolute" and sim > 0:
        graph = graph if graph is not None else LibraryGraph(store, model_name)
        if sim >= graph.floor:
            graph.update(progress=progress)
            return one_per_shot(graph.clusters(sim, min_size), link=pair_link, min_size=min_size)
        logger.info("sim %s is below the similarity graph's floor %s: comparing every pair of photos", sim, graph.floor)
    paths, fingerprints = store.fingerprints(model_name)
    if len(paths) == 0:
        return []
    groups = cluster(fingerprints, sim, min_size, cut=cut)
    return one_per_shot([[paths[i] for i in group] for group in groups], link=pair_link, min_size=min_size)
