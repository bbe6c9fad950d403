#!/usr/bin/env python3
"""Resident memory of the idle daemon with 10,000 fingerprints in the store, against the original.

What it measures, in one run (issue 3: target <= 150 MB once the worker has exited):

* library: ``--count`` small JPEGs (``--size``, 128x96 by default, so the
  library is quick to make) cut from the real photos of Debian's darknet and
  scikit-image's wheel, 100 per folder, made afresh in /tmp every run;
* store: every photo already fingerprinted, so the daemon's start-up
  reconciliation finds nothing to do (checked in its log). ``--fingerprints
  random`` (default): random L2-normalised vectors of lite0's 1280 values,
  written with ``Store.put`` under each file's ``os.stat`` (size,
  mtime_ns) -- the key the daemon compares -- then ``Store.compact``, as
  ``imagecluster index`` leaves a store. The values do not change what the
  daemon holds, only what ``Cluster`` finds. ``--fingerprints real``: the
  real ``python -m imagecluster index LIB`` makes them (lite0; about 2-3
  minutes more on 2 cores);
* the real daemon, ``python -m imagecluster daemon --library LIB --config CFG``
  on a private ``dbus-daemon --session``, ``worker_idle_seconds`` = ``--idle``.
  Its VmRSS is sampled every 20 ms while it starts and reconciles; VmHWM when
  it logs "serving" is the peak of start-up + reconciliation;
* idle RSS: one new photo is written into the library, so the worker starts;
  once the photo is in the store and the worker process has exited (no live
  child running ``spawn_main``, by a /proc scan), and ``--settle-after``
  seconds more, VmRSS and VmHWM are read from ``/proc/PID/status``
  ``--samples`` times, ``--interval`` s apart; median. The daemon's other
  child, multiprocessing's resource tracker (a small separate interpreter
  started with the first worker), is reported on its own;
* then ``Cluster(0.7)`` called ``--cluster-calls`` times over D-Bus: wall
  time, the daemon's peak RSS during each call (VmHWM reset through
  ``/proc/PID/clear_refs`` just before; 20 ms sampling where that is not
  allowed), and its idle RSS after each call (a daemon that answered calls);
* the original imagecluster keeps everything in its process: a fresh
  interpreter imports Keras, builds VGG16 cut at ``fc2`` (``weights=None``:
  same size as ImageNet weights) and holds a dict of ``--count`` 4096-value
  float32 fingerprints (random: same size); its VmRSS is read the same way.
  Its ``images`` dict (every photo as a 224x224x3 int64 array, which
  ``get_image_data`` also returns and keeps) is left out and only estimated.

Run (about 1-2 minutes on 2 cores; ``--fingerprints real`` 2-3 minutes more)::

    python benchmarks/bench_daemon_memory.py [--count 10000] [--fingerprints random]

The last lines: library and store size, start-up and its peak RSS, idle RSS
before any worker, Cluster's time and peak and the idle RSS after each call (or
the call that failed), the original's RSS, then the figure of the issue, idle RSS
after the worker exited (target <= 150 MB), and the ratio original / ours.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import Original, cli, log, median, real_photos
from _daemon_run import MODEL, DaemonRun, PrivateBus, memory_mb, reset_hwm, sigterm_as_interrupt, wait_stored

LITE0_DIM = 1280
ORIG_DIM = 4096


def make_library(lib, count, size, seed):
    """``count`` small JPEGs, 100 per folder, cut from the real photos; returns their relative paths."""
    photos = real_photos()
    names = sorted(photos)
    sources = {}
    for n in names:
        im = Image.open(photos[n]).convert("RGB")
        im.thumbnail((4 * size[0], 4 * size[1]))  # crops of a reduced copy: quick, still real content
        sources[n] = im
    rng = random.Random(seed)
    rels = []
    for k in range(count):
        name = names[k % len(names)]
        im = sources[name]
        w, h = im.size
        cw = int(min(w, h * size[0] / size[1]) * rng.uniform(0.4, 1.0))
        ch = int(cw * size[1] / size[0])
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        s = im.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.BILINEAR)
        if rng.random() < 0.5:
            s = s.transpose(Image.FLIP_LEFT_RIGHT)
        rel = f"{k // 100:03d}/img_{k:05d}_{name}.jpg"
        (lib / rel).parent.mkdir(exist_ok=True)
        s.save(lib / rel, quality=rng.choice((80, 88, 92)))
        rels.append(rel)
    return rels


def random_store(lib, rels, seed):
    """Random L2-normalised lite0-sized fingerprints under each file's (size, mtime_ns), then compact."""
    from imagecluster import Store

    rng = np.random.default_rng(seed)
    fps = rng.standard_normal((len(rels), LITE0_DIM), dtype=np.float32)
    fps /= np.linalg.norm(fps, axis=1, keepdims=True)
    items = []
    for rel, vector in zip(rels, fps):
        st = os.stat(lib / rel)
        items.append((rel, st.st_size, st.st_mtime_ns, vector))
    store = Store(lib)
    store.put(MODEL, items)
    store.compact()
    return len(store.entries(MODEL))


def folder_mb(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


async def _call_cluster(address, sim):
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    from imagecluster._dbus_names import BUS_NAME, INTERFACE, OBJECT_PATH

    bus = await MessageBus(bus_address=address).connect()
    try:
        t0 = time.monotonic()
        reply = await bus.call(Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE,
                                       member="Cluster", signature="d", body=[sim]))
        seconds = time.monotonic() - t0
    finally:
        bus.disconnect()
    if reply.message_type == MessageType.ERROR:
        return seconds, f"{reply.error_name}: {reply.body[0] if reply.body else ''}"
    return seconds, reply.body[0]


class PeakSampler:
    """Samples a process's VmRSS every ``interval`` s in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, memory_mb(self.pid)["rss"])
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def rss_samples(pid, n, interval):
    out = []
    for i in range(n):
        if i:
            time.sleep(interval)
        out.append(memory_mb(pid))
    return out


def orig_memory(count, n, interval):
    """The original's process: Keras + VGG16 (fc2) + ``count`` fingerprints of 4096 float32 values."""
    import gc

    orig = Original()
    orig.load_model()
    rng = np.random.default_rng(0)
    fps = {f"/photos/{k // 100:03d}/img_{k:05d}.jpg": rng.standard_normal(ORIG_DIM).astype(np.float32)
           for k in range(count)}
    gc.collect()
    time.sleep(1.0)
    samples = rss_samples(os.getpid(), n, interval)
    return {"n_fps": len(fps), "rss": median([s["rss"] for s in samples]), "hwm": samples[-1]["hwm"],
            "anon": median([s["anon"] for s in samples])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10000, help="photos in the library (default: 10000)")
    ap.add_argument("--size", default="128x96", help="WxH of the library's JPEGs (default: 128x96)")
    ap.add_argument("--fingerprints", choices=("random", "real"), default="random",
                    help="random vectors written with Store.put, or real lite0 ones made by `imagecluster index` "
                         "(default: random)")
    ap.add_argument("--idle", type=float, default=3.0, help="the daemon's worker_idle_seconds (default: 3)")
    ap.add_argument("--settle-after", type=float, default=2.0,
                    help="seconds after the worker exited before the first reading (default: 2)")
    ap.add_argument("--samples", type=int, default=5, help="RSS readings (default: 5)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between readings (default: 1)")
    ap.add_argument("--sim", type=float, default=0.7, help="sim of the Cluster calls (default: 0.7)")
    ap.add_argument("--cluster-calls", type=int, default=3,
                    help="Cluster calls after the idle readings, each followed by an idle reading (default: 3)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder in /tmp (logs, library)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "orig-memory":
        print(json.dumps(orig_memory(args.count, args.samples, args.interval)))
        return 0

    size = tuple(int(v) for v in args.size.lower().split("x"))
    sigterm_as_interrupt()
    work = Path(tempfile.mkdtemp(prefix="imagecluster-bench-memory-", dir="/tmp"))
    log(f"scratch folder {work}")
    r = {}
    try:
        lib = work / "library"
        lib.mkdir()
        log(f"making {args.count} JPEGs of {size[0]}x{size[1]} ...")
        t0 = time.monotonic()
        rels = make_library(lib, args.count, size, args.seed)
        log(f"  {time.monotonic() - t0:.0f} s, {folder_mb(lib):.0f} MB")
        t0 = time.monotonic()
        if args.fingerprints == "random":
            stored = random_store(lib, rels, args.seed)
        else:
            log("fingerprinting them with `imagecluster index` (lite0) ...")
            cmd, env = cli("index", lib)
            subprocess.run(cmd, env=env, check=True, stdout=sys.stderr)
            from imagecluster import Store

            stored = len(Store(lib).entries(MODEL))
        r["store_s"] = time.monotonic() - t0
        if stored != args.count:
            raise SystemExit(f"the store holds {stored} fingerprints, not {args.count}")
        r["store_mb"] = folder_mb(lib / ".imagecluster")
        r["lib_mb"] = folder_mb(lib) - r["store_mb"]
        log(f"  store: {stored} fingerprints, {r['store_mb']:.1f} MB on disk ({r['store_s']:.0f} s)")

        with PrivateBus(work / "bus") as bus:
            settings = {"model": MODEL, "worker_idle_seconds": args.idle}
            with DaemonRun([lib], settings, work, bus) as daemon:
                seen = [0.0]

                def sample():
                    try:
                        seen[0] = max(seen[0], memory_mb(daemon.pid)["rss"])
                    except OSError:
                        pass

                r["startup_s"] = daemon.wait_serving(sample=sample)
                r["startup_hwm"] = memory_mb(daemon.pid)["hwm"]
                r["startup_seen"] = seen[0]
                text = daemon.log_text()
                r["reconcile_line"] = next((ln for ln in text.splitlines() if "to fingerprint" in ln), "?")
                if " 0 to fingerprint" not in r["reconcile_line"] or daemon.worker_pids():
                    raise SystemExit(f"the start-up reconciliation had work to do:\n{text}")
                log(f"daemon {daemon.pid} serving after {r['startup_s']:.1f} s; peak RSS {r['startup_hwm']:.0f} MB; "
                    f"{r['reconcile_line'].rsplit(': ', 1)[-1]}")
                time.sleep(1.0)
                before = rss_samples(daemon.pid, args.samples, args.interval)
                r["rss_fresh"] = median([s["rss"] for s in before])
                log(f"idle, worker never started: RSS {r['rss_fresh']:.0f} MB")

                from imagecluster import Store

                store = Store(lib)
                store.entries(MODEL)  # loaded before the clock starts
                new = lib / "000" / "new_photo.jpg"
                shutil.copyfile(lib / rels[0], new)
                st = os.stat(new)
                t0 = time.monotonic()
                wait_stored(store, "000/new_photo.jpg", (st.st_size, st.st_mtime_ns), 180.0, 0.05)
                r["new_s"] = time.monotonic() - t0
                waited = daemon.wait_worker(alive=False, timeout=args.idle + 60)
                log(f"new photo stored after {r['new_s']:.1f} s; worker gone {waited:.1f} s later")
                time.sleep(args.settle_after)
                after = rss_samples(daemon.pid, args.samples, args.interval)
                r["rss_idle"] = median([s["rss"] for s in after])
                r["hwm_idle"] = after[-1]["hwm"]
                r["anon_idle"] = median([s["anon"] for s in after])
                r["file_idle"] = median([s["file"] for s in after])
                helpers = daemon.helper_pids()
                r["helpers_mb"] = sum(memory_mb(p)["rss"] for p in helpers)
                r["n_helpers"] = len(helpers)
                log(f"idle after the worker exited: RSS {r['rss_idle']:.0f} MB (anon {r['anon_idle']:.0f}, "
                    f"file {r['file_idle']:.0f}); VmHWM {r['hwm_idle']:.0f} MB")

                r["cluster_s"], r["cluster_peak"], r["rss_after_cluster"], r["cluster_error"] = [], [], [], None
                for i in range(args.cluster_calls):
                    hwm_reset = reset_hwm(daemon.pid)
                    with PeakSampler(daemon.pid) as sampler:
                        seconds, clusters = asyncio.run(_call_cluster(bus.address, args.sim))
                    if isinstance(clusters, str):  # a D-Bus error: report it, stop calling
                        r["cluster_error"] = f"call {i + 1} FAILED after {seconds:.1f} s: {clusters}"
                        log(f"Cluster({args.sim}) {r['cluster_error']}")
                        break
                    peak = memory_mb(daemon.pid)["hwm"] if hwm_reset else sampler.peak
                    r["cluster_s"].append(seconds)
                    r["cluster_peak"].append(peak)
                    r["peak_how"] = "VmHWM reset before each call" if hwm_reset else "20 ms sampling"
                    r["n_clusters"] = len(clusters)
                    r["n_clustered"] = sum(len(c) for c in clusters)
                    time.sleep(args.settle_after)
                    r["rss_after_cluster"].append(median([s["rss"] for s in rss_samples(daemon.pid, 3, 0.5)]))
                    log(f"Cluster({args.sim}) {i + 1}/{args.cluster_calls}: {seconds:.2f} s, {len(clusters)} clusters; "
                        f"peak RSS {peak:.0f} MB; idle RSS after {r['rss_after_cluster'][-1]:.0f} MB")
                if r["cluster_error"]:  # did the daemon survive it?
                    try:
                        daemon.proc.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
                r["daemon_status"] = ("running" if daemon.proc.poll() is None
                                      else f"EXITED with status {daemon.proc.returncode}")

        log("original: Keras + VGG16 + fingerprints dict in a fresh interpreter ...")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "orig-memory",
                               "--count", str(args.count), "--samples", str(args.samples),
                               "--interval", str(args.interval)], stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"the original's worker failed ({proc.returncode})")
        orig = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    images_gb = args.count * 224 * 224 * 3 * 8 / 1e9
    print()
    print(f"library: {args.count} JPEGs of {size[0]}x{size[1]} in {(args.count + 99) // 100} folders "
          f"({r['lib_mb']:.0f} MB); fingerprints: {args.fingerprints} "
          f"({'L2-normalised random' if args.fingerprints == 'random' else 'lite0 by `imagecluster index`'}, "
          f"{LITE0_DIM} values); store on disk {r['store_mb']:.1f} MB; {os.cpu_count()} cores")
    print(f"daemon start-up: serving after {r['startup_s']:.1f} s ({r['reconcile_line'].rsplit(': ', 1)[-1]}); "
          f"peak RSS during start-up + reconciliation {r['startup_hwm']:.0f} MB (VmHWM)")
    print(f"idle RSS before any worker: median {r['rss_fresh']:.0f} MB")
    calls = len(r["cluster_s"])
    if calls:
        print(f"Cluster({args.sim:g}) over D-Bus on {args.count} photos, {calls} call(s): median "
              f"{median(r['cluster_s']):.2f} s, {r['n_clusters']} clusters of {r['n_clustered']} photos; daemon peak "
              f"RSS during a call {max(r['cluster_peak']):.0f} MB ({r['peak_how']})")
        print("idle RSS after each Cluster call: " + ", ".join(f"{x:.0f}" for x in r["rss_after_cluster"])
              + " MB (target <= 150 MB)")
    if r["cluster_error"]:
        print(f"Cluster {r['cluster_error']}; the daemon is {r['daemon_status']}")
    print(f"original (Keras VGG16 fc2 + dict of {orig['n_fps']} {ORIG_DIM}-value float32 fingerprints, in process): "
          f"RSS {orig['rss']:.0f} MB (VmHWM {orig['hwm']:.0f} MB); not counted: its images dict, "
          f"{args.count} x 224x224x3 int64 = {images_gb:.1f} GB")
    print(f"idle RSS after the worker exited: median {r['rss_idle']:.0f} MB (anon {r['anon_idle']:.0f} MB, "
          f"file-backed {r['file_idle']:.0f} MB; VmHWM {r['hwm_idle']:.0f} MB; n={args.samples} over "
          f"{(args.samples - 1) * args.interval:g} s; target <= 150 MB); + resource tracker process "
          f"{r['helpers_mb']:.0f} MB")
    print(f"RATIO original / ours idle RSS: {orig['rss'] / r['rss_idle']:.1f}x")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; daemon, bus and scratch folder cleaned up")
        sys.exit(130)
