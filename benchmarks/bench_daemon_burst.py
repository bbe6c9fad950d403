#!/usr/bin/env python3
"""A burst of new photos into a watched library: how fast the daemon fingerprints them.

Issue 3 asks that a burst of 1,000 new photos be processed "at close to the
core's batch throughput, not one photo at a time". In one run:

* the photos: ``--count`` JPEGs of 480-800 px cut from real photos (the
  corpus of ``bench_rerun.py``, kept in the cache folder);
* the core: ``imagecluster index DIR`` on a fresh copy of them, in a fresh
  interpreter (TensorFlow import and model load included), ``--rounds``
  times; its photos/s is the reference;
* the daemon: the real ``python -m imagecluster daemon`` on a private
  ``dbus-daemon``, watching an empty library, its inference worker warmed by
  one photo. Then every photo is copied into the library, as a camera import
  or a file manager does; the time runs from the first copy until the store on
  disk (read-only :class:`imagecluster.Store`, polled every 0.1 s) holds all
  of them. It includes the settle wait (``settle_seconds``, 1 s as shipped)
  and the copying itself; ``--rounds`` rounds, each into a fresh library;
* the original imagecluster: its per-photo rate measured on ``--orig-sample``
  photos (``bench_rerun.py --worker orig-prepare``: VGG16, one photo per
  ``predict``, full-size decode in a process pool), scaled to the burst.

Run (about 3 minutes on 2 cores)::

    python benchmarks/bench_daemon_burst.py [--count 1000] [--rounds 2]

The last lines: photos/s of the daemon's burst, of the core's ``index`` and
of the original, and the ratios.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CACHE, cli, log, median
from _daemon_run import MODEL, DaemonRun, PrivateBus, sigterm_as_interrupt, wait_stored
from bench_rerun import make_corpus

HERE = Path(__file__).resolve().parent


def corpus(count, seed=7):
    """``count`` photos in the cache (made once); returns their paths, sorted."""
    folder = CACHE / "burst" / f"photos-{count}-{seed}"
    paths = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if len(paths) != count:
        shutil.rmtree(folder, ignore_errors=True)
        log(f"building {count} photos in {folder} ...")
        paths = sorted(make_corpus(folder, count, seed))
    return paths


def core_index(paths, work):
    """Seconds of ``imagecluster index`` on a fresh copy of ``paths``."""
    folder = work / "core"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for p in paths:
        shutil.copyfile(p, folder / p.name)
    subprocess.run(["sync"], check=False)
    cmd, env = cli("index", folder)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"imagecluster index failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    shutil.rmtree(folder)
    return seconds


def daemon_burst(paths, work, bus, settle, round_no):
    """Seconds from the first copy into a watched library until all ``paths`` are stored."""
    from imagecluster import Store

    lib = work / f"library-{round_no}"
    lib.mkdir(parents=True)
    settings = {"settle_seconds": settle, "worker_idle_seconds": 600.0}
    with DaemonRun([lib], settings, work / f"daemon-{round_no}", bus) as daemon:
        daemon.wait_serving()
        store = Store(lib)
        warm = lib / "warm-up.jpg"
        shutil.copyfile(paths[0], warm)
        st = warm.stat()
        wait_stored(store, warm.name, (st.st_size, st.st_mtime_ns), timeout=300, poll=0.05)
        log(f"  round {round_no}: worker warm; copying {len(paths)} photos in ...")
        t0 = time.monotonic()
        for p in paths:
            shutil.copyfile(p, lib / p.name)
        copied = time.monotonic() - t0
        want = len(paths) + 1
        deadline = t0 + 1800
        while len(store.entries(MODEL)) < want:
            daemon.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(store.entries(MODEL))} of {want} stored after 1800 s:\n"
                                 f"{daemon.log_text()}")
            time.sleep(0.1)
        seconds = time.monotonic() - t0
        log(f"  round {round_no}: {seconds:.1f} s (copying took {copied:.1f} s)")
    return seconds, copied


def original_per_photo(paths, work, sample):
    """The original's seconds per photo (VGG16, one photo per call), measured on ``sample`` photos."""
    folder = work / "original"
    folder.mkdir(parents=True)
    for p in paths[: max(sample, 4)]:
        shutil.copyfile(p, folder / p.name)
    cmd = [sys.executable, str(HERE / "bench_rerun.py"), "--worker", "orig-prepare", "--dir", str(folder),
           "--orig-sample", str(sample)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the original's run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    prep = json.loads(proc.stdout.strip().splitlines()[-1])
    return prep["per_photo_s"], prep["import_s"] + prep["load_s"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="photos in the burst (default: 1000)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each measurement (default: 2)")
    ap.add_argument("--settle", type=float, default=1.0, help="the daemon's settle_seconds (default: 1.0, as shipped)")
    ap.add_argument("--orig-sample", type=int, default=24, help="photos the original's rate is measured on")
    args = ap.parse_args(argv)
    sigterm_as_interrupt()

    paths = corpus(args.count)
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    work = Path(tempfile.mkdtemp(prefix="imagecluster-bench-burst-"))
    try:
        core, burst, copies = [], [], []
        with PrivateBus(work / "bus") as bus:
            for r in range(1, args.rounds + 1):
                log(f"core: imagecluster index, round {r} ...")
                core.append(core_index(paths, work))
                log(f"  {core[-1]:.1f} s")
                seconds, copied = daemon_burst(paths, work, bus, args.settle, r)
                burst.append(seconds)
                copies.append(copied)
        log("original: measuring its per-photo rate ...")
        per_photo, startup = original_per_photo(paths, work, args.orig_sample)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.count
    ours, ref = median(burst), median(core)
    orig = startup + n * per_photo
    print()
    print(f"burst: {n} JPEGs of 480-800 px ({size_mb:.0f} MB) copied into a watched library; medians of "
          f"{args.rounds} rounds; settle_seconds {args.settle:g}")
    print(f"daemon burst (worker warm):  {ours:7.1f} s  {n / ours:6.1f} photos/s  (copying alone "
          f"{median(copies):.1f} s; from the first copy to all {n} in the store)")
    print(f"core `imagecluster index`:   {ref:7.1f} s  {n / ref:6.1f} photos/s  (fresh interpreter: "
          f"TensorFlow import and model load included)")
    print(f"original (VGG16, 1 by 1):    {orig:7.0f} s  {n / orig:6.1f} photos/s  (ESTIMATED: {per_photo:.2f} s/photo "
          f"measured on {args.orig_sample} photos, + {startup:.1f} s start-up)")
    print(f"BURST: daemon {n / ours:.1f} photos/s = {ref / ours:.2f}x the core's batch throughput; "
          f"{orig / ours:.0f}x the original")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; daemon, bus and scratch folder cleaned up")
        sys.exit(130)
