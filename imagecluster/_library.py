"""Keeping a library's store in step with its photos, and clustering what it holds.

A photo is fingerprinted again only when its size or modification time
changed; a photo that is gone loses its record. Work is stored batch by batch,
so an interrupted run keeps what it had done.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ._pairs import one_per_shot
from ._pipeline import DEFAULT_BATCH_SIZE, Failure, iter_fingerprint_batches, resolve_model
from .cluster import cluster
from .graph import LibraryGraph
from .images import check_library, find_images
from .store import Store

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What one indexing pass over a library found and did."""

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

    @property
    def fingerprinted(self):
        """Photos with a fingerprint in the store after this pass."""
        return self.added + self.updated + self.unchanged


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
    for path in find_images(root, exclude=exclude):
        rel = path.relative_to(root).as_posix()
        try:
            st = path.stat()
        except OSError as exc:
            report.failures.append(Failure(os.fspath(path), exc.strerror or str(exc)))
            continue
        present.add(rel)
        entry = known.get(rel)
        bad = unreadable.get(rel)
        if entry is not None and entry.size == st.st_size and entry.mtime_ns == st.st_mtime_ns:
            report.unchanged += 1
        elif bad is not None and bad.size == st.st_size and bad.mtime_ns == st.st_mtime_ns:
            report.known_failures.append(Failure(os.fspath(path), bad.reason))
        else:
            todo.append((rel, st.st_size, st.st_mtime_ns))
    report.found = len(present)
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
    for batch in iter_fingerprint_batches(absolute, model, batch_size=batch_size, progress=advance):
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
            store.put(model.name, items)
        # A photo that changed into something unreadable must not keep its old fingerprint,
        # and is not tried again until it changes.
        failed = [(_relative(f.path, root), f.reason) for f in batch.failures]
        stale = [rel for rel, _ in failed if rel in known]
        if stale:
            store.remove(stale, model=model.name)
        if failed:
            store.mark_unreadable(model.name, [(rel, *stats[rel], reason) for rel, reason in failed])
        report.failures.extend(batch.failures)
    if compact:
        store.compact()
    return report


def _relative(path, root):
    return Path(path).relative_to(root).as_posix()


def library_clusters(
    root, store, model_name, *, sim, min_size=2, cut="absolute", graph=None, progress=None, pair_link="jpeg",
):
    """Cluster the stored fingerprints of one library; clusters of absolute Paths, largest first.

    With the absolute cut at a ``sim`` at or above the graph's floor, the
    library's similarity graph (:class:`~imagecluster.graph.LibraryGraph`,
    kept in the store folder) is brought up to date and answers; otherwise
    every pair is searched.

    Parameters
    ----------
    root : Path
        The library.
    store : Store
        Its store.
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
    list of list of Path
    """
    if cut == "absolute" and sim > 0:
        graph = graph if graph is not None else LibraryGraph(store, model_name)
        if sim >= graph.floor:
            graph.update(progress=progress)
            groups = one_per_shot(graph.clusters(sim, min_size), link=pair_link, min_size=min_size)
            return [[root / p for p in group] for group in groups]
        logger.info("sim %s is below the similarity graph's floor %s: comparing every pair of photos", sim, graph.floor)
    paths, fingerprints = store.fingerprints(model_name)
    if len(paths) == 0:
        return []
    groups = cluster(fingerprints, sim, min_size, cut=cut)
    groups = one_per_shot([[paths[i] for i in group] for group in groups], link=pair_link, min_size=min_size)
    return [[root / p for p in group] for group in groups]
