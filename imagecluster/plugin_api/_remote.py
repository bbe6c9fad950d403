"""``imagecluster remote``: the daemon's D-Bus calls as a command, for plugins that can only run a program.

``cli.py`` only parses the arguments; this module runs the command with an
:class:`~imagecluster.plugin_api.AsyncClient` and turns every outcome into
output and an exit status (:data:`EXIT_CODES`), never a traceback. With
``--json`` the result is one JSON document on stdout, UTF-8 and not
``\\u``-escaped; a failure is ``{"error": KIND, "message": TEXT}`` there too.
The message always goes to stderr.
"""

import asyncio
import json
import os
import sys

from .._exceptions import (
    DaemonDisconnected,
    DaemonNotAvailable,
    DaemonTimeout,
    ImageClusterError,
    InvalidParameter,
    LibraryNotFound,
    NotAnImage,
    NotInLibrary,
    NotOurTree,
    PhotoNotFound,
)
from .._progress import ProgressBar
from ._client import AsyncClient

__all__ = ["EXIT_CODES", "run_remote"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_AVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_NOT_IN_LIBRARY = 5
EXIT_NOT_FOUND = 6
EXIT_NOT_AN_IMAGE = 7
EXIT_NOT_OUR_TREE = 8
EXIT_DISCONNECTED = 9

#: (exception, exit status, what it means), most specific first; the guide's table.
EXIT_CODES = (
    (InvalidParameter, EXIT_USAGE, "usage: a bad option or value (e.g. --sim not a number or outside 0..1)"),
    (DaemonNotAvailable, EXIT_NOT_AVAILABLE,
     "no session bus, or the daemon is not running and not installed, or its systemd unit failed"),
    (DaemonTimeout, EXIT_TIMEOUT, "no answer within --timeout (remote wait: still busy)"),
    (NotInLibrary, EXIT_NOT_IN_LIBRARY, "the path (or --library) is outside every watched library"),
    (PhotoNotFound, EXIT_NOT_FOUND, "no such photo"),
    (LibraryNotFound, EXIT_NOT_FOUND, "the library is not mounted now"),
    (NotAnImage, EXIT_NOT_AN_IMAGE, "the file cannot be decoded as a photo"),
    (NotOurTree, EXIT_NOT_OUR_TREE, "the tree folder exists and was not written by imagecluster"),
    (DaemonDisconnected, EXIT_DISCONNECTED, "the daemon went away during the call (exited or crashed)"),
    (ImageClusterError, EXIT_FAILED, "any other failure (the daemon answered Failed; see its log)"),
)


def exit_code(exc):
    """The exit status for an exception raised by the client."""
    for kind, code, _ in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILED


def run_remote(args):
    """Run ``imagecluster remote <command>`` for parsed ``args``; returns the exit status."""
    try:
        return asyncio.run(_COMMANDS[args.remote](args))
    except DaemonTimeout as exc:  # the client's message cannot know the command's option
        return _fail(args, type(exc).__name__, f"{exc}: allow more time with --timeout SECONDS", exit_code(exc))
    except ImageClusterError as exc:
        return _fail(args, type(exc).__name__, str(exc), exit_code(exc))
    except Exception as exc:  # a bug here must still not show a traceback to a plugin
        return _fail(args, "Failed", f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED)


def _fail(args, kind, message, code):
    print(f"imagecluster: error: {message}", file=sys.stderr)
    if args.json:
        _print_json({"error": kind, "message": message, "exit_code": code})
    return code


def _client(args):
    if args.timeout is None:
        return AsyncClient()
    return AsyncClient(timeout=args.timeout, work_timeout=args.timeout)


async def _cluster(args):
    if args.out is not None and args.library is None:
        raise InvalidParameter("--out needs --library: a tree is written for one library")
    trees = []
    async with _client(args) as client:
        await client.on_clusters_written(lambda tree, n: trees.append(tree))
        sim = args.sim if args.sim is not None else (await client.status()).sim
        if args.out is not None:
            tree, count = await client.write_tree(args.library, sim, args.out)
        elif args.library is not None:
            clusters = await client.cluster_library(args.library, sim)
        else:
            clusters = await client.cluster(sim)
    if args.out is not None:  # WriteTree answers with the tree, not the clusters
        if args.json:
            _print_json({"sim": sim, "tree": tree, "n_clusters": count})
        else:
            print(f"{count} clusters at sim {sim:g} written to {tree}")
        return EXIT_OK
    if args.json:
        _print_json({"sim": sim, "clusters": clusters, "trees": trees})
        return EXIT_OK
    seen = {}  # named as in the tree: cluster_with_<size>/cluster_<k>, k from 0 within a size
    for cluster in clusters:
        k = seen[len(cluster)] = seen.get(len(cluster), -1) + 1
        print(f"cluster_with_{len(cluster)}/cluster_{k}: {len(cluster)} photos")
        for path in cluster:
            print(f"  {path}")
    photos = sum(len(c) for c in clusters)
    hint = "" if clusters else "; try a lower --sim"
    counted = f"{len(clusters)} cluster{'' if len(clusters) == 1 else 's'} with {photos} photos"
    print(f"{counted} at sim {sim:g}{hint}")
    for tree in trees:
        print(f"tree written: {tree}")
    return EXIT_OK


async def _fingerprint(args):
    async with _client(args) as client:
        vector = await client.fingerprint(args.path)
    if args.json:
        _print_json({"path": os.path.abspath(args.path), "fingerprint": [float(v) for v in vector]})
    else:
        sys.stdout.write("".join(f"{v:.9g}\n" for v in vector))
    return EXIT_OK


async def _similar(args):
    async with _client(args) as client:
        sim = args.sim if args.sim is not None else (await client.status()).sim
        matches = await client.similar(args.path, sim)
    if args.json:
        found = [{"path": path, "similarity": similarity} for path, similarity in matches]
        _print_json({"path": os.path.abspath(args.path), "sim": sim, "matches": found})
    else:
        for path, similarity in matches:
            print(f"{similarity:.3f}  {path}")
    return EXIT_OK


async def _status(args):
    async with _client(args) as client:
        status = await client.status()
    fields = {
        "libraries": list(status.libraries), "model": status.model, "indexed": status.indexed,
        "pending": status.pending, "state": status.state, "sim": status.sim, "version": status.version,
    }
    if args.json:
        _print_json(fields)
        return EXIT_OK
    for name, value in fields.items():
        if name == "libraries":
            value = "\n           ".join(value) if value else "(none)"
        print(f"{name + ':':<10} {value}")
    return EXIT_OK


async def _wait(args):
    with ProgressBar("the daemon is fingerprinting", enabled=not args.quiet) as bar:
        async with _client(args) as client:
            start = await client.status()

            def progress(indexed, pending):  # done since the wait began, of done + still pending
                done = max(0, indexed - start.indexed)
                bar.update(done, done + pending)

            await client.on_progress(progress)
            progress(start.indexed, start.pending)
            idle = await client.wait_idle(args.seconds)
            pending = (await client.status()).pending
    if args.json:
        _print_json({"idle": idle, "pending": pending})
    else:
        print("idle" if idle else f"still busy after {args.seconds:g} s ({pending} pending)")
    return EXIT_OK if idle else EXIT_TIMEOUT


def _print_json(document):
    data = json.dumps(document, ensure_ascii=False, indent=None) + "\n"
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a replaced sys.stdout (tests): text is fine
        sys.stdout.write(data)
    else:
        sys.stdout.flush()
        stream.write(data.encode("utf-8"))
        stream.flush()


_COMMANDS = {"cluster": _cluster, "fingerprint": _fingerprint, "similar": _similar, "status": _status, "wait": _wait}
