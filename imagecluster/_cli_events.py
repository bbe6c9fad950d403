"""``imagecluster cluster DIR --by events``: the options and the summary.

The work is in :mod:`imagecluster._library_events`.
"""

import argparse
import math
import sys

from ._capture import DEFAULT_SOURCES, SOURCES, check_sources
from ._exceptions import InvalidParameter
from .events import DEFAULT_HOURS, DEFAULT_JOIN_HOURS, DEFAULT_JOIN_SIM, DEFAULT_KM

__all__ = ["add_event_options", "add_remote_event_options", "run_events_command"]

_SOURCE_NAMES = {"original": "DateTimeOriginal", "digitized": "DateTimeDigitized", "datetime": "DateTime",
                 "mtime": "file time", None: "no time"}


def add_event_options(parser):
    """Add ``--by``, ``--hours``, ``--km`` and ``--time-from`` to the ``cluster`` command."""
    parser.add_argument(
        "--by", choices=("content", "events"), default="content",
        help="content (default): clusters of similar photos; events: photos grouped by when and where they "
        "were taken (EXIF time and GPS), written as OUT/events/<date>_<place>/ with the content clusters inside",
    )
    parser.add_argument("--hours", type=_positive("hours"), default=DEFAULT_HOURS,
                        help=f"--by events: a gap longer than this splits events (default {DEFAULT_HOURS:g})")
    parser.add_argument("--km", type=_positive("km"), default=DEFAULT_KM,
                        help=f"--by events: photos farther apart than this are separate events, even at the same "
                        f"time (default {DEFAULT_KM:g})")
    parser.add_argument(
        "--no-content-join", dest="content_join", action="store_false",
        help=f"--by events: never join two events at one place by content (default: joined when a photo of "
        f"each is at least {DEFAULT_JOIN_SIM} alike and at most {DEFAULT_JOIN_HOURS:g} h lie between them)",
    )
    parser.add_argument(
        "--time-from", type=_sources, default=DEFAULT_SOURCES, metavar="SOURCES",
        help=f"--by events: where a photo's time comes from, in order (default {','.join(DEFAULT_SOURCES)}; "
        "leave out mtime to put photos without EXIF time aside). Times without a zone are local time",
    )


def add_remote_event_options(parser):
    """``remote cluster --by events [--hours H] [--km K]``: the daemon's ClusterEvents."""
    parser.add_argument("--by", choices=("content", "events"), default="content",
                        help="events: group every library by when and where photos were taken (ClusterEvents)")
    parser.add_argument("--hours", type=_positive("hours"), default=None,
                        help=f"--by events: a longer gap splits events (default {DEFAULT_HOURS:g})")
    parser.add_argument("--km", type=_positive("km"), default=None,
                        help=f"--by events: photos farther apart are separate events (default {DEFAULT_KM:g})")


def _positive(what):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if math.isnan(value) or math.isinf(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be more than 0, got {text}")
        return value

    return parse


def _sources(text):
    try:
        return check_sources(text)
    except InvalidParameter as exc:
        raise argparse.ArgumentTypeError(f"{exc} (choose from {','.join(SOURCES)})") from None


def run_events_command(args, *, print_report, count, shown, dask):
    """Run ``cluster --by events`` and print its summary; returns the exit status (0)."""
    from ._library_events import run_events

    if getattr(args, "html", False):
        print("imagecluster: --html shows content clusters; no gallery is written for --by events", file=sys.stderr)

    report, events, undated, tree = run_events(
        args.folder, sim=args.sim, hours=args.hours, km=args.km, sources=args.time_from, out=args.out,
        model=args.model, min_size=args.min_size, batch_size=args.batch_size, progress=not args.quiet,
        pair_link=args.pair_link, join_sim=DEFAULT_JOIN_SIM if args.content_join else None, **dask,
    )
    print_report(report, list_all=args.verbose > 0)
    print_events(events, count=count)
    sources = {}
    for event in events:
        for source, n in event.sources.items():
            sources[source] = sources.get(source, 0) + n
    if sources:
        parts = [f"{n} from {_SOURCE_NAMES[s]}" for s, n in sorted(sources.items(), key=lambda kv: -kv[1])]
        print(f"capture times: {', '.join(parts)}")
    if undated:
        print(f"{count(len(undated), 'photo')} without a capture time from {','.join(args.time_from)}: in no event")
    photos = sum(len(e.photos) for e in events)
    clusters = sum(len(e.clusters) for e in events)
    print(f"{count(len(events), 'event')} with {count(photos, 'photo')} ({count(clusters, 'cluster')}) "
          f"written to {shown(tree)}")
    return 0


def print_events(events, *, count):
    """One line per event: dates, place, photos, clusters, folder."""
    if not events:
        print("no events: no photos")
        return
    for event in events:
        place = event.place.replace("_", " ") if event.place else "no GPS"
        print(f"  {event.date:<10} {_span(event.end - event.start):>9}  {place:<18} "
              f"{count(len(event.photos), 'photo'):>11}, {count(len(event.clusters), 'cluster'):>11}   "
              f"events/{event.name}")


def _span(seconds):
    """How long an event lasted, for a person: ``40 min``, ``5 h``, ``3 days``."""
    if seconds < 60:
        return ""
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"
