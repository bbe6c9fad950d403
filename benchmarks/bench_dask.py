#!/usr/bin/env python3
"""Issue 15: fingerprinting on Dask workers against the local pipeline, and the client's ceiling, in one run.

What it measures, on ``--count`` camera JPEGs (12 MP, 2-5 MB, ``make_camera_jpegs.py``,
built into the cache folder if missing), hard-linked (or copied) into a scratch
library whose store is deleted before every pass:

(a) local: ``index_library`` in this process, lite0 loaded and warmed up first.
(b) dask-1: ``index_distributed`` on a ``LocalCluster`` of 1 worker process (1 thread).
(c) dask-2: the same on a ``LocalCluster`` of 2 worker processes (1 thread each).
    Both clusters are started, and every worker's model loaded, before the rounds.

Each round runs one pass of each, back to back, so the machine's slow and fast
spells hit all three alike; rates are medians over ``--repeat`` rounds, ratios
medians of the per-round ratios. Every pass stores the same records (checked:
same paths, cosine >= 0.9999 with the local fingerprints).

The ceiling for N machines is what the client can take in, since it alone
writes the store:

(d) store-write rate: ``Store.put`` of batches of ``--batch-size`` float16
    1280-value fingerprints (one journal append + fsync each), as the client
    does per completed batch.
(e) client loop rate: the whole client path (submit, scheduler, result
    transfer, ``store_batch``) with workers that return ready-made
    fingerprints at once (no decoding, no inference), on the 2-worker
    cluster, batches of 32 (the default) and 128, 96 in flight (what the
    client allows 32 worker threads).

N machines then give about ``min(N x per-machine rate, (e))`` photos/s.

Run (about 4 minutes on 2 cores)::

    python benchmarks/bench_dask.py [--count 64 --repeat 3 --batch-size 8]

The last lines are the figures: photos/s of (a), (b), (c) with the ratios
(b)/(a) and (c)/(a) (target: (b) within a few % of (a); (c) scales with cores,
not on a 2-core machine where (a) already uses both), then (d), (e), and the
number of machines like this one at which the client becomes the limit.
"""

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import CACHE, log, median, quiet_tensorflow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's imagecluster

MODEL = "lite0"
DIM = 1280


def _library(photos, count, dest):
    """A library of ``count`` camera JPEGs: hard links where possible (same bytes, no copy)."""
    names = sorted(photos.glob("*.jpg"))[:count]
    if len(names) < count:
        log(f"building {count} camera JPEGs in {photos} ...")
        subprocess.run([sys.executable, str(HERE / "make_camera_jpegs.py"), str(photos), "--count", str(count)],
                       check=True, stdout=sys.stderr)
        names = sorted(photos.glob("*.jpg"))[:count]
    dest.mkdir(parents=True)
    for path in names:
        try:
            os.link(path, dest / path.name)
        except OSError:
            shutil.copy2(path, dest / path.name)
        (dest / path.name).read_bytes()  # warm page cache for every variant alike
    return dest


def _fresh(lib):
    shutil.rmtree(lib / ".imagecluster", ignore_errors=True)


def _warm(dask_worker):
    """Build the model on a worker now (``client.run``), so the rounds time photos, not TensorFlow's import."""
    from imagecluster._dask_worker import PLUGIN_NAME

    dask_worker.plugins[PLUGIN_NAME].model(MODEL)
    return True


def _instant_batch(paths, *, model, batch_size, root):
    """A worker that returns ready-made fingerprints at once: what is left is the client's and scheduler's cost."""
    from distributed import get_worker

    from imagecluster._capture import EMPTY
    from imagecluster._dask_worker import BatchResult

    rng = np.random.default_rng(len(paths))
    vectors = rng.standard_normal((len(paths), DIM)).astype(np.float16)
    return BatchResult(list(range(len(paths))), vectors, [], worker=get_worker().address,
                       captures=[EMPTY] * len(paths))


def _pass(run):
    t0 = time.perf_counter()
    report = run()
    return time.perf_counter() - t0, report


def _store_write_rate(folder, photos, batch_size):
    from imagecluster import Store

    lib = folder / "store-bench"
    lib.mkdir()
    store = Store(lib)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((batch_size, DIM)).astype(np.float16)
    t0 = time.perf_counter()
    for start in range(0, photos, batch_size):
        store.put(MODEL, [(f"d{start // 1000}/p{start + i}.jpg", 1000 + i, start + i, vectors[i])
                          for i in range(batch_size)])
    return photos / (time.perf_counter() - t0)


def _client_loop_rate(client, folder, photos, batch_size, in_flight):
    """Photos/s of the real client path when workers cost nothing (files are empty: nothing is decoded).

    ``in_flight`` batches at once, as the client allows with that many worker threads: with two
    local workers the default would measure the round-trip latency, not what the client can take.
    """
    from imagecluster import Store, _distributed
    from imagecluster._library import scan_library

    lib = folder / "client-bench"
    for i in range(photos):
        path = lib / f"d{i // 1000}" / f"p{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    class InstantRun(_distributed._Run):
        def _submit(self, rels):
            return self.client.submit(_instant_batch, [str(self.root / r) for r in rels], model=self.model,
                                      batch_size=self.batch_size, root=self.worker_root, pure=False)

    def run():  # index_distributed's steps, with the instant workers
        lib_root = lib.resolve()
        store = Store(lib_root)
        todo, _, report = scan_library(lib_root, store, MODEL)
        each = InstantRun(client, lib_root, store, MODEL, report, batch_size=batch_size, path_map=(),
                          per_thread=max(1, in_flight // 2))
        each.check_workers()
        each.run(todo, None)
        return report

    seconds, report = _pass(run)
    assert report.added == photos, report
    return photos / seconds


def _same(lib, reference):
    from imagecluster import Store

    paths, fps = Store(lib).fingerprints(MODEL)
    assert paths == reference[0], "different photos stored"
    cos = np.sum(fps * reference[1], axis=1) / (np.linalg.norm(fps, axis=1) * np.linalg.norm(reference[1], axis=1))
    assert float(cos.min()) >= 0.9999, float(cos.min())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=CACHE / "camera",
                    help="folder of camera JPEGs (default: %(default)s; built if missing)")
    ap.add_argument("--count", type=int, default=64, help="photos per pass (default: 64)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (default: 3)")
    ap.add_argument("--batch-size", type=int, default=8,
                    help="photos per Dask task and per inference call, all variants (default: 8)")
    ap.add_argument("--ceiling-photos", type=int, default=20000,
                    help="photos for the store-write and client-loop rates (default: 20000)")
    args = ap.parse_args(argv)
    quiet_tensorflow()

    import distributed

    from imagecluster import Store, index_library
    from imagecluster._distributed import index_distributed
    from imagecluster._pipeline import resolve_model

    scratch = Path(tempfile.mkdtemp(prefix="imagecluster-bench-dask-"))
    clusters = []
    try:
        lib = _library(args.photos, args.count, scratch / "photos")
        log("local: loading lite0 in this process ...")
        model = resolve_model(MODEL)
        model.loaded  # noqa: B018 - built before the rounds
        index_library(lib, model=model, batch_size=args.batch_size, compact=False)  # warm-up pass
        reference = Store(lib).fingerprints(MODEL)
        clients = {}
        for n in (1, 2):
            log(f"dask-{n}: starting a LocalCluster of {n} worker process(es), loading lite0 in each ...")
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=":0", silence_logs=logging.ERROR)
            clusters.append(cluster)
            client = distributed.Client(cluster)
            clusters.append(client)
            client.wait_for_workers(n)
            from imagecluster._dask_worker import PLUGIN_NAME, ModelPlugin

            client.register_plugin(ModelPlugin(), name=PLUGIN_NAME)
            client.run(_warm)
            clients[f"dask-{n}"] = client

        runs = {
            "local": lambda: index_library(lib, model=model, batch_size=args.batch_size, compact=False),
            **{name: (lambda c=c: index_distributed(lib, c, batch_size=args.batch_size, compact=False))
               for name, c in clients.items()},
        }
        rates = {name: [] for name in runs}
        for r in range(args.repeat):
            for name, run in runs.items():
                _fresh(lib)
                seconds, report = _pass(run)
                assert report.added == args.count, (name, report)
                _same(lib, reference)
                rates[name].append(args.count / seconds)
            log(f"round {r + 1}/{args.repeat}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in rates.items()))

        log(f"ceiling: store writes and the client loop over {args.ceiling_photos} photos ...")
        store_rate = _store_write_rate(scratch, args.ceiling_photos, args.batch_size)
        (scratch / "b32").mkdir()
        store_rate_32 = _store_write_rate(scratch / "b32", args.ceiling_photos, 32)
        in_flight = 3 * 32  # as many batches in flight as 32 single-thread workers get
        loop_rates = {}
        for size in (32, 128):
            (scratch / f"loop{size}").mkdir()
            loop_rates[size] = _client_loop_rate(clients["dask-2"], scratch / f"loop{size}", args.ceiling_photos,
                                                 size, in_flight)
    finally:
        for each in reversed(clusters):
            each.close()
        shutil.rmtree(scratch, ignore_errors=True)

    med = {name: median(v) for name, v in rates.items()}
    ratio = {name: median([a / b for a, b in zip(rates[name], rates["local"])]) for name in rates}
    per_machine = med["dask-1"]
    print(f"corpus: {args.count} camera JPEGs, batch size {args.batch_size}, {os.cpu_count()} cores, "
          f"{args.repeat} rounds; fingerprints identical to local (cosine >= 0.9999)")
    for name in runs:
        print(f"{name:8s} {med[name]:6.1f} photos/s   ({ratio[name]:.2f} x local)")
    print(f"store-write rate (client, Store.put + fsync per batch): {store_rate:,.0f} photos/s at batch "
          f"{args.batch_size}, {store_rate_32:,.0f} photos/s at batch 32")
    print(f"client loop rate (submit .. scheduler .. store_batch, instant workers, {in_flight} batches in "
          f"flight): {loop_rates[32]:,.0f} photos/s at batch 32, {loop_rates[128]:,.0f} photos/s at batch 128")
    ceiling = loop_rates[32]  # the loop includes the store writes
    print(f"SCALING: N machines like this one ~ N x {per_machine:.0f} photos/s up to the client's ceiling "
          f"{ceiling:,.0f} photos/s, i.e. up to ~{ceiling / per_machine:.0f} machines "
          f"(1,000,000 photos: {1e6 / per_machine / 3600:.1f} h on 1, {1e6 / ceiling / 60:.0f} min at the ceiling; "
          f"--batch-size 128: {loop_rates[128]:,.0f} photos/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
