#!/usr/bin/env python3
"""The daemon's start-up reconciliation: going through every photo of a library against its store.

Issue 9 wants the daemon's start-up reconciliation (a stat of every photo)
within 60 s at 1,000,000 photos; it took 169 s. This measures that step
(``scan_library``: walk the library, stat each photo, compare with the
store's entries) alone, on ``--count`` empty photo files (100 per folder, as
the daemon benchmarks lay them out) whose entries are all in the store.

``ours``
    this checkout (``os.scandir`` entries and strings).
``before``
    commit ``--before`` (``os.walk``, then a sorted list of ``Path`` objects).

Each variant runs ``--reps`` times in a fresh interpreter, alternating, with
a warm page cache (a restart's case; a cold disk adds its reads to both).

Run (100,000 photos: ~2 minutes)::

    python benchmarks/bench_scan.py --count 100000
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

MODEL = "lite0"

# The worker imports nothing from _common: importing it puts this checkout first
# on sys.path, and "before" would then measure ours.


def make_library(root, count):
    """``count`` empty ``.jpg`` files, 100 per folder, and a store holding each one's (size, mtime)."""
    from imagecluster.store import Store

    store = Store(root)
    vector = np.ones(1280, np.float32) / np.sqrt(1280)
    items = []
    for k in range(count):
        rel = f"{k // 100:05d}/IMG_{k:07d}.jpg"
        if k % 100 == 0:
            os.mkdir(root / rel.split("/")[0])
        path = root / rel
        path.touch()
        st = path.stat()
        items.append((rel, st.st_size, st.st_mtime_ns, vector))
        if len(items) == 10_000:
            store.put(MODEL, items)
            items = []
    if items:
        store.put(MODEL, items)
    store.compact()


def worker(args):
    import imagecluster
    from imagecluster._library import scan_library
    from imagecluster.store import Store

    store = Store(args.library)
    store.entries(MODEL)  # the store is loaded before the daemon reconciles
    t0 = time.perf_counter()
    todo, gone, report = scan_library(Path(args.library).resolve(), store, MODEL)
    seconds = time.perf_counter() - t0
    assert not todo and not gone and report.unchanged == args.count, (len(todo), len(gone), report.unchanged)
    print(json.dumps({"seconds": seconds, "package": os.path.dirname(imagecluster.__file__)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--before", default="83ebeb6", help="commit that walked with os.walk and Paths")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from _common import REPO, log, package_at, run_alternating

    with tempfile.TemporaryDirectory(prefix="ic-bench-scan-", dir=REPO.parent) as tmp:
        tmp = Path(tmp)
        library = tmp / "library"
        library.mkdir()
        log(f"writing {args.count:,} photo files and their store ...")
        make_library(library, args.count)
        sources = {"before": package_at(args.before, tmp / "before-src"), "ours": REPO}
        results = run_alternating(__file__, sources, ["--library", library, "--count", args.count], args.reps,
                                  lambda result: f"{result['seconds']:.2f} s")
    seconds = {variant: [r["seconds"] for r in runs] for variant, runs in results.items()}
    before, ours = (statistics.median(seconds[v]) for v in ("before", "ours"))
    print(f"{args.count:,} photos, all stored and unchanged; median of {args.reps} runs per variant, alternating")
    print(f"before: {before:.2f} s ({1e6 * before / args.count:.1f} us a photo)")
    print(f"ours: {ours:.2f} s ({1e6 * ours / args.count:.1f} us a photo)")
    print(f"RATIO before / ours: {before / ours:.1f}x")


if __name__ == "__main__":
    main()
