#!/usr/bin/env python3
"""Clustering at library scale: the similarity graph, then Cluster at several sims, against the original.

Issue 9's targets: building the graph of 100,000 fingerprints <= 60 s and <= 4 GB
peak on 2 cores, exact; 1,000,000 <= 15 min and <= 12 GB; a huge component
never makes a dense matrix past its budget.

Variants, each in a fresh interpreter (so its peak RSS is its own), on the same
library-like synthetic fingerprints (``_synthetic.py``: bursts, same-kind
pairs, a long tail):

``graph``
    ours: the exact graph of every pair >= ``--floor`` (``similarity_edges``,
    with its principal-component screen where it pays), then
    ``cluster_graph`` at each ``--sims`` (what Cluster costs once the graph is
    kept), then the bounded method forced on every component
    (``dense_budget=0``) and its agreement with the dense result. Above
    ``APPROXIMATE_ABOVE`` photos (or with ``--approximate``), as the library
    graph does: fingerprints held as float16 as in the store, the approximate
    search (``approximate_edges``), and its pair recall measured against the
    exact search of ``--recall-sample`` random photos' pairs.
``plain``
    (``--plain``) the exact search without the screen (the search of the
    previous commit), for the screen's speed-up in the same run.
``direct``
    ours without a kept graph: ``cluster(fps, sim)`` (what a sim below the
    floor costs).
``before``
    the clustering this repository had before the graph (commit ``--before``,
    its ``cluster.py`` loaded from git), same call.
``scipy``
    the original approach: ``pdist`` + ``linkage`` + ``fcluster`` on the
    full matrix, only where it fits (``--baseline``, n <= ``--baseline-max``).

Every variant's groups are compared (a digest); the last lines print seconds,
peak RSS and the ratios against ``before`` and ``scipy`` in this run.

Run::

    python benchmarks/cluster_scale.py --n 100000 [--baseline] [--sims 0.7,0.5]
"""

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def digest(groups):
    return hashlib.sha256(json.dumps(sorted(sorted(g) for g in groups)).encode()).hexdigest()[:12]


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _before_module(commit):
    """The cluster module as it was at ``commit`` (before the similarity graph)."""
    import imagecluster._exceptions as exceptions

    source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:imagecluster/cluster.py"],
                            check=True, capture_output=True, text=True).stdout
    source = source.replace("from ._exceptions import", "from imagecluster._exceptions import")
    module = types.ModuleType("cluster_before")
    exec(compile(source, f"{commit}:cluster.py", "exec"), module.__dict__)
    assert exceptions  # the import above must resolve
    return module


def worker(args):
    import numpy as np

    from _synthetic import library_like

    fps = library_like(args.n, args.seed)
    base_mb = peak_mb()
    sims = [float(s) for s in args.sims.split(",")]
    result = {"variant": args.worker, "n": args.n, "data_mb": base_mb, "sims": {}}
    if args.worker in ("graph", "plain"):
        from imagecluster._edges import edges_against, similarity_edges, unit_rows
        from imagecluster._ivf import APPROXIMATE_ABOVE, approximate_edges
        from imagecluster.cluster import cluster_graph
        from imagecluster.graph import UnitRows

        approximate = args.worker == "graph" and (args.approximate or args.n > APPROXIMATE_ABOVE)
        result["approximate"] = approximate
        t0, c0 = time.perf_counter(), time.process_time()
        if approximate:  # as LibraryGraph holds them: float16 in the store, float32 for the search
            stored = fps.astype(np.float16)
            del fps
            unit = UnitRows(stored).to_array()  # the store's float16 stays held, as in the daemon
            edges = approximate_edges(unit, args.floor)
        else:
            unit = unit_rows(fps)
            del fps
            edges = similarity_edges(unit, args.floor, screen=False if args.worker == "plain" else None)
        result["build_s"] = time.perf_counter() - t0
        result["build_cpu_s"] = time.process_time() - c0
        result["edges"] = len(edges)
        order = np.lexsort((edges.j, edges.i))
        result["edges_digest"] = hashlib.sha256(edges.i[order].tobytes() + edges.j[order].tobytes()).hexdigest()
        if approximate:
            rng = np.random.default_rng(1)
            sample = rng.choice(args.n, min(args.n, args.recall_sample), replace=False)
            truth = edges_against(unit, sample, args.floor)
            chosen = np.zeros(args.n, dtype=bool)
            chosen[sample] = True
            kept = edges.take(chosen[edges.i] | chosen[edges.j])
            result["recall"] = {}
            for floor in [args.floor] + [float(x) for x in args.sims.split(",")]:
                real = {(a, b) for a, b in zip(truth.at_least(floor).i.tolist(), truth.at_least(floor).j.tolist())}
                got = {(a, b) for a, b in zip(kept.at_least(floor).i.tolist(), kept.at_least(floor).j.tolist())}
                result["recall"][str(floor)] = (len(real & got), len(real))
                if floor == args.floor:
                    result["no_false_pairs"] = not (got - real)
        if args.worker == "plain":
            result["peak_mb"] = peak_mb()
            print(json.dumps(result))
            return
        for sim in sims:
            t0 = time.perf_counter()
            groups = cluster_graph(unit, edges, sim)
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            bounded = cluster_graph(unit, edges, sim, dense_budget=0)
            result["sims"][str(sim)] = {
                "s": seconds, "groups": len(groups), "digest": digest(groups),
                "photos": sum(map(len, groups)), "largest": max(map(len, groups), default=0),
                "bounded_s": time.perf_counter() - t0, "bounded_agrees": digest(bounded) == digest(groups),
            }
    elif args.worker in ("direct", "before"):
        if args.worker == "direct":
            from imagecluster.cluster import cluster
        else:
            cluster = _before_module(args.before).cluster
        for sim in sims:
            t0 = time.perf_counter()
            groups = cluster(fps, sim)
            result["sims"][str(sim)] = {"s": time.perf_counter() - t0, "groups": len(groups),
                                        "digest": digest(groups)}
    elif args.worker == "scipy":
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import pdist

        t0 = time.perf_counter()
        tree = linkage(pdist(fps.astype(np.float64), "cosine"), "average")
        build = time.perf_counter() - t0
        for sim in sims:
            t0 = time.perf_counter()
            labels = fcluster(tree, 1 - sim + 1e-6, "distance")
            groups = [np.flatnonzero(labels == k).tolist() for k in np.unique(labels)]
            groups = [g for g in groups if len(g) >= 2]
            result["sims"][str(sim)] = {"s": build + time.perf_counter() - t0, "groups": len(groups),
                                        "digest": digest(groups)}
    result["peak_mb"] = peak_mb()
    print(json.dumps(result))


def run(variant, args):
    cmd = [sys.executable, __file__, "--worker", variant, "--n", str(args.n), "--seed", str(args.seed),
           "--sims", args.sims, "--floor", str(args.floor), "--before", args.before,
           "--recall-sample", str(args.recall_sample)] + (["--approximate"] if args.approximate else [])
    log(f"{variant} ...")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "failed": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sims", default="0.7,0.5")
    parser.add_argument("--floor", type=float, default=0.5)
    parser.add_argument("--before", default="163a6ed", help="commit of the clustering before the graph")
    parser.add_argument("--before-max", type=int, default=100_000, help="run 'before' only up to this n")
    parser.add_argument("--direct", action="store_true", help="also run cluster() without a kept graph")
    parser.add_argument("--baseline", action="store_true", help="also run pdist + linkage where it fits")
    parser.add_argument("--baseline-max", type=int, default=20_000)
    parser.add_argument("--plain", action="store_true", help="also time the exact search without its screen")
    parser.add_argument("--approximate", action="store_true", help="use the approximate search at any n")
    parser.add_argument("--recall-sample", type=int, default=500)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from _synthetic import library_like

    log(f"generating {args.n} fingerprints ...")
    library_like(args.n, args.seed)
    results = [run("graph", args)]
    if args.plain:
        results.append(run("plain", args))
    if args.direct:
        results.append(run("direct", args))
    if args.n <= args.before_max:
        results.append(run("before", args))
    if args.baseline and args.n <= args.baseline_max:
        results.append(run("scipy", args))
    by = {r["variant"]: r for r in results}
    graph = by["graph"]
    if "failed" in graph:
        raise SystemExit(f"the graph variant failed ({graph['failed']})")
    print(f"n = {args.n} library-like 1280-d fingerprints (seed {args.seed}), floor {args.floor}")
    how = "approximate" if graph["approximate"] else "exact"
    print(f"graph build ({how}): {graph['build_s']:.1f} s ({graph['build_cpu_s']:.0f} CPU-s), {graph['edges']} edges, "
          f"peak RSS {graph['peak_mb']:.0f} MB (data alone {graph['data_mb']:.0f} MB)")
    for floor, (found, total) in graph.get("recall", {}).items():
        print(f"  pair recall at >= {floor}: {found / max(total, 1):.4f} ({found} of {total} pairs of "
              f"{args.recall_sample} random photos), no false pairs: {graph['no_false_pairs']}")
    if "plain" in by and "failed" not in by["plain"]:
        plain = by["plain"]
        print(f"  exact search without the screen: {plain['build_s']:.1f} s ({plain['build_cpu_s']:.0f} CPU-s), "
              f"{'same pairs' if plain['edges_digest'] == graph['edges_digest'] else 'DIFFERENT pairs'}; "
              f"RATIO plain / screened = {plain['build_s'] / graph['build_s']:.2f}x wall, "
              f"{plain['build_cpu_s'] / graph['build_cpu_s']:.2f}x CPU")
    for sim in args.sims.split(","):
        mine = graph["sims"][str(float(sim))]
        line = (f"sim {sim}: Cluster from the graph {mine['s']:.2f} s, {mine['groups']} groups "
                f"({mine['photos']} photos, largest {mine['largest']}); bounded method {mine['bounded_s']:.2f} s, "
                f"{'same groups' if mine['bounded_agrees'] else 'DIFFERENT groups'}")
        print(line)
        for name in ("direct", "before", "scipy"):
            other = by.get(name)
            if other is None:
                continue
            if "failed" in other:
                print(f"  {name}: failed (exit {other['failed']})")
                continue
            theirs = other["sims"][str(float(sim))]
            same = "same groups" if theirs["digest"] == mine["digest"] else "DIFFERENT groups"
            total = graph["build_s"] + mine["s"]
            print(f"  {name}: {theirs['s']:.1f} s, peak {other['peak_mb']:.0f} MB, {same}; "
                  f"RATIO {name} / (graph build + Cluster) = {theirs['s'] / total:.1f}x, "
                  f"{name} / Cluster from the kept graph = {theirs['s'] / max(mine['s'], 1e-9):.0f}x")


if __name__ == "__main__":
    main()
