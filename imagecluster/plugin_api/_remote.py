r"""``imagecluster remote``: the daemon's D-Bus calls as a command, for plugins that can only run a program.

``cli.py`` only parses the arguments; this module runs the command with an
:class:`~imagecluster.plugin_api.AsyncClient` and turns every outcome into
output and an exit status (:data:`EXIT_CODES`), never a traceback. With
``--json`` the result is one JSON document on stdout, UTF-8 and not
``\u``-escaped; a failure is ``{"error": KIND, "message": TEXT}`` there too.
The message always goes to stderr.
"""

import asyncio
import dataclasses
import json
import os
import sys

from .._exceptions import DaemonTimeout, ImageClusterError, InvalidParameter
from .._exit_codes import EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, exit_code
from .._progress import ProgressBar
from ._client import AsyncClient

__all__ = ["EXIT_CODES", "run_remote"]


def run_remote(args, *, transport=None):
    """Run ``imagecluster remote <command>`` for parsed ``args``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.
    transport : object, default=None
        For tests: the bus the client uses instead of the session bus (see :class:`AsyncClient`).

    Returns
    -------
    int
        The exit status (:data:`EXIT_CODES`).
    """
    args.transport = transport
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
        return AsyncClient(transport=args.transport)
    return AsyncClient(timeout=args.timeout, work_timeout=args.timeout, transport=args.transport)


async def _cluster(args):
    if getattr(args, "by", "content") == "events":
        return await _events(args)
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


async def _events(args):
    if args.out is not None or args.library is not None:
        raise InvalidParameter("--by events groups every library (ClusterEvents): no --library or --out")
    trees = []
    async with _client(args) as client:
        await client.on_clusters_written(lambda tree, n: trees.append(tree))
        sim = args.sim if args.sim is not None else (await client.status()).sim
        events = await client.cluster_events(sim, args.hours, args.km)
    if args.json:
        _print_json({"sim": sim, "hours": args.hours, "km": args.km, "trees": trees,
                     "events": [dataclasses.asdict(event) for event in events]})
        return EXIT_OK
    for event in events:
        where = event.place.replace("_", " ") if event.place else "no GPS"
        print(f"events/{event.name}: {event.date}, {where}, {len(event.photos)} photos, "
              f"{len(event.clusters)} clusters")
        for k, cluster in enumerate(event.clusters):
            print(f"  cluster_{k}: {len(cluster)} photos")
    photos = sum(len(e.photos) for e in events)
    print(f"{len(events)} event{'' if len(events) == 1 else 's'} with {photos} photos at sim {sim:g}")
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
