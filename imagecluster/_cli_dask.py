"""The command line's Dask options (``--scheduler``, ``--path-map``) for ``index`` and ``cluster``.

Only argument parsing and checking here: ``distributed`` is imported when a
run uses a scheduler, never for a local run or ``--help``.
"""

import argparse
import contextlib
import logging

from ._distributed import check_path_map, check_scheduler
from ._exceptions import InvalidParameter

__all__ = ["add_dask_options", "dask_options"]

_SCHEDULER_HELP = (
    "fingerprint on a Dask cluster: the scheduler's address (tcp://HOST:8786), or local:N to start N worker "
    "processes on this machine. Workers read the photos from the same share; this process alone writes the "
    "store, so an interrupted run resumes. Needs: pip install 'imagecluster[dask]'"
)
_PATH_MAP_HELP = (
    "with --scheduler: a folder that the workers mount elsewhere, e.g. /photos=/mnt/nas/photos "
    "(repeat for more)"
)


def add_dask_options(parser):
    """Add ``--scheduler`` and ``--path-map`` to an argument parser."""
    parser.add_argument("--scheduler", metavar="ADDRESS", type=_scheduler, help=_SCHEDULER_HELP)
    parser.add_argument("--path-map", metavar="OLD=NEW", action="append", type=_path_map, default=[],
                        help=_PATH_MAP_HELP)


def dask_options(args, parser=None):
    """``{"scheduler": ..., "path_map": ...}`` for the core, from parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
    parser : argparse.ArgumentParser, default=None
        Reports ``--path-map`` without ``--scheduler`` (exit 2); None raises
        InvalidParameter instead.

    Returns
    -------
    dict
        Empty for a local run.
    """
    if args.scheduler is None:
        if args.path_map:
            message = "--path-map is for the workers of --scheduler; give --scheduler too"
            if parser is not None:
                parser.error(message)
            raise InvalidParameter(message)
        return {}
    if args.verbose < 2:
        # Dask's own INFO/WARNING lines (a nanny killing a slow-to-close worker at the end) are not
        # the user's business; -vv shows them. Set after distributed's import, which sets its levels.
        with contextlib.suppress(ImportError):
            import distributed  # noqa: F401
        logging.getLogger("distributed").setLevel(logging.ERROR)
    return {"scheduler": args.scheduler, "path_map": tuple(args.path_map)}


def _scheduler(text):
    try:
        return check_scheduler(text)
    except InvalidParameter as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _path_map(text):
    try:
        return check_path_map([text])[0]
    except InvalidParameter as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
