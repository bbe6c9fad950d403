"""``imagecluster remote``: the command line's calls to the running daemon over D-Bus.

Only wiring: the calls themselves are :mod:`imagecluster.plugin_api`'s
(``run_remote``), imported when a ``remote`` command runs, so the rest of the
command line never imports dbus-fast. The numbers given are checked by
:mod:`imagecluster._validation`'s rules, worded for each option.
"""

import argparse
import textwrap

from ._cli_events import add_remote_event_options
from ._cli_parser import checked_arg, number_arg
from ._exit_codes import exit_codes_text
from ._validation import MAX_WAIT_SECONDS, check_timeout, check_wait

__all__ = ["add_remote_commands"]

# The remote command's table, written once (_exit_codes), wrapped for --help.
_REMOTE_EXIT_CODES = textwrap.fill(exit_codes_text(), 88)


def add_remote_commands(commands, sim_type, usage_exit):
    """Add ``remote`` and its calls to the command line's subparsers.

    Only argument parsing here: :mod:`imagecluster.plugin_api` (dbus-fast) is
    imported when a ``remote`` command runs.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The ``imagecluster`` parser's subcommands.
    sim_type : callable
        The command line's ``--sim`` type (text -> checked float).
    usage_exit : int
        Exit status of ``imagecluster remote`` without a command (its help is printed).
    """
    remote = commands.add_parser(
        "remote",
        help="ask the running daemon over D-Bus: clusters, fingerprints, status",
        description="Call the imagecluster daemon (org.imagecluster.ImageCluster1 on the session bus),\n"
        "starting it through D-Bus activation when it is installed. For photo-manager plugins\n"
        "that can only run a program: --json prints one UTF-8 JSON document on stdout.",
        epilog=_REMOTE_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    remote.set_defaults(run=lambda args: remote.print_help() or usage_exit)
    calls = remote.add_subparsers(title="commands", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON (UTF-8) on stdout")
    common.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS",
        help="seconds to wait for the daemon's answer (default 25; 600 for cluster, fingerprint, similar)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more (twice: debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress (remote wait)")
    kinds = {
        "cluster": "cluster every library (or --library), write the trees, print the clusters",
        "fingerprint": "print the fingerprint of one photo inside a library",
        "similar": "print the stored photos similar to one photo, most similar first",
        "status": "print the daemon's libraries, model, indexed and pending photos, state",
        "wait": "wait until nothing is pending (at most SECONDS, default 60)",
    }
    for name, text in kinds.items():
        call = calls.add_parser(name, parents=[common], help=text, description=text.capitalize() + ".",
                                epilog=_REMOTE_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        call.set_defaults(run=_run_remote, remote=name)
        if name in ("fingerprint", "similar"):
            call.add_argument("path", metavar="PATH", help="the photo (inside a watched library)")
        if name in ("cluster", "similar"):
            call.add_argument("--sim", type=sim_type,
                              help="similarity index in 0..1 (default: the daemon's, see status)")
        if name == "cluster":
            call.add_argument("--library", metavar="DIR", help="cluster only this library (one of status' libraries)")
            call.add_argument("--out", metavar="DIR", help="with --library: write the tree here instead")
            add_remote_event_options(call)
        if name == "wait":
            call.add_argument("seconds", metavar="SECONDS", type=_wait_seconds, nargs="?", default=60.0,
                              help=f"wait at most this long, 0..{MAX_WAIT_SECONDS:g} (default 60)")


def _seconds(text):
    value = number_arg(text, f"{text!r} is not a number of seconds")
    return checked_arg(check_timeout, value, f"{text} must be more than 0 seconds")


def _wait_seconds(text):
    value = number_arg(text, f"{text!r} is not a number of seconds")
    return checked_arg(check_wait, value, f"{text} is outside 0..{MAX_WAIT_SECONDS:g} seconds")


def _run_remote(args):
    from .plugin_api._remote import run_remote

    return run_remote(args)
