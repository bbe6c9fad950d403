"""``imagecluster show`` and ``imagecluster dendrogram``: looking at the clusters.

Only wiring: the gallery and the plot are :mod:`imagecluster.gallery`. Both
commands first bring the library's fingerprints up to date, as ``cluster``
does, with the same report.
"""

import argparse
import os
import sys
import webbrowser

from ._api import default_tree_folder, run_cluster
from ._progress import ProgressBar
from .cluster import DEFAULT_SIM
from .graph import DEFAULT_FLOOR
from .models import DEFAULT_MODEL, MODEL_NAMES

__all__ = ["add_gallery_commands", "write_html"]

_SHOW_SIM_HELP = (
    f"the sim the page opens at, {DEFAULT_FLOOR}..1 (default {DEFAULT_SIM}); the page's slider regroups at any "
    f"sim in {DEFAULT_FLOOR}..1 exactly as `imagecluster cluster --sim` does"
)


def add_gallery_commands(commands, sim_type, count_type):
    """Add ``show`` and ``dendrogram`` to the command line's subparsers.

    Parameters
    ----------
    commands : argparse subparsers
    sim_type : callable
        The ``--sim`` argument type of the other commands (0..1, a clear message otherwise).
    count_type : callable
        Their type for a whole number >= 1 (``--batch-size``).
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("folder", metavar="DIR", help="photo folder, searched recursively")
    common.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL,
                        help=f"fingerprint model (default {DEFAULT_MODEL})")
    common.add_argument("--batch-size", type=count_type, default=32, help="photos per inference call (default 32)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more (twice: debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar (or progress lines in a log)")

    show = commands.add_parser(
        "show", parents=[common],
        help="write an HTML gallery of the clusters, with a sim slider",
        description="Fingerprint what is new, then write OUT/index.html: one row of thumbnails per cluster, "
        "largest first, a sim slider that regroups in the page, offline from file:// (no server, no network). "
        "Thumbnails are cached in the library's store folder.",
    )
    show.add_argument("--sim", type=_gallery_sim(sim_type), default=DEFAULT_SIM, help=_SHOW_SIM_HELP)
    show.add_argument("--out", metavar="OUT", help="the gallery's folder (default DIR/clusters-gallery)")
    show.add_argument("--open", action="store_true", help="open the gallery in the web browser")
    show.set_defaults(run=_run_show)

    plot = commands.add_parser(
        "dendrogram", parents=[common],
        help="draw the clustering's dendrogram (y axis in sim) as a PNG",
        description="Fingerprint what is new, then draw the average-linkage dendrogram into a PNG: y axis in "
        "sim (1 at the photos, 0 at the root), the chosen sim as a dashed red line, photos labelled with "
        "their file names. Above 300 photos the leaves are the clusters at --sim. Needs matplotlib: "
        "pip install 'imagecluster[plots]'.",
    )
    plot.add_argument("--png", metavar="FILE", required=True, help="where the PNG goes")
    plot.add_argument("--sim", type=sim_type, default=DEFAULT_SIM, help=f"the sim line (default {DEFAULT_SIM})")
    plot.set_defaults(run=_run_dendrogram)


def _gallery_sim(sim_type):
    def gallery_sim(text):
        value = sim_type(text)
        if value < DEFAULT_FLOOR:
            raise argparse.ArgumentTypeError(
                f"{text} is below {DEFAULT_FLOOR}: the gallery shows sim {DEFAULT_FLOOR}..1"
            )
        return value

    return gallery_sim


def _index(args, sim, thumbnails=False):
    from .cli import _print_report

    report, _, _ = run_cluster(args.folder, sim=sim, model=args.model, batch_size=args.batch_size,
                               progress=not args.quiet, write=False, thumbnails=thumbnails)
    _print_report(report, list_all=args.verbose > 0)
    return report.library


def write_html(library, out, *, sim, model, quiet):
    """Write the gallery of an indexed library to ``out`` with a progress bar; returns the Gallery.

    Parameters
    ----------
    library : Path
    out : path-like
    sim : float
        Below the gallery's floor, the page opens at the floor.
    model : str
    quiet : bool
        No progress.
    """
    from .gallery import write_gallery

    if sim < DEFAULT_FLOOR:
        print(f"imagecluster: the gallery shows sim {DEFAULT_FLOOR}..1; it opens at {DEFAULT_FLOOR}", file=sys.stderr)
    with ProgressBar(f"thumbnails of {library.name or library}", enabled=not quiet) as bar:
        return write_gallery(library, out, sim=max(sim, DEFAULT_FLOOR), model=model, progress=bar)


def _run_show(args):
    from .cli import EXIT_OK, _count, _shown
    from .gallery import check_gallery_folder

    out = check_gallery_folder(args.out if args.out else f"{default_tree_folder(args.folder)}-gallery")
    root = _index(args, args.sim, thumbnails=True)  # one decode for each new photo's fingerprint and thumbnail
    gallery = write_html(root, out, sim=args.sim, model=args.model, quiet=args.quiet)
    photos = sum(len(c) for c in gallery.clusters)
    print(f"{_count(len(gallery.clusters), 'cluster')} with {_count(photos, 'photo')} at sim {args.sim:g} "
          f"(of {_count(gallery.photos, 'photo')}): {_shown(gallery.index)}")
    if args.open:
        if not webbrowser.open(gallery.index.as_uri()):
            print(f"imagecluster: no web browser found; open {_shown(gallery.index)}", file=sys.stderr)
    return EXIT_OK


def _run_dendrogram(args):
    from .cli import EXIT_OK, _shown
    from .gallery import MAX_LEAVES, plot_dendrogram
    from .store import Store

    root = _index(args, max(args.sim, DEFAULT_FLOOR))
    names, fingerprints = Store(root).fingerprints(args.model)
    if len(names) > MAX_LEAVES:
        print(f"imagecluster: {len(names)} photos are too many to label one by one (at most {MAX_LEAVES}): the "
              f"leaves are the clusters at sim {args.sim:g} instead", file=sys.stderr)
    drawn = plot_dendrogram(names, fingerprints, args.png, sim=args.sim, title=os.fspath(root.name or root),
                            photos=[root / name for name in names])
    print(f"dendrogram of {drawn.leaves} {drawn.level} written to {_shown(os.path.abspath(args.png))}")
    return EXIT_OK
