"""Events and trips: photos grouped by when and where they were taken, then by content inside each.

Pure functions over arrays (capture times, positions, fingerprints); reading
the times and positions is :mod:`imagecluster._capture`'s job, and
:mod:`imagecluster._library_events` runs this over a library's store.

The rules, in order:

1. **Time and place.** Photos with a position are taken in time order. A
   photo joins an open event when its time is at most ``hours`` after the
   event's last photo *and* it lies at most ``km`` from the event's last
   position; of several such events (two trips at the same time, one place),
   the nearest. Otherwise it starts a new event. So a gap of more than
   ``hours`` splits, and two cameras of one family in two cities on the same
   day make two events even though their times interleave. A trip that moves
   more than ``km`` between two consecutive photos is split there: raise
   ``km`` for road trips.
2. **No position.** A photo without GPS (or whose position was removed) joins
   the event with the photo nearest to it in time, if that is at most
   ``hours`` away; otherwise photos without a position make events of their
   own by the time rule alone.
3. **Content (optional).** With ``join_sim``, two events at one place (or
   one of them without a position) that follow each other within
   ``join_hours`` are merged when a photo of one and a photo of the other are
   at least ``join_sim`` alike: a long night at one camp without photos no
   longer splits the trip. ``benchmarks/bench_events.py`` measures whether
   it helps (see the README's table).
4. Inside each event, content clusters at ``sim``
   (:func:`imagecluster.cluster.cluster`).
"""

import datetime as _dt
import math
from typing import NamedTuple

import numpy as np

from ._exceptions import InvalidParameter
from .cluster import DEFAULT_SIM, check_min_size, check_sim, cluster

__all__ = [
    "DEFAULT_HOURS", "DEFAULT_JOIN_HOURS", "DEFAULT_JOIN_SIM", "DEFAULT_KM", "Event", "check_hours", "check_km",
    "cluster_events", "event_label", "find_events", "haversine_km",
]

#: A gap in time longer than this (hours) splits events. Measured (``benchmarks/bench_events.py``): nights
#: between two days of one trip leave gaps of up to 16 h; F1 is at its best from 18 h to 36 h.
DEFAULT_HOURS = 24.0
#: Photos farther apart than this (km) at the same time are separate events. Measured likewise: trips that
#: wander up to 16 km stay whole, a trip 55 km away stays apart; F1 is at its best from 20 km to 50 km.
DEFAULT_KM = 30.0
#: Events mode joins what time alone split when a photo on each side is at least this alike (measured likewise).
DEFAULT_JOIN_SIM = 0.8
#: How long a gap the optional content join may bridge (hours).
DEFAULT_JOIN_HOURS = 48.0

_EARTH_KM = 6371.0088
_EPOCH = _dt.datetime(1970, 1, 1)


class Event(NamedTuple):
    """One event: its photos (row indices, in time order) and its content clusters (row indices)."""

    members: list
    clusters: list
    start: float
    end: float
    lat: float | None
    lon: float | None


def check_hours(hours, what="hours"):
    """Return ``hours`` as a float > 0; InvalidParameter otherwise."""
    if isinstance(hours, bool) or not isinstance(hours, (int, float, np.integer, np.floating)):
        raise InvalidParameter(f"{what} must be a number of hours > 0, got {hours!r}")
    if not (math.isfinite(hours) and hours > 0):
        raise InvalidParameter(f"{what} must be a number of hours > 0, got {hours!r}")
    return float(hours)


def check_km(km):
    """Return ``km`` as a float > 0; InvalidParameter otherwise."""
    if isinstance(km, bool) or not isinstance(km, (int, float, np.integer, np.floating)):
        raise InvalidParameter(f"km must be a distance in km > 0, got {km!r}")
    if not (km > 0) or math.isnan(km):
        raise InvalidParameter(f"km must be a distance in km > 0, got {km!r}")
    return float(km)


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (arrays broadcast)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def find_events(times, lats, lons, *, hours=DEFAULT_HOURS, km=DEFAULT_KM, fingerprints=None, join_sim=None,
                join_hours=DEFAULT_JOIN_HOURS):
    """Group photos into events by capture time and place.

    Parameters
    ----------
    times : array-like of shape (n_images,)
        Capture times, seconds since the epoch (UTC); NaN for a photo without
        a time (they are left out of every event).
    lats, lons : array-like of shape (n_images,)
        Positions in degrees; NaN where a photo has none.
    hours : float, default=DEFAULT_HOURS
        A gap longer than this splits events.
    km : float, default=DEFAULT_KM
        Photos farther apart than this are in separate events, even at the same time.
    fingerprints : array-like of shape (n_images, n_features), default=None
        When given, a photo without a position that could join several
        events at the same time joins the one with the photo most like it;
        needed for ``join_sim``.
    join_sim : float or None, default=None
        Merge consecutive events at one place whose best photo pair is at
        least this alike (cosine); None does not use content.
    join_hours : float, default=DEFAULT_JOIN_HOURS
        The longest gap the content join bridges.

    Returns
    -------
    list of ndarray of int
        Row indices of each event, in time order within it; events ordered
        by their first photo's time.
    """
    hours, km = check_hours(hours), check_km(km)
    times = np.asarray(times, dtype=np.float64)
    lats, lons = np.asarray(lats, dtype=np.float64), np.asarray(lons, dtype=np.float64)
    if not times.shape == lats.shape == lons.shape or times.ndim != 1:
        raise InvalidParameter("times, lats and lons must be 1-D arrays of one length")
    gap = hours * 3600.0
    dated = ~np.isnan(times)
    located = dated & ~np.isnan(lats) & ~np.isnan(lons)
    events = _by_time_and_place(times, lats, lons, np.flatnonzero(located), gap, km)
    unit = None if fingerprints is None else _unit(np.asarray(fingerprints, np.float32))
    if unit is not None and len(unit) != len(times):
        raise InvalidParameter("fingerprints must have one row per photo")
    events = _join_unlocated(times, np.flatnonzero(dated & ~located), events, gap, unit)
    events = [np.array(sorted(e, key=lambda i: (times[i], i)), dtype=np.intp) for e in events]
    events.sort(key=lambda e: (times[e[0]], e[0]))
    if join_sim is not None:
        if fingerprints is None:
            raise InvalidParameter("join_sim needs the fingerprints")
        events = _join_by_content(events, times, lats, lons, unit, check_sim(join_sim),
                                  check_hours(join_hours, "join_hours") * 3600.0, km)
    return events


def _by_time_and_place(times, lats, lons, rows, gap, km):
    rows = rows[np.lexsort((rows, times[rows]))]
    events: list[list] = []  # [members, last time, last lat, last lon]
    active: list[int] = []  # indices into events still within the gap
    for i in rows:
        t = times[i]
        active = [k for k in active if t - events[k][1] <= gap]
        best, best_km = None, km
        if active:
            dist = haversine_km(lats[i], lons[i], [events[k][2] for k in active], [events[k][3] for k in active])
            j = int(np.argmin(dist))
            if dist[j] <= best_km:
                best = active[j]
        if best is None:
            events.append([[i], t, lats[i], lons[i]])
            active.append(len(events) - 1)
        else:
            event = events[best]
            event[0].append(i)
            event[1], event[2], event[3] = t, lats[i], lons[i]
    return [e[0] for e in events]


def _unit(fps):
    norms = np.linalg.norm(fps, axis=1, keepdims=True)
    return fps / np.where(norms > 0, norms, 1.0)


def _join_unlocated(times, rows, events, gap, unit):
    """Photos without a position join the event whose nearest photo in time is within the gap.

    When several events have photos within the gap (trips at the same time
    in two places) and ``unit`` (unit fingerprints) is given, the photo
    joins the one holding the photo most like it among those within the gap:
    the time alone cannot tell them apart.
    """
    rows = rows[np.lexsort((rows, times[rows]))]
    member_times = [np.sort(times[e]) for e in events]
    events = [list(e) for e in events]
    starts = np.array([t[0] for t in member_times]) if events else np.empty(0)
    ends = np.array([t[-1] for t in member_times]) if events else np.empty(0)
    for i in rows:
        t = times[i]
        span = np.maximum(starts - t, t - ends) if len(starts) else np.empty(0)
        candidates = np.flatnonzero(span <= gap)
        best, best_dt, near = None, math.inf, []
        for k in candidates:
            mt = member_times[k]
            at = np.searchsorted(mt, t)
            nearest = min(abs(mt[j] - t) for j in (at - 1, at) if 0 <= j < len(mt))
            if nearest <= gap:
                near.append(k)
            if nearest < best_dt:
                best, best_dt = k, nearest
        if unit is not None and len(near) > 1:
            likeness = [max(float(unit[j] @ unit[i]) for j in events[k] if abs(times[j] - t) <= gap) for k in near]
            best = near[int(np.argmax(likeness))]
        if best is None or best_dt > gap:
            events.append([i])
            member_times.append(np.array([t]))
            starts, ends = np.append(starts, t), np.append(ends, t)
        else:
            events[best].append(i)
            member_times[best] = np.insert(member_times[best], np.searchsorted(member_times[best], t), t)
            starts[best], ends[best] = min(starts[best], t), max(ends[best], t)
    return events


def _position(event, lats, lons):
    """The median position of an event's located photos, or None."""
    la, lo = lats[event], lons[event]
    ok = ~np.isnan(la) & ~np.isnan(lo)
    if not ok.any():
        return None
    return float(np.median(la[ok])), float(np.median(lo[ok]))


def _join_by_content(events, times, lats, lons, unit, join_sim, join_gap, km):
    merged = [events[0]] if events else []
    for event in events[1:]:
        last = merged[-1]
        gap = times[event[0]] - times[last[-1]]
        a, b = _position(last, lats, lons), _position(event, lats, lons)
        near = a is None or b is None or haversine_km(a[0], a[1], b[0], b[1]) <= km
        if 0 <= gap <= join_gap and near and float((unit[last] @ unit[event].T).max()) >= join_sim:
            merged[-1] = np.concatenate([last, event])
        else:
            merged.append(event)
    return merged


def cluster_events(times, lats, lons, fingerprints, *, sim=DEFAULT_SIM, hours=DEFAULT_HOURS, km=DEFAULT_KM,
                   min_size=2, join_sim=DEFAULT_JOIN_SIM):
    """Events (:func:`find_events`), each with its content clusters at ``sim``.

    Parameters
    ----------
    times, lats, lons : array-like of shape (n_images,)
        As for :func:`find_events`.
    fingerprints : array-like of shape (n_images, n_features)
        The photos' fingerprints, rows as ``times``.
    sim : float, default=DEFAULT_SIM
        Similarity for the content clusters inside each event.
    hours, km
        As for :func:`find_events`.
    join_sim : float or None, default=DEFAULT_JOIN_SIM
        As for :func:`find_events`; here on by default (the fingerprints
        are at hand, and it measured better).
    min_size : int, default=2
        Smallest content cluster inside an event (every photo still belongs to its event).

    Returns
    -------
    list of Event
        In time order; ``clusters`` are lists of row indices, largest first.
    """
    sim, min_size = check_sim(sim), check_min_size(min_size)
    fps = np.asarray(fingerprints, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64)
    lats, lons = np.asarray(lats, dtype=np.float64), np.asarray(lons, dtype=np.float64)
    if fps.ndim != 2 or len(fps) != len(times):
        raise InvalidParameter("fingerprints must have one row per photo")
    out = []
    for members in find_events(times, lats, lons, hours=hours, km=km, fingerprints=fps, join_sim=join_sim):
        groups = cluster(fps[members], sim, min_size) if len(members) >= min_size else []
        position = _position(members, lats, lons)
        out.append(Event(
            members=[int(i) for i in members],
            clusters=[[int(members[j]) for j in g] for g in groups],
            start=float(times[members[0]]), end=float(times[members[-1]]),
            lat=None if position is None else position[0], lon=None if position is None else position[1],
        ))
    return out


def event_label(wall, lat, lon, index):
    """The folder name of an event: ``YYYY-MM-DD_<place>`` or ``YYYY-MM-DD_<index>`` without a position.

    Parameters
    ----------
    wall : float
        Wall-clock time of its first photo (see :class:`imagecluster._capture.Capture`).
    lat, lon : float or None
        Its position.
    index : int
        Its number (1-based), used when there is no position.

    Returns
    -------
    str
        E.g. ``2024-05-01_45.07N_7.69E`` (coordinates rounded to 0.01 degree, ~1 km).
    """
    try:
        day = (_EPOCH + _dt.timedelta(seconds=wall)).strftime("%Y-%m-%d")
    except (OverflowError, ValueError):
        day = "undated"
    return f"{day}_{place_label(lat, lon) if lat is not None else f'{index:03d}'}"


def place_label(lat, lon):
    """Rounded coordinates as text, ``45.07N_7.69E``, or an empty string without a position."""
    if lat is None or lon is None:
        return ""
    return f"{abs(lat):.2f}{'S' if lat < 0 else 'N'}_{abs(lon):.2f}{'W' if lon < 0 else 'E'}"
