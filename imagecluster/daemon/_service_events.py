"""The work behind the D-Bus method ``ClusterEvents``: one library's events, its events tree, the answer.

Runs in a thread (the interface awaits it with :func:`asyncio.to_thread`).
Photos stored before capture data was kept get theirs read here once, from
the header only, and stored (:func:`imagecluster._library_events.refresh_captures`).
"""

import logging
import os
from pathlib import Path

from .._library_events import library_events
from ..tree import check_tree_folder, write_event_tree

__all__ = ["events_answer", "events_sync", "events_tree_folder"]

logger = logging.getLogger(__name__)


def events_tree_folder(tree_folder):
    """Where the daemon writes a library's events tree: beside its cluster tree, ``<tree folder>-events``."""
    return Path(f"{os.fspath(tree_folder)}-events")


def events_sync(indexer, config, library, sim, hours, km):
    """Events of one library (photos that are gone left out), written as ``<tree folder>-events/events/<name>/``.

    Returns
    -------
    events : list of LibraryEvent
    tree : Path
    """
    store = indexer.store(library)
    events, _ = library_events(library, store, indexer.model_name, sim=sim, hours=hours, km=km,
                               min_size=config.min_size, pair_link=config.pair_link)
    kept = []
    for event in events:  # the indexer stores a deletion a moment after it happened
        event.photos = [p for p in event.photos if os.path.isfile(p)]
        event.clusters = [g for g in ([p for p in group if os.path.isfile(p)] for group in event.clusters)
                          if len(g) >= config.min_size]
        if event.photos:
            kept.append(event)
    out = check_tree_folder(events_tree_folder(config.tree_folder(library)), libraries=indexer.libraries)
    info = {"library": os.fspath(library), "by": "events", "sim": sim, "hours": hours, "km": km,
            "model": indexer.model_name, "min_size": config.min_size, "written_by_daemon": True}
    tree = write_event_tree([(e.name, e.photos, e.clusters) for e in kept], out, info=info)
    logger.info("%s: %d events at %g h, %g km written to %s", library, len(kept), hours, km, tree)
    return kept, tree


def events_answer(events):
    """The D-Bus answer for events: ``(name, date, place, start, end, photos, clusters)`` each (``sssddasaas``).

    Photos whose names are not UTF-8 cannot travel over D-Bus: they are left out of the answer (the tree holds them).
    """

    def utf8(paths):
        out = []
        for p in map(os.fspath, paths):
            try:
                p.encode("utf-8")
            except UnicodeEncodeError:
                continue
            out.append(p)
        return out

    return [[e.name, e.date, e.place, float(e.start), float(e.end), utf8(e.photos),
             [g for g in map(utf8, e.clusters) if g]] for e in events]
