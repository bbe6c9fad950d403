#!/usr/bin/env python3
"""A new photo in a large library: how long the similarity graph takes to take it in.

Issue 9 wants a new photo "stored and in the graph <= 2 s after its file
closed" at 100,000 photos. The daemon's part after the store is
``LibraryGraph.update()``: one product of the new fingerprint with the whole
float16 matrix (converted to unit float32 rows tile by tile), then the graph's
bookkeeping. This measures that step alone, without D-Bus or decoding.

One store of ``--count`` library-like fingerprints (``_synthetic.py``) and its
saved graph are written once; then each variant runs in a fresh interpreter on
its own copy:

``ours``
    this checkout (the graph keeps each row's length between catch-ups).
``before``
    commit ``--before`` (``git archive`` of its package): every catch-up
    measured every row again.

Measured per variant: loading the store and the saved graph (the first
``update()``: its check of the file against the fingerprints included), then
``--puts`` times: ``Store.put`` of one photo, ``update()`` (median and max),
and ``similar()`` of that photo from its edges.

Run (100,000 photos: ~3 minutes on 2 cores, most of it the one graph build)::

    python benchmarks/bench_graph_update.py --count 100000
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

MODEL = "lite0"

# The worker imports nothing from _common: importing it puts this checkout first on
# sys.path, and "before" would then measure ours.


def make_library(library, count):
    """A store of ``count`` fingerprints, compacted, and its saved graph."""
    from imagecluster.graph import LibraryGraph
    from imagecluster.store import Store

    from _synthetic import library_like

    vectors = library_like(count)
    store = Store(library)
    step = 10_000
    for start in range(0, count, step):
        store.put(MODEL, [(f"{(start + i) // 1000:04d}/IMG_{start + i:07d}.jpg", 3_000_000 + i, 10**18 + i, v)
                          for i, v in enumerate(vectors[start : start + step])])
    store.compact()
    t0 = time.perf_counter()
    LibraryGraph(store, MODEL).update()
    return time.perf_counter() - t0


def worker(args):
    import numpy as np

    import imagecluster
    from imagecluster.graph import LibraryGraph
    from imagecluster.store import Store

    library = Path(args.library)
    t0 = time.perf_counter()
    store = Store(library)
    graph = LibraryGraph(store, MODEL)
    graph.update()
    load = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    stored = store.view(MODEL).matrix
    puts, updates, similars = [], [], []
    for k in range(args.puts):
        # A near-duplicate of a stored photo, so it has edges to find.
        noise = 0.02 * rng.standard_normal(stored.shape[1]).astype(np.float32)
        v = stored[1000 * k % len(stored)].astype(np.float32) + noise
        path = f"new/IMG_{k:05d}.jpg"
        t0 = time.perf_counter()
        store.put(MODEL, [(path, 1, 2, v / np.linalg.norm(v))])
        t1 = time.perf_counter()
        assert graph.update(save=False)  # as the daemon: saved at stop, not per photo
        t2 = time.perf_counter()
        graph.similar(v, 0.7, path=path)
        similars.append(time.perf_counter() - t2)
        puts.append(t1 - t0)
        updates.append(t2 - t1)
    print(json.dumps({
        "n": len(graph.paths), "load_s": load, "put_ms": 1000 * statistics.median(puts),
        "update_ms": 1000 * statistics.median(updates), "update_max_ms": 1000 * max(updates),
        "similar_ms": 1000 * statistics.median(similars), "package": os.path.dirname(imagecluster.__file__),
    }))


def run(variant, source, library, args):
    from _common import log, run_worker

    log(f"{variant} ...")
    result = run_worker(__file__, ["--worker", "--library", library, "--puts", args.puts],
                        env={**os.environ, "PYTHONPATH": str(source)})
    log(f"{variant}: imagecluster from {result['package']}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--puts", type=int, default=15)
    parser.add_argument("--before", default="5cab8bb", help="commit whose graph measured every row at each catch-up")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from _common import REPO, log, package_at
    with tempfile.TemporaryDirectory(prefix="ic-bench-graph-") as tmp:
        tmp = Path(tmp)
        log(f"writing a store of {args.count} fingerprints and its graph ...")
        master = tmp / "master"
        master.mkdir()
        build = make_library(master, args.count)
        before = package_at(args.before, tmp / "before-src")
        results = {}
        for variant, source in (("before", before), ("ours", REPO)):
            library = tmp / variant
            shutil.copytree(master, library)
            results[variant] = run(variant, source, library, args)
            shutil.rmtree(library)
    ours, old = results["ours"], results["before"]
    print(f"library of {args.count} fingerprints; graph built once in {build:.0f} s; {args.puts} new photos each")
    for name, r in (("before", old), ("ours", ours)):
        print(f"{name}: load store + graph {r['load_s']:.2f} s; put one {r['put_ms']:.1f} ms; graph update "
              f"median {r['update_ms']:.0f} ms (max {r['update_max_ms']:.0f} ms); similar {r['similar_ms']:.1f} ms")
    print(f"RATIO before / ours: graph update {old['update_ms'] / ours['update_ms']:.2f}x, "
          f"load {old['load_s'] / ours['load_s']:.2f}x")


if __name__ == "__main__":
    main()
