"""A library's events (:mod:`imagecluster.events`) from what its store holds.

Capture data is read while photos are fingerprinted (:mod:`imagecluster._library`,
the daemon's worker) and kept in the store. Photos fingerprinted before
that existed, or whose file changed since, get theirs read here, from the
header only (~0.1-0.3 ms a photo), and stored, so the next call reads nothing.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._capture import DEFAULT_SOURCES, capture_time, check_sources, read_capture
from ._exceptions import StoreError
from ._pairs import one_per_shot
from ._store_state import Captured
from .cluster import DEFAULT_SIM
from .events import DEFAULT_HOURS, DEFAULT_JOIN_SIM, DEFAULT_KM, cluster_events, event_label, place_label

__all__ = ["LibraryEvent", "capture_items", "library_events", "refresh_captures", "run_events"]

logger = logging.getLogger(__name__)

_READ_THREADS = 4  # header reads wait on the disk, not the CPU


@dataclass
class LibraryEvent:
    """One event of a library: its folder name, when and where, its photos and its content clusters."""

    name: str
    date: str
    start: float
    end: float
    place: str
    lat: float | None
    lon: float | None
    photos: list
    clusters: list
    sources: dict = field(default_factory=dict)


def refresh_captures(root, store, entries):
    """Read and store the capture data of stored photos that have none for their current file.

    Parameters
    ----------
    root : Path
        The library.
    store : Store
        Its store.
    entries : dict of str to Entry
        The photos (library-relative path -> size and mtime when fingerprinted).

    Returns
    -------
    dict of str to Captured
        The capture data of every photo in ``entries``.
    """
    captures = store.captures()
    stale = [p for p, e in entries.items() if captures.get(p, (None, None))[:2] != tuple(e)]
    if not stale:
        return {p: captures[p] for p in entries}
    logger.info("reading the capture time and place of %d photo(s)", len(stale))
    with ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="imagecluster-capture") as pool:
        read = list(pool.map(lambda p: (_sig(root / p), read_capture(root / p)), stale))
    found = {p: captures[p] for p in entries if p in captures}
    items = []
    for path, (sig, capture) in zip(stale, read):
        size, mtime_ns = entries[path]
        found[path] = Captured(size, mtime_ns, capture)
        if sig == (size, mtime_ns):  # a file changed since its fingerprint is read again at the next index
            items.append((path, size, mtime_ns, capture))
    try:
        store.put_captures(items)
    except (StoreError, OSError) as exc:  # a locked or full store: the data is used now, read again next time
        logger.warning("cannot keep the capture times of %s in its store: %s", root, exc)
    return found


def _sig(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def library_events(root, store, model_name, *, sim, hours=DEFAULT_HOURS, km=DEFAULT_KM, sources=DEFAULT_SOURCES,
                   min_size=2, pair_link="jpeg", join_sim=DEFAULT_JOIN_SIM):
    """Events of one library's stored photos, with content clusters inside each.

    Parameters
    ----------
    root : Path
        The library.
    store : Store
        Its store.
    model_name : str
        Whose fingerprints cluster the content.
    sim : float
        Similarity for the content clusters.
    hours, km, join_sim
        As :func:`imagecluster.events.cluster_events` (``join_sim`` None: no content join).
    sources : sequence of str, default=DEFAULT_SOURCES
        Where capture times come from, in order (:func:`imagecluster._capture.capture_time`).
    min_size : int, default=2
        Smallest content cluster inside an event.
    pair_link : {"jpeg", "raw"}, default="jpeg"
        Which file of a RAW + JPEG pair stands for the shot.

    Returns
    -------
    events : list of LibraryEvent
        In time order; photos as absolute Paths.
    undated : list of Path
        Photos without a capture time from ``sources`` (only when ``"mtime"`` is not among them).
    """
    view = store.view(model_name)
    if not view.paths:
        return [], []
    kept = one_per_shot([view.paths], link=pair_link, min_size=1)
    paths = kept[0] if kept else []
    rows = {p: i for i, p in enumerate(view.paths)}
    entries = {p: view.entries[p] for p in paths}
    captures = refresh_captures(root, store, entries)
    times, walls, lats, lons, used = [], [], [], [], []
    for p in paths:
        captured = captures.get(p)
        capture = captured.capture if captured is not None else None
        when = capture_time(capture, entries[p].mtime_ns, sources) if capture is not None else None
        times.append(np.nan if when is None else when.timestamp)
        walls.append(np.nan if when is None else when.wall)
        used.append(None if when is None else when.source)
        lats.append(np.nan if capture is None or capture.lat is None else capture.lat)
        lons.append(np.nan if capture is None or capture.lon is None else capture.lon)
    fps = np.asarray(view.matrix[[rows[p] for p in paths]], dtype=np.float32)
    found = cluster_events(times, lats, lons, fps, sim=sim, hours=hours, km=km, min_size=min_size,
                           join_sim=join_sim)
    events: list[LibraryEvent] = []
    names: dict[str, int] = {}
    for number, event in enumerate(found, 1):
        name = event_label(walls[event.members[0]], event.lat, event.lon, number)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}_{names[name]}"
        sources_used: dict[str | None, int] = {}
        for i in event.members:
            sources_used[used[i]] = sources_used.get(used[i], 0) + 1
        events.append(LibraryEvent(
            name=name, date=name.split("_", 1)[0], start=event.start, end=event.end,
            place=place_label(event.lat, event.lon), lat=event.lat, lon=event.lon,
            photos=[root / paths[i] for i in event.members],
            clusters=[[root / paths[i] for i in group] for group in event.clusters],
            sources=sources_used,
        ))
    undated = [root / p for p, t in zip(paths, times) if np.isnan(t)]
    return events, undated


def capture_items(root, paths_and_stats):
    """``(path, size, mtime_ns, Capture)`` for photos just fingerprinted: their headers read now, while cached.

    Parameters
    ----------
    root : Path
        The library.
    paths_and_stats : iterable of (str, int, int)
        Library-relative path, size and mtime_ns the fingerprint is stored under.
    """
    return [(rel, size, mtime, read_capture(Path(root) / rel)) for rel, size, mtime in paths_and_stats]


def run_events(library, *, sim=DEFAULT_SIM, hours=DEFAULT_HOURS, km=DEFAULT_KM, sources=DEFAULT_SOURCES, out=None,
               model=None, min_size=2, batch_size=32, progress=False, pair_link="jpeg", join_sim=DEFAULT_JOIN_SIM,
               scheduler=None, path_map=()):
    """Index a library, group it into events with content clusters inside, and write the events tree.

    The work behind ``imagecluster cluster DIR --by events``; the parameters
    are those of :func:`library_events` and :func:`imagecluster.cluster_folder`.

    Returns
    -------
    report : IndexReport
    events : list of LibraryEvent
    undated : list of Path
    tree : Path
        ``OUT/events/<date>_<place or number>/`` per event.
    """
    from ._api import default_tree_folder, index_for_run
    from ._pairs import check_pair_link
    from ._pipeline import check_batch_size, resolve_model
    from .cluster import check_min_size, check_sim
    from .events import check_hours, check_km
    from .images import check_library
    from .store import Store
    from .tree import check_tree_folder, write_event_tree

    root = check_library(library)
    sim, min_size, pair_link = check_sim(sim), check_min_size(min_size), check_pair_link(pair_link)
    hours, km, sources = check_hours(hours), check_km(km), check_sources(sources)
    batch_size = check_batch_size(batch_size)
    out = check_tree_folder(default_tree_folder(root) if out is None else out, libraries=[root])
    model = resolve_model(model)
    store = Store(root)
    report = index_for_run(root, model, store, exclude=[out], batch_size=batch_size, progress=progress,
                           scheduler=scheduler, path_map=path_map)
    events, undated = library_events(root, store, model.name, sim=sim, hours=hours, km=km, sources=sources,
                                     min_size=min_size, pair_link=pair_link, join_sim=join_sim)
    info = {"library": os.fspath(root), "by": "events", "sim": sim, "hours": hours, "km": km, "join_sim": join_sim,
            "sources": list(sources), "model": model.name, "min_size": min_size}
    tree = write_event_tree([(e.name, e.photos, e.clusters) for e in events], out, info=info)
    return report, events, undated, tree
