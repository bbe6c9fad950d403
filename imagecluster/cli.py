"""The ``imagecluster`` command: wires the core together for a person at a terminal.

Exit status: 0 success, 1 the work failed (message on stderr), 2 a usage
mistake (bad option or value), 130 interrupted, 141 stdout closed early
(``| head``); ``daemon`` also 3: another daemon owns the bus name. ``remote``
has a code per error kind (``imagecluster remote --help``, doc/plugin-guide.rst).
"""

import argparse
import collections
import logging
import os
import sys
import warnings

from PIL import Image

from . import __version__
from ._api import run_cluster
from ._cli_dask import add_dask_options, dask_options
from ._cli_events import add_event_options, run_events_command
from ._cli_gallery import add_gallery_commands, write_html
from ._cli_parser import Parser, checked_arg, number_arg
from ._cli_remote import add_remote_commands
from ._exceptions import ImageClusterError, InvalidParameter, MissingDependency, NotOurTree
from ._library import index_library
from ._pairs import PAIR_LINKS
from ._progress import ProgressBar
from ._validation import DEFAULT_BATCH_SIZE, check_sim
from .cluster import CUTS, DEFAULT_SIM
from .graph import LibraryGraph
from .images import check_library
from .models import DEFAULT_MODEL, MODEL_NAMES
from .store import Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: The reader of stdout went away (``| head``): what a shell shows for a process ended by SIGPIPE.
EXIT_BROKEN_PIPE = 141

# Skipped files listed one by one before the rest is only counted.
_MAX_LISTED = 20

_SIM_HELP = f"""\
similarity index in 0..1 (default {DEFAULT_SIM}). Photos are grouped when they
are, on average, at least this similar by content (cosine similarity of their
fingerprints). Higher = stricter, smaller groups: 0.9 near-duplicates, 0.8
bursts, 0.7 bursts and re-takes of the same scene or subject, 0.5 loosely
related photos; 1 only identical photos, 0 puts everything in one group."""


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    # Photos of 90-180 MP (panoramas, medium format) are fine to decode small;
    # Pillow's warning about them would only alarm a user. Larger ones are
    # still refused (DecompressionBombError) and reported as skipped.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Pillow's remarks on damaged metadata ("Corrupt EXIF data") are not the user's business:
    # the photo is read anyway, and a file that cannot be read is listed with its reason.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="imagecluster: %(message)s",
    )
    try:
        status = args.run(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return status
    except BrokenPipeError:
        # `imagecluster cluster DIR | head -1`: the reader has what it wanted. The
        # work is done (output comes last); what is still buffered goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except InvalidParameter as exc:  # a value only the work could check (e.g. --out inside the library)
        print(f"imagecluster: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MissingDependency as exc:  # e.g. --scheduler without distributed: the message says what to install
        print(f"imagecluster: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotOurTree as exc:  # the core's message names no option: the daemon sends it over D-Bus too
        print(f"imagecluster: error: {exc} (--out OUT chooses the folder)", file=sys.stderr)
        return EXIT_FAILED
    except ImageClusterError as exc:
        print(f"imagecluster: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("imagecluster: interrupted; fingerprints made so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED


def _build_parser():
    parser = Parser(
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
    common.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"photos per inference call (default {DEFAULT_BATCH_SIZE})")
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more (twice: debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar (or progress lines in a log)")
    add_dask_options(common)

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
    cluster.add_argument(
        "--pair-link", choices=PAIR_LINKS, default="jpeg",
        help="a RAW and a JPEG of one shot (IMG_1.CR2 + IMG_1.JPG) are one photo: which one the tree links "
        "(default jpeg)",
    )
    add_event_options(cluster)
    cluster.add_argument(
        "--html", action="store_true",
        help="also write a gallery of the clusters with a sim slider beside the tree (OUT-gallery/index.html)",
    )
    cluster.set_defaults(run=_run_cluster)

    index = commands.add_parser(
        "index", parents=[common],
        help="only fingerprint what is new or changed",
        description="Fingerprint the new or changed photos of DIR into DIR/.imagecluster, without clustering.",
    )
    index.set_defaults(run=_run_index)
    add_gallery_commands(commands, _sim, _positive_int)
    _add_daemon_commands(commands)
    add_remote_commands(commands, _sim, EXIT_USAGE)
    return parser


def _add_daemon_commands(commands):
    # Only argument parsing here: the daemon package (dbus-fast, watchdog) is
    # imported when one of these commands runs, never for `cluster` or `index`.
    daemon = commands.add_parser(
        "daemon",
        help="run the background service: watch libraries, answer on D-Bus",
        description="Keep the photos of each library fingerprinted as they arrive, and answer "
        "org.imagecluster.ImageCluster1 on the session bus (Cluster, Fingerprint, ...). Runs in the "
        "foreground and logs to stderr (the journal, under systemd). Settings come from "
        "$XDG_CONFIG_HOME/imagecluster/config.toml; the options here win. SIGTERM or SIGINT stops it.",
    )
    daemon.add_argument(
        "--library", metavar="DIR", action="append",
        help="photo folder to watch, recursively; repeat for more (replaces the config file's libraries)",
    )
    daemon.add_argument("--sim", type=_sim, help=f"the default sim offered to clients (default {DEFAULT_SIM})")
    daemon.add_argument("--model", choices=MODEL_NAMES, help=f"fingerprint model (default {DEFAULT_MODEL})")
    daemon.add_argument("--config", metavar="FILE",
                        help="config file (default $XDG_CONFIG_HOME/imagecluster/config.toml)")
    daemon.add_argument("-v", "--verbose", action="count", default=0, help="log debug messages too")
    daemon.set_defaults(run=_run_daemon)

    install = commands.add_parser(
        "install-service",
        help="write the systemd user unit and the D-Bus activation file",
        description="Write imagecluster.service (systemd user unit) and the D-Bus activation file "
        "org.imagecluster.ImageCluster1.service for this installation (this Python), replacing "
        "earlier ones. The daemon then reads its libraries from the config file.",
    )
    install.add_argument("--unit-dir", metavar="DIR",
                         help="where the unit goes (default $XDG_CONFIG_HOME/systemd/user)")
    install.add_argument(
        "--dbus-dir", metavar="DIR", help="where the activation file goes (default $XDG_DATA_HOME/dbus-1/services)"
    )
    install.set_defaults(run=_run_install_service)

    darktable = commands.add_parser(
        "install-darktable-plugin",
        help="install the darktable plugin (lighttable: cluster similar -> tags)",
        description="Copy the darktable plugin to CONFIGDIR/lua/contrib/imagecluster.lua and add "
        'require "contrib/imagecluster" to CONFIGDIR/luarc (once). Restart darktable; the lighttable\'s '
        "selected image[s] module then has a \"cluster similar\" button (doc/darktable.rst).",
    )
    darktable.add_argument(
        "--configdir", metavar="DIR",
        help="darktable's configuration folder, as darktable --configdir (default $XDG_CONFIG_HOME/darktable)",
    )
    darktable.set_defaults(run=_run_install_darktable_plugin)


def _sim(text):
    value = number_arg(text, f"{text!r} is not a number; sim is between 0 and 1")
    return checked_arg(check_sim, value, f"{text} is outside 0..1")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _run_cluster(args):
    if args.by == "events":
        return run_events_command(args, print_report=_print_report, count=_count, shown=_shown,
                                  dask=dask_options(args))
    report, clusters, tree = run_cluster(
        args.folder, sim=args.sim, out=args.out, model=args.model, min_size=args.min_size,
        cut=args.cut, batch_size=args.batch_size, progress=not args.quiet, pair_link=args.pair_link,
        thumbnails=args.html, **dask_options(args),
    )
    _print_report(report, list_all=args.verbose > 0)
    _print_clusters(clusters)
    photos = sum(len(c) for c in clusters)
    print(f"{_count(len(clusters), 'cluster')} with {_count(photos, 'photo')} written to {_shown(tree)}")
    if args.html:
        if args.cut != "absolute":
            print("imagecluster: the gallery shows the absolute cut (its slider's sim), not --cut relative",
                  file=sys.stderr)
        gallery = write_html(report.library, f"{tree}-gallery", sim=args.sim, model=args.model, quiet=args.quiet)
        print(f"gallery: {_shown(gallery.index)}")
    return EXIT_OK


def _run_index(args):
    root = check_library(args.folder)
    dask = dask_options(args)
    with ProgressBar(f"fingerprinting {root.name or root}", enabled=not args.quiet) as bar:
        if dask:
            from ._distributed import index_with_scheduler

            report = index_with_scheduler(root, dask["scheduler"], model=args.model, batch_size=args.batch_size,
                                          path_map=dask["path_map"], progress=bar)
        else:
            report = index_library(root, model=args.model, batch_size=args.batch_size, progress=bar)
    # The similarity graph too: else the first Cluster after this (the daemon's, or a cluster
    # run's) searches every pair of photos then, a minute and a half at 100,000 photos.
    with ProgressBar(f"comparing the photos of {root.name or root}", enabled=not args.quiet) as bar:
        LibraryGraph(Store(root), report.model).update(progress=bar.update)
    _print_report(report, list_all=args.verbose > 0)
    return EXIT_OK


def _run_daemon(args):
    from .daemon._config import ConfigError, load_config
    from .daemon._daemon import Daemon, configure_logging

    try:
        config = load_config(args.config, libraries=args.library, sim=args.sim, model=args.model)
    except ConfigError as exc:
        print(f"imagecluster: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.verbose)
    return Daemon(config).run()


def _run_install_service(args):
    from .daemon._install import NEXT_STEP, install_service, service_warnings

    for installed in install_service(unit_dir=args.unit_dir, dbus_dir=args.dbus_dir):
        print(f"{'wrote' if installed.changed else 'unchanged'} {installed.path}")
    for warning in service_warnings():
        print(f"warning: {warning}")
    print(f"next: {NEXT_STEP}")
    return EXIT_OK


def _run_install_darktable_plugin(args):
    from .plugin_api._darktable import install_darktable_plugin, plugin_warnings

    try:
        installed = install_darktable_plugin(configdir=args.configdir)
    except InvalidParameter as exc:
        print(f"imagecluster: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for each in installed:
        print(f"{'wrote' if each.changed else 'unchanged'} {each.path}")
    for warning in plugin_warnings():
        print(f"warning: {warning}")
    print('next: restart darktable; lighttable, selected image[s] module: "cluster similar"')
    return EXIT_OK


def _print_report(report, *, list_all=False):
    changes = [f"{report.added} new", f"{report.updated} changed", f"{report.unchanged} unchanged"]
    if report.removed:
        changes.append(f"{report.removed} gone")
    # The total is what the parts add up to; files that could not be read are listed below, not counted.
    total = f"{_count(report.fingerprinted, 'photo')} ({', '.join(changes)})"
    if report.pairs:  # a RAW + JPEG shot is one photo, as in the clusters; the parts count files
        total = (f"{_count(report.shots, 'photo')} ({_count(report.pairs, 'RAW + JPEG pair')} counted once), "
                 f"{_count(report.fingerprinted, 'file')} ({', '.join(changes)})")
    print(f"{_shown(report.library)}: {total}, model {report.model}")
    failures = report.failures + report.known_failures  # known: unreadable before, unchanged, not tried again
    if failures:
        print(f"skipped {len(failures)} file(s) that could not be read:")
        listed = failures if list_all else failures[:_MAX_LISTED]
        for failure in listed:
            print(f"  {_shown(failure.path)}: {failure.reason}")
        if len(failures) > len(listed):
            print(f"  ... and {len(failures) - len(listed)} more (-v lists them all)")


def _count(n, noun):
    """``"1 photo"``, ``"2 photos"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shown(path):
    r"""A path on one printable line: a newline in a name cannot split the list, odd bytes show as ``\xff``."""
    text = os.fspath(path)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable()
        else f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff"  # a byte that is not UTF-8
        else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


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
