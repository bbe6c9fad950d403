#!/usr/bin/env python3
"""The fingerprint store at library scale: cold load, adding one photo, reading everything back.

Issue 9's targets with 100,000 fingerprints stored: adding one photo <= 20 ms,
``fingerprints()`` after it <= 100 ms, loading a library's store cold <= 1 s.

A store of ``--count`` random L2-normalised 1280-value fingerprints is written
(``Store.put`` in batches, then ``compact``: what ``imagecluster index`` leaves)
by each version's own code, in its own format; then each variant runs in a
fresh interpreter on a copy of it:

``ours``
    this checkout's ``imagecluster.store`` (snapshot format 2: the matrix is
    mapped, not read).
``ours, daemon``
    the same with ``file_backed=True``, as the daemon opens its stores.
``ours on the old format``
    this checkout reading the store that ``before`` wrote (format 1).
``before``
    the store of commit ``--before`` (``git archive`` of its package).

Measured per variant: the cold load (first ``entries()`` of a new ``Store``),
``put`` of one photo (median of ``--puts``), ``fingerprints()`` right after a put
(median of 5; float32 copy, sorted), and for ours ``view()`` after a put (the
zero-copy matrix the clustering reads), ``remove`` of one loaded photo while
a view is held, as the daemon's graph holds one (median of 5), ``compact()``,
and peak RSS.

Run::

    python benchmarks/bench_store.py --count 100000
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = "lite0"
DIM = 1280


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def make_store(library, count):
    import numpy as np

    from imagecluster.store import Store

    rng = np.random.default_rng(0)
    store = Store(library)
    step = 10_000
    for start in range(0, count, step):
        k = min(step, count - start)
        vectors = rng.standard_normal((k, DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.put(MODEL, [(f"{(start + i) // 1000:04d}/IMG_{start + i:07d}.jpg", 3_000_000 + i, 10**18 + i, v)
                          for i, v in enumerate(vectors)])
    store.compact()


def worker(args):
    import numpy as np

    from imagecluster.store import Store

    library = Path(args.library)
    if args.make:
        return make_store(library, args.count)
    t0 = time.perf_counter()
    store = Store(library, file_backed=True) if args.file_backed else Store(library)
    n = len(store.entries(MODEL))
    cold = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    puts, reads, views = [], [], []
    for k in range(args.puts):
        v = rng.standard_normal(DIM).astype(np.float32)
        t0 = time.perf_counter()
        store.put(MODEL, [(f"new/IMG_{k:05d}.jpg", 1, 2, v / np.linalg.norm(v))])
        puts.append(time.perf_counter() - t0)
        if k < 5:
            t0 = time.perf_counter()
            paths, fps = store.fingerprints(MODEL)
            reads.append(time.perf_counter() - t0)
            assert len(paths) == n + k + 1 and fps.dtype == np.float32
            del fps
            if hasattr(store, "view"):
                t0 = time.perf_counter()
                view = store.view(MODEL)
                views.append(time.perf_counter() - t0)
                assert len(view.paths) == n + k + 1
                del view
    removes = []
    for k in range(5):  # photos from the loaded snapshot, each while a view is held (the daemon's graph holds one)
        view = store.view(MODEL) if hasattr(store, "view") else None
        t0 = time.perf_counter()
        store.remove([f"{k:04d}/IMG_{1000 * k + 7:07d}.jpg"])
        removes.append(time.perf_counter() - t0)
        del view
    t0 = time.perf_counter()
    store.compact()
    compact = time.perf_counter() - t0
    print(json.dumps({
        "n": n, "cold_s": cold, "put_ms": 1000 * statistics.median(puts), "put_max_ms": 1000 * max(puts),
        "first_put_ms": 1000 * puts[0], "fingerprints_ms": 1000 * statistics.median(reads),
        "view_ms": 1000 * statistics.median(views) if views else None, "compact_s": compact,
        "remove_ms": 1000 * statistics.median(removes), "remove_max_ms": 1000 * max(removes),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


def run(variant, source, library, args, *options):
    log(f"{variant} ...")
    proc = subprocess.run([sys.executable, __file__, "--worker", "--library", str(library), "--puts", str(args.puts),
                           "--count", str(args.count), *options],
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(source)})
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed ({proc.returncode})")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--puts", type=int, default=30)
    parser.add_argument("--before", default="163a6ed", help="commit of the store before the scale work")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--make", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file-backed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory(prefix="ic-bench-store-") as tmp:
        tmp = Path(tmp)
        before = tmp / "before-src"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "imagecluster"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        masters = {}
        for name, source in (("before", before), ("ours", REPO)):
            log(f"writing a store of {args.count} fingerprints with {name}'s code ...")
            masters[name] = tmp / f"master-{name}"
            masters[name].mkdir()
            run(f"{name}: writing", source, masters[name], args, "--make")
        size_mb = sum(f.stat().st_size for f in masters["ours"].rglob("*") if f.is_file()) / 1e6
        results = {}
        runs = (("before", before, "before", ()), ("ours", REPO, "ours", ()),
                ("ours, daemon", REPO, "ours", ("--file-backed",)), ("ours on the old format", REPO, "before", ()))
        for variant, source, master, options in runs:
            library = tmp / "library"
            shutil.copytree(masters[master], library)
            results[variant] = run(variant, source, library, args, *options)
            shutil.rmtree(library)
    ours, old = results["ours"], results["before"]
    print(f"store of {args.count} fingerprints (float16, 1280 values), {size_mb:.0f} MB on disk")
    for name, r in results.items():
        view = "" if r["view_ms"] is None else f", view() {r['view_ms']:.1f} ms"
        print(f"{name}: cold load {r['cold_s']:.2f} s; put one: first {r['first_put_ms']:.1f} ms, median "
              f"{r['put_ms']:.1f} ms, max {r['put_max_ms']:.1f} ms; fingerprints() after a put "
              f"{r['fingerprints_ms']:.0f} ms{view}; remove one (a view held): median {r['remove_ms']:.1f} ms, "
              f"max {r['remove_max_ms']:.1f} ms; compact {r['compact_s']:.2f} s; peak {r['peak_mb']:.0f} MB")
    print(f"RATIO before / ours: cold load {old['cold_s'] / ours['cold_s']:.1f}x, first put "
          f"{old['first_put_ms'] / ours['first_put_ms']:.1f}x, "
          f"fingerprints() {old['fingerprints_ms'] / ours['fingerprints_ms']:.1f}x, "
          f"remove one {old['remove_ms'] / ours['remove_ms']:.1f}x, "
          f"fingerprints() / view() {old['fingerprints_ms'] / ours['view_ms']:.0f}x")
    print("targets at 100,000: put one <= 20 ms, fingerprints() after it <= 100 ms, cold load <= 1 s")


if __name__ == "__main__":
    main()
