#!/usr/bin/env python3
"""Latency of the daemon: from a photo's file closed in a watched library to its fingerprint in the store.

What it measures, in one run (issue 3: median and p95; target <= 2 s with the
worker warm, <= 6 s with it cold):

* the real daemon, ``python -m imagecluster daemon --library LIB --config CFG``,
  on a private ``dbus-daemon --session`` (model lite0, ``settle_seconds`` as
  configured, 1.0 s by default as shipped), watching a library of
  ``--library-size`` camera JPEGs (12 MP, 4000x3000, 2-5 MB, from
  ``make_camera_jpegs.py``; built into the cache folder if missing) that it
  fingerprints when it starts;
* one sample: a camera JPEG (bytes already in memory) is written under a new
  name in the library and closed; ``time.monotonic()`` right after ``close``
  is the start; the end is the first poll of the store on disk
  (``imagecluster.Store`` read-only, every ``--poll`` s) that holds the
  photo at its (size, mtime_ns). Polling the store reads two ``stat``s when
  nothing changed, and the new journal bytes under a shared lock once the
  daemon wrote them, so it does not hold the daemon up; the D-Bus ``Fingerprint``
  call is not used (it would compute the photo ahead of the queue). As a check
  independent of the polling, the file-system clock gives the same interval
  as (journal.pk mtime - photo mtime);
* warm: ``worker_idle_seconds`` long (600 s), the worker loaded by the
  library's photos and one more warm-up photo; samples ``--gap`` s apart;
* cold: a second daemon on the same (now fingerprinted) library with
  ``worker_idle_seconds`` = ``--cold-idle``; before every sample the benchmark
  waits until the worker process has exited (no live child of the daemon
  running ``spawn_main``, found by a /proc scan; a zombie counts as exited),
  so each sample pays the worker's start, the TensorFlow import and the model
  load (from the model cache, files in the page cache);
* the original imagecluster, which has no daemon: its user gets one new photo
  fingerprinted by running its pipeline again. Its fingerprint cache
  (``<dir>/imagecluster/fingerprints.pk``) does not notice new photos, so the
  pickles are deleted and ``get_image_data`` runs from scratch in a fresh
  interpreter: import Keras, build VGG16 (``weights=None``: same cost as
  ImageNet weights), decode every photo full size in a process pool,
  ``predict`` photo by photo, write ``images.pk`` and ``fingerprints.pk``.
  Measured from the new photo's close to the end of that process, on a copy of
  the same library plus one new photo; ``--orig-rounds`` rounds spread before,
  between and after the daemon runs (the machine is noisy).

Run (about 4-5 minutes on 2 cores)::

    python benchmarks/bench_daemon_latency.py [--samples 15] [--library-size 20]

The last lines: the set-up, ``latency warm`` and ``latency cold`` (median, p95,
n, target, how much of it is the settle wait), the original's median, and the
ratios original / ours.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CACHE, HERE, Original, log, median
from _daemon_run import MODEL, DaemonRun, PrivateBus, p95, sigterm_as_interrupt, wait_stored

TIMEOUT = 180.0  # seconds one photo may take before the run is called broken


# --- the original: a fresh run of its pipeline over the folder (worker process)

def orig_once(folder):
    """The original's ``io.get_image_data(folder)`` without cache: fingerprints of every photo, pickled."""
    import pickle
    import re

    t0 = time.perf_counter()
    orig = Original(decode="pool")  # imports keras
    orig.load_model()
    t1 = time.perf_counter()
    rex = re.compile(r"^.*\.(jpg|jpeg|bmp|png)$", re.I)  # io.get_files
    files = [os.path.join(folder, b) for b in os.listdir(folder) if rex.match(b)]
    arrays = orig.read_image_arrays(files)
    t2 = time.perf_counter()
    fps = orig.fingerprints(arrays)
    t3 = time.perf_counter()
    base = os.path.join(folder, "imagecluster")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "images.pk"), "wb") as fd:
        pickle.dump(arrays, fd)
    with open(os.path.join(base, "fingerprints.pk"), "wb") as fd:
        pickle.dump(fps, fd)
    return {"n": len(fps), "import_s": orig.import_seconds, "build_s": orig.load_seconds,
            "decode_s": t2 - t1, "predict_s": t3 - t2, "in_process_s": time.perf_counter() - t0}


def orig_round(folder, data, name):
    """One new photo arrives in the original's folder; returns (seconds until its fingerprints.pk is written, info)."""
    shutil.rmtree(folder / "imagecluster", ignore_errors=True)  # its cache would hide the new photo
    for old in folder.glob("new_*"):
        old.unlink()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "orig-once", "--dir", str(folder)]
    with open(folder / name, "wb") as f:
        f.write(data)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the original's run failed ({proc.returncode})")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


# --- ours

def one_sample(lib, store, data, name, poll):
    """Write one photo, close it, wait until the store holds it; returns (polled s, file-system-clock s)."""
    path = lib / name
    with open(path, "wb") as f:
        f.write(data)
    t_close = time.monotonic()
    st = os.stat(path)
    t_stored = wait_stored(store, name, (st.st_size, st.st_mtime_ns), TIMEOUT, poll)
    journal = os.stat(lib / ".imagecluster" / "journal.pk")
    return t_stored - t_close, (journal.st_mtime_ns - st.st_mtime_ns) / 1e9


def run_mode(mode, lib, work, bus, sources, args, first):
    """Start a daemon, take ``args.samples`` samples in ``mode`` ("warm" or "cold"); returns a dict."""
    from imagecluster import Store

    idle = 600.0 if mode == "warm" else args.cold_idle
    settings = {"model": MODEL, "settle_seconds": args.settle, "worker_idle_seconds": idle}
    n_lib = len([p for p in lib.iterdir() if p.suffix == ".jpg"])
    out = {"polled": [], "fs": [], "not_as_wanted": 0}
    with DaemonRun([lib], settings, work, bus, name=f"daemon-{mode}") as daemon:
        startup = daemon.wait_serving()
        log(f"{mode}: daemon {daemon.pid} serving after {startup:.1f} s (settle {args.settle:g} s, "
            f"worker idle timeout {idle:g} s)")
        store = Store(lib)
        t0 = time.monotonic()
        while len(store.entries(MODEL)) < n_lib:  # the first daemon fingerprints the library
            daemon.check_alive()
            if time.monotonic() - t0 > TIMEOUT * 2:
                raise SystemExit(f"the library was not fingerprinted:\n{daemon.log_text()}")
            time.sleep(0.1)
        log(f"  library of {n_lib} photos in the store after {time.monotonic() - t0:.1f} s")
        k = first
        if mode == "warm":
            s, _ = one_sample(lib, store, sources[k % len(sources)][1], f"warmup_{k:03d}.jpg", args.poll)
            log(f"  warm-up photo: {s:.2f} s")
            k += 1
        for i in range(args.samples):
            if mode == "cold":
                daemon.wait_worker(alive=False, timeout=args.cold_idle + 60)
                time.sleep(args.gap)
                cold = not daemon.worker_pids()
            else:
                time.sleep(args.gap)
                cold = not daemon.worker_pids()
            if cold != (mode == "cold"):
                out["not_as_wanted"] += 1
            src_name, data = sources[k % len(sources)]
            s, fs = one_sample(lib, store, data, f"{mode}_{i:03d}_{src_name}", args.poll)
            k += 1
            out["polled"].append(s)
            out["fs"].append(fs)
            log(f"  {mode} {i + 1}/{args.samples}: {s:.3f} s (file-system clock {fs:.3f} s)"
                f"{'' if cold == (mode == 'cold') else '  [worker state not as wanted]'}")
        daemon.check_alive()
    out["next"] = k
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=CACHE / "camera",
                    help="folder of camera JPEGs (default: %(default)s; built if missing)")
    ap.add_argument("--library-size", type=int, default=20,
                    help="photos in the library before the samples, for ours and the original (default: 20)")
    ap.add_argument("--samples", type=int, default=15, help="samples per mode, warm and cold (default: 15)")
    ap.add_argument("--settle", type=float, default=None,
                    help="the daemon's settle_seconds (default: the package's default, 1.0)")
    ap.add_argument("--cold-idle", type=float, default=2.0,
                    help="the daemon's worker_idle_seconds in the cold mode (default: 2)")
    ap.add_argument("--gap", type=float, default=1.0,
                    help="seconds idle before each sample (cold: after the worker exited) (default: 1)")
    ap.add_argument("--poll", type=float, default=0.02, help="store poll interval, seconds (default: 0.02)")
    ap.add_argument("--orig-rounds", type=int, default=3,
                    help="runs of the original (spread before, between and after the daemon runs) (default: 3)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder in /tmp (logs, library)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "orig-once":
        print(json.dumps(orig_once(args.dir)))
        return 0

    if args.settle is None:
        from imagecluster.daemon import Config

        args.settle = Config(libraries=("/",)).settle_seconds
    sigterm_as_interrupt()
    need = max(64, args.library_size + 8)
    if len(list(args.photos.glob("*.jpg"))) < need:
        log(f"building {need} camera JPEGs in {args.photos} ...")
        subprocess.run([sys.executable, str(HERE / "make_camera_jpegs.py"), str(args.photos), "--count", str(need)],
                       check=True, stdout=sys.stderr)
    photos = sorted(args.photos.glob("*.jpg"))
    library_photos, new_photos = photos[: args.library_size], photos[args.library_size:]
    sources = [(p.name, p.read_bytes()) for p in new_photos]
    sizes = [p.stat().st_size / 1e6 for p in photos]

    work = Path(tempfile.mkdtemp(prefix="imagecluster-bench-latency-", dir="/tmp"))
    log(f"scratch folder {work}")
    orig_times, orig_info = [], []
    slots = [args.orig_rounds // 3 + (1 if i < args.orig_rounds % 3 else 0) for i in range(3)]
    try:
        lib, orig_dir = work / "library", work / "original"
        for folder in (lib, orig_dir):
            folder.mkdir()
            for p in library_photos:
                shutil.copyfile(p, folder / p.name)

        def original(n):
            for _ in range(n):
                name, data = sources[len(orig_times) % len(sources)]
                s, info = orig_round(orig_dir, data, f"new_{len(orig_times):02d}_{name}")
                orig_times.append(s)
                orig_info.append(info)
                log(f"original round {len(orig_times)}: {s:.1f} s ({info['n']} photos: import "
                    f"{info['import_s']:.1f} s, VGG16 build {info['build_s']:.1f} s, decode {info['decode_s']:.1f} s, "
                    f"predict {info['predict_s']:.1f} s)")

        original(slots[0])
        with PrivateBus(work / "bus") as bus:
            warm = run_mode("warm", lib, work, bus, sources, args, 0)
            original(slots[1])
            cold = run_mode("cold", lib, work, bus, sources, args, warm["next"])
        original(slots[2])
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def line(mode, r, target):
        m = median(r["polled"])
        extra = f"; {r['not_as_wanted']} sample(s) NOT {mode}" if r["not_as_wanted"] else ""
        return (f"latency {mode}: median {m:.2f} s, p95 {p95(r['polled']):.2f} s (n={len(r['polled'])}, "
                f"target <= {target:g} s); settle wait {args.settle:g} s of it ({100 * args.settle / m:.0f}%), "
                f"the rest {m - args.settle:.2f} s; file-system clock check: median {median(r['fs']):.2f} s{extra}")

    om = median(orig_times)
    oi = {k: median([i[k] for i in orig_info]) for k in ("import_s", "build_s", "decode_s", "predict_s")}
    print()
    print(f"photos: 12 MP camera JPEGs (4000x3000, median {median(sizes):.1f} MB), each written whole and closed "
          f"in a library of {args.library_size}+; daemon: model {MODEL}, settle_seconds {args.settle:g}, "
          f"cold worker_idle_seconds {args.cold_idle:g}, nice 0; {os.cpu_count()} cores")
    print(f"detection: store polled read-only every {args.poll * 1000:.0f} ms (adds up to {args.poll * 1000:.0f} ms "
          f"+ one store read to each sample)")
    print(f"original: delete its pickles and re-run get_image_data in a fresh interpreter over "
          f"{args.library_size}+1 photos: median {om:.1f} s (n={len(orig_times)}; import Keras {oi['import_s']:.1f} s, "
          f"VGG16 build {oi['build_s']:.1f} s, decode {oi['decode_s']:.1f} s, predict {oi['predict_s']:.1f} s)")
    print(line("warm", warm, 2))
    print(line("cold", cold, 6))
    print(f"RATIO original / ours (medians): warm {om / median(warm['polled']):.1f}x, "
          f"cold {om / median(cold['polled']):.1f}x")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; daemon, bus and scratch folder cleaned up")
        sys.exit(130)
