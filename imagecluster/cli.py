"""The ``imagecluster`` command: wires the core together for a person at a terminal.

Exit status: 0 success, 1 the work failed (message on stderr), 2 a usage
mistake (bad option or value), 130 interrupted.
"""

import argparse
import collections
import logging
import math
import sys
import warnings

from PIL import Image

from . import __version__
from ._api import run_cluster
from ._exceptions import ImageClusterError
from ._library import index_library
from ._progress import ProgressBar
from .cluster import CUTS, DEFAULT_SIM
from .images import check_library
from .models import DEFAULT_MODEL, MODEL_NAMES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Skipped files listed one by one before the rest is only counted.
_MAX_LISTED = 20

_SIM_HELP = f"""\
similarity index in 0..1 (default {DEFAULT_SIM}). Photos are grouped when they
are, on average, at least this similar by content (cosine similarity of their
fingerprints). Higher = stricter, smaller groups: 0.9 finds near-duplicates and
bursts of the same shot, 0.7 the same scene or subject, 0.5 loosely related
photos; 1 only identical photos, 0 puts everything in one group."""


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    # Photos of 90-180 MP (panoramas, medium format) are fine to decode small;
    # Pillow's warning about them would only alarm a user. Larger ones are
    # still refused (DecompressionBombError) and reported as skipped.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="imagecluster: %(message)s",
    )
    try:
        return args.run(args)
    except ImageClusterError as exc:
        print(f"imagecluster: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("imagecluster: interrupted; fingerprints made so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="imagecluster",
        description="Group photos by content: fingerprint them with a neural network, "
        "cluster similar ones, and write the groups as folders of symlinks.",
    )
    parser.add_argument("--version", action="version", version=f"imagecluster {__version__}")
    parser.set_defaults(run=lambda args: parser.print_help() or EXIT_USAGE, verbose=0)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("folder", metavar="DIR", help="photo folder, searched recursively")
    common.add_argument(
        "--model", choices=MODEL_NAMES, default=DEFAULT_MODEL,
        help=f"fingerprint model (default {DEFAULT_MODEL}; vgg16 needs internet once for its weights)",
    )
    common.add_argument("--batch-size", type=_positive_int, default=32, help="photos per inference call (default 32)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more (twice: debug)")

    cluster = commands.add_parser(
        "cluster", parents=[common],
        help="fingerprint what is new, cluster, write the tree",
        description="Fingerprint the new or changed photos of DIR (kept in DIR/.imagecluster), cluster all "
        "of them, print a summary and write the clusters as OUT/cluster_with_N/cluster_K/ folders of "
        "symlinks to the photos. Photos are never moved, changed or deleted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cluster.add_argument("--sim", type=_sim, default=DEFAULT_SIM, help=_SIM_HELP)
    cluster.add_argument("--out", metavar="OUT", help="where to write the cluster tree (default DIR/clusters)")
    cluster.add_argument("--min-size", type=_positive_int, default=2, help="smallest cluster shown (default 2)")
    cluster.add_argument(
        "--cut", choices=CUTS, default="absolute",
        help="absolute (default): sim means the same in any library; relative: the original "
        "imagecluster rule, cut at (1 - sim) x the largest distance in this library",
    )
    cluster.set_defaults(run=_run_cluster)

    index = commands.add_parser(
        "index", parents=[common],
        help="only fingerprint what is new or changed",
        description="Fingerprint the new or changed photos of DIR into DIR/.imagecluster, without clustering.",
    )
    index.set_defaults(run=_run_index)
    return parser


def _sim(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; sim is between 0 and 1") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _run_cluster(args):
    report, clusters, tree = run_cluster(
        args.folder, sim=args.sim, out=args.out, model=args.model, min_size=args.min_size,
        cut=args.cut, batch_size=args.batch_size, progress=True,
    )
    _print_report(report)
    _print_clusters(clusters)
    photos = sum(len(c) for c in clusters)
    print(f"{len(clusters)} clusters with {photos} photos written to {tree}")
    return EXIT_OK


def _run_index(args):
    root = check_library(args.folder)
    with ProgressBar(f"fingerprinting {root.name or root}") as bar:
        report = index_library(root, model=args.model, batch_size=args.batch_size, progress=bar)
    _print_report(report)
    return EXIT_OK


def _print_report(report):
    changes = [f"{report.added} new", f"{report.updated} changed", f"{report.unchanged} unchanged"]
    if report.removed:
        changes.append(f"{report.removed} gone")
    print(f"{report.library}: {report.found} photos ({', '.join(changes)}), model {report.model}")
    if report.failures:
        print(f"skipped {len(report.failures)} file(s) that could not be read:")
        for failure in report.failures[:_MAX_LISTED]:
            print(f"  {failure.path}: {failure.reason}")
        if len(report.failures) > _MAX_LISTED:
            print(f"  ... and {len(report.failures) - _MAX_LISTED} more")


def _print_clusters(clusters):
    if not clusters:
        print("no clusters at this sim; try a lower --sim")
        return
    counts = collections.Counter(len(c) for c in clusters)
    width = len("cluster size")
    print(f"{'cluster size':<{width}} : ncluster")
    for size in sorted(counts):
        print(f"{size:<{width}} : {counts[size]}")


if __name__ == "__main__":
    sys.exit(main())
