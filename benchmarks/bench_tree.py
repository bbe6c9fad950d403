#!/usr/bin/env python3
"""Rewriting a large cluster tree after a few new photos: what the daemon's first Cluster after a restart pays.

Issue 9 wants ``Cluster(0.7)`` at 100,000 photos "never beyond 20 s". With the
graph saved, what remained of the first Cluster after a restart (38-41 s) was
the tree: six photos added before the stop changed a few clusters, and the
whole tree (~76,000 symlinks) was written again beside the old one and the
old one removed.

The tree here has the shape of the one the daemon wrote for 100,000
library-like photos: ``--links`` photos in clusters of 1-10 (60 % singles).
Each variant, in a fresh interpreter with its own tree, writes it once, then
``--rounds`` times adds ``--new`` photos (some join clusters, some are new
singles, which renumbers the singles after them) and rewrites the tree.

``ours``
    this checkout: unchanged folders are moved from the old tree into the new.
``before``
    commit ``--before``: every folder written again, the old tree removed.

The variants alternate (``--reps`` each), as this machine's disk speed drifts
by several times within minutes; figures are medians.

Run (~10 minutes)::

    python benchmarks/bench_tree.py
"""

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

# The worker imports nothing from _common: importing it puts this checkout first
# on sys.path, and "before" would then measure ours.


def clusters_like_a_library(links, seed=1):
    rng = random.Random(seed)
    clusters, count = [], 0
    while count < links:
        size = rng.choice([1] * 6 + [2, 3, 4, 5, 6, 8, 10])
        clusters.append([f"/home/user/Pictures/{(count + j) // 500:04d}/IMG_{count + j:07d}.jpg"
                         for j in range(size)])
        count += size
    return clusters


def add_photos(clusters, new, round_, rng):
    """``new`` photos: half join existing clusters, half are singles placed among the others."""
    clusters = [list(c) for c in clusters]
    for k in range(new):
        photo = f"/home/user/Pictures/new/IMG_{round_:02d}_{k:03d}.jpg"
        if k % 2:
            clusters[rng.randrange(len(clusters))].append(photo)
        else:
            clusters.insert(rng.randrange(len(clusters)), [photo])
    return clusters


def worker(args):
    import imagecluster
    from imagecluster import write_tree

    rng = random.Random(2)
    out = Path(args.out)
    clusters = clusters_like_a_library(args.links)
    os.sync()  # the disk's write-back of an earlier run is not this run's cost
    t0 = time.perf_counter()
    write_tree(sorted(clusters, key=len, reverse=True), out, info={"sim": 0.7})
    first = time.perf_counter() - t0
    rewrites = []
    for round_ in range(args.rounds):
        clusters = add_photos(clusters, args.new, round_, rng)
        t0 = time.perf_counter()
        write_tree(sorted(clusters, key=len, reverse=True), out, info={"sim": 0.7})
        rewrites.append(time.perf_counter() - t0)
    shutil.rmtree(out)
    os.sync()
    print(json.dumps({"first_s": first, "rewrites_s": rewrites, "clusters": len(clusters),
                      "package": os.path.dirname(imagecluster.__file__)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=76_000, help="photos in the tree (76,000 at 100,000 photos)")
    parser.add_argument("--new", type=int, default=6, help="photos added before each rewrite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--before", default="83ebeb6", help="commit that wrote every folder again")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from _common import REPO, package_at, run_alternating

    # Beside the checkout, not in /tmp: the tree should live on the disk a library lives on.
    with tempfile.TemporaryDirectory(prefix="ic-bench-tree-", dir=REPO.parent) as tmp:
        tmp = Path(tmp)
        sources = {"before": package_at(args.before, tmp / "before-src"), "ours": REPO}
        results = run_alternating(
            __file__, sources,
            ["--out", tmp / "tree", "--links", args.links, "--new", args.new, "--rounds", args.rounds], args.reps,
            lambda r: f"first {r['first_s']:.1f} s, rewrites {', '.join(f'{s:.1f}' for s in r['rewrites_s'])} s")
    summary = {}
    for variant, runs in results.items():
        summary[variant] = (statistics.median(r["first_s"] for r in runs),
                            statistics.median(s for r in runs for s in r["rewrites_s"]),
                            max(s for r in runs for s in r["rewrites_s"]))
    print(f"tree of {args.links:,} photos in {results['ours'][0]['clusters']:,} clusters; "
          f"{args.new} photos added before each of {args.rounds} rewrites; {args.reps} runs per variant, alternating")
    for variant, (first, rewrite, worst) in summary.items():
        print(f"{variant}: first write {first:.1f} s; rewrite median {rewrite:.2f} s (max {worst:.2f} s)")
    print(f"RATIO before / ours: rewrite {summary['before'][1] / summary['ours'][1]:.1f}x, "
          f"first write {summary['before'][0] / summary['ours'][0]:.2f}x")


if __name__ == "__main__":
    main()
