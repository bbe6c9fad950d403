"""Issue 14: events and trips -- pairwise precision/recall/F1 against the trips a set of real photos was taken on.

The labelled set (built once, in the bench cache): the real photos of
``_common.real_photos`` (Debian darknet's samples, scikit-image's photos) as
"camera moved" shots, taken on 9 trips to 9 cities. Each trip lasts 1-3 days
(photos in bursts between 07:00 and 23:00, so nights leave gaps of 8-16 h),
photographs 3-5 subjects, and wanders up to ~8 km around its city. Between
trips there are gaps of days, except: Lisbon and Oslo overlap in time (two
cameras of one family, 2,700 km apart), Vienna is followed 10 h later by
Bratislava (55 km away), and Berlin has a rest day without photos (a 40 h gap
at one place). Subjects repeat across trips (the same dog in Turin and
Berlin, ...). EXIF is written with ``piexif``: ``DateTimeOriginal`` (naive,
local time) and sub-seconds; GPS for ~80% of the photos; ~4% of the photos
have no EXIF at all and keep only their file time (set to the true time).

Scored (pairwise, against the trips; a photo in no group is a singleton):

* content only: ``imagecluster.cluster.cluster`` at the default ``sim``;
* time gap only: a gap longer than 36 h splits (LibrePhotos' rule);
* events: :func:`imagecluster.events.find_events` at the defaults, and a
  sweep of ``hours`` x ``km`` (plus the optional content join) to choose them;
* end to end: ``imagecluster cluster DIR --by events`` in a fresh process,
  its ``OUT/events/*/`` folders read back.

Also the header read: ``read_capture`` per photo against Pillow's
``Image.open(...).getexif()`` (median of rounds, same files).

Run: ``python benchmarks/bench_events.py [--seed 1]`` (~1-2 min; the model runs in the CLI subprocess).
"""

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from _common import CACHE, cli, log, median, real_photos

# City, (lat, lon), first day (2024), days, subjects.
TRIPS = [
    ("turin", (45.0703, 7.6869), "2024-05-01", 2, ["dog", "coffee", "kite"]),
    ("paris", (48.8566, 2.3522), "2024-05-10", 1, ["scream", "person", "astronaut"]),
    ("lisbon", (38.7223, -9.1393), "2024-06-01", 3, ["eagle", "horses", "rocket", "chelsea"]),
    ("oslo", (59.9139, 10.7522), "2024-06-02", 2, ["giraffe", "motorcycle_left", "ihc"]),  # overlaps Lisbon
    ("rome", (41.9028, 12.4964), "2024-07-04", 1, ["retina", "coffee", "person"]),
    ("berlin", (52.5200, 13.4050), "2024-08-01", 4, ["dog", "hubble_deep_field", "kite", "motorcycle_right"]),
    ("vienna", (48.2082, 16.3738), "2024-08-20", 2, ["astronaut", "eagle", "chelsea"]),
    ("bratislava", (48.1486, 17.1077), "2024-08-22", 1, ["horses", "giraffe", "scream"]),  # 10 h after Vienna
    ("madrid", (40.4168, -3.7038), "2024-09-05", 2, ["rocket", "dog", "retina", "ihc"]),
]
HOURS = (6, 12, 16, 18, 24, 36, 48)
KMS = (5, 10, 20, 30, 50, 75, 100, 300)
REST_DAYS = {("berlin", 1)}  # Berlin's second day: no photos (a 40 h gap at one place)


def shot(source, rng):
    from PIL import Image, ImageEnhance

    with Image.open(source) as im:
        im = im.convert("RGB")
    w, h = im.size
    z = rng.uniform(0.72, 0.9)
    cw, ch = int(w * z), int(h * z)
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    s = im.crop((x0, y0, x0 + cw, y0 + ch)).rotate(rng.uniform(-3, 3), resample=Image.BICUBIC)
    s = ImageEnhance.Brightness(s).enhance(rng.uniform(0.8, 1.2))
    s.thumbnail((640, 640), Image.LANCZOS)
    return s


def _times(rng, first_day, days, rest):
    """Photo times of one trip: bursts through each day, first photo 07-10 h, last 18-23 h."""
    start = dt.datetime.fromisoformat(first_day)
    out = []
    for d in range(days):
        if d in rest:
            continue
        day = start + dt.timedelta(days=d)
        t = day + dt.timedelta(hours=rng.uniform(7, 10))
        end = day + dt.timedelta(hours=rng.uniform(18, 23))
        while t < end:
            out.extend(t + dt.timedelta(seconds=rng.uniform(0, 90) * k) for k in range(rng.randint(1, 3)))
            t += dt.timedelta(minutes=rng.uniform(30, 150))
        out.append(end)
    return sorted(out)


def _offset(rng, center, radius_km):
    lat, lon = center
    r, a = radius_km * rng.random() ** 0.5, rng.uniform(0, 6.283)
    import math

    return lat + r * math.cos(a) / 111.0, lon + r * math.sin(a) / (111.0 * math.cos(math.radians(lat)))


def build(root, seed):
    """Write the labelled set; returns {file name: trip}."""
    import piexif

    photos = real_photos()
    rng = random.Random(seed)
    lib = root / "photos"
    lib.mkdir(parents=True)
    truth = {}
    for trip, center, first_day, days, subjects in TRIPS:
        rest = {d for t, d in REST_DAYS if t == trip}
        for k, when in enumerate(_times(rng, first_day, days, rest)):
            name = f"{trip}_{k:03d}.jpg"
            im = shot(photos[rng.choice(subjects)], rng)
            kind = rng.random()
            exif = {}
            if kind >= 0.04:
                exif["Exif"] = {piexif.ExifIFD.DateTimeOriginal: when.strftime("%Y:%m:%d %H:%M:%S").encode(),
                                piexif.ExifIFD.SubSecTimeOriginal: str(rng.randint(0, 99)).encode()}
            if kind >= 0.24:  # ~20% of the photos with a time but without GPS
                lat, lon = _offset(rng, center, 8.0)
                exif["GPS"] = {
                    piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
                    piexif.GPSIFD.GPSLatitude: ((round(abs(lat) * 1e6), 1000000), (0, 1), (0, 1)),
                    piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
                    piexif.GPSIFD.GPSLongitude: ((round(abs(lon) * 1e6), 1000000), (0, 1), (0, 1)),
                }
            im.save(lib / name, quality=85, exif=piexif.dump(exif) if exif else b"")
            stamp = when.timestamp()  # naive: local time, as the reader takes it
            os.utime(lib / name, (stamp, stamp))
            truth[name] = trip
    return lib, truth


def prf(truth, groups):
    """Pairwise precision, recall, F1 (the formula of ../shared/datasets/score.py, inlined: no /work/shared needed)."""
    import itertools

    def pairs(gs):
        out = set()
        for g in gs:
            out.update(itertools.combinations(sorted(g), 2))
        return out

    by = {}
    for name, g in truth.items():
        by.setdefault(g, []).append(name)
    t, p = pairs(by.values()), pairs(groups)
    tp = len(t & p)
    prec = tp / len(p) if p else 1.0
    rec = tp / len(t) if t else 1.0
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


def time_gap_groups(times, hours):
    order = sorted(range(len(times)), key=times.__getitem__)
    groups, current = [], [order[0]]
    for a, b in zip(order, order[1:]):
        if times[b] - times[a] > hours * 3600:
            groups.append(current)
            current = []
        current.append(b)
    groups.append(current)
    return groups


def header_read_times(paths, rounds=3):
    from PIL import Image

    from imagecluster._capture import read_capture

    ours, pillow = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for p in paths:
            read_capture(p)
        ours.append((time.perf_counter() - t) / len(paths))
        t = time.perf_counter()
        for p in paths:
            with Image.open(p) as im:
                im.getexif().get_ifd(0x8769)
                im.getexif().get_ifd(0x8825)
        pillow.append((time.perf_counter() - t) / len(paths))
    return median(ours) * 1e3, median(pillow) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    import numpy as np

    from imagecluster import Store
    from imagecluster._capture import capture_time
    from imagecluster.cluster import DEFAULT_SIM, cluster
    from imagecluster.events import DEFAULT_HOURS, DEFAULT_JOIN_SIM, DEFAULT_KM, find_events

    root = CACHE / f"events-seed{args.seed}"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    log(f"building the labelled set in {root} ...")
    lib, truth = build(root, args.seed)
    log(f"{len(truth)} photos on {len(TRIPS)} trips; imagecluster cluster --by events ...")
    cmd, env = cli("cluster", lib, "--by", "events", "-q", "--out", root / "out")
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    first_run = time.perf_counter() - t0
    if run.returncode:
        raise SystemExit(run.stderr)
    t0 = time.perf_counter()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rerun = time.perf_counter() - t0
    log(run.stdout)
    events_dir = root / "out" / "events"
    cli_groups = [[p.name for p in folder.iterdir() if p.is_symlink()] for folder in events_dir.iterdir()]

    store = Store(lib)
    names, fps = store.fingerprints("lite0")
    captures = store.captures()
    entries = store.entries("lite0")
    times = np.array([capture_time(captures[n].capture, entries[n].mtime_ns).timestamp for n in names])
    lats = np.array([np.nan if captures[n].capture.lat is None else captures[n].capture.lat for n in names])
    lons = np.array([np.nan if captures[n].capture.lon is None else captures[n].capture.lon for n in names])
    sources = {}
    for n in names:
        s = capture_time(captures[n].capture, entries[n].mtime_ns).source
        sources[s] = sources.get(s, 0) + 1

    def named(groups):
        return [[names[i] for i in g] for g in groups]

    rows = {}
    rows["content only (sim %.2f)" % DEFAULT_SIM] = prf(truth, named(cluster(fps, DEFAULT_SIM, 2)))
    rows["time gap only (36 h)"] = prf(truth, named(time_gap_groups(list(times), 36)))
    rows[f"time gap only ({DEFAULT_HOURS:g} h)"] = prf(truth, named(time_gap_groups(list(times), DEFAULT_HOURS)))
    rows[f"events: time + place ({DEFAULT_HOURS:g} h, {DEFAULT_KM:g} km)"] = prf(
        truth, named(find_events(times, lats, lons)))
    rows["events: + content picks no-GPS photos' event"] = prf(
        truth, named(find_events(times, lats, lons, fingerprints=fps)))
    rows[f"events mode, defaults (+ content join {DEFAULT_JOIN_SIM})"] = prf(
        truth, named(find_events(times, lats, lons, fingerprints=fps, join_sim=DEFAULT_JOIN_SIM)))
    rows["imagecluster cluster --by events (CLI)"] = prf(truth, cli_groups)

    sweep, joins = {}, {}
    for hours in HOURS:
        for km in KMS:
            sweep[hours, km] = prf(truth, named(find_events(times, lats, lons, hours=hours, km=km, fingerprints=fps,
                                                            join_sim=DEFAULT_JOIN_SIM)))[2]
    for join_sim in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, None):
        joins[join_sim] = prf(truth, named(find_events(times, lats, lons, fingerprints=fps, join_sim=join_sim)))[2]
    ours_ms, pillow_ms = header_read_times([lib / n for n in names])

    log("")
    print(f"set: {len(truth)} photos, {len(TRIPS)} trips, seed {args.seed}; capture times: "
          + ", ".join(f"{n} {s}" for s, n in sorted(sources.items(), key=lambda kv: -kv[1]))
          + f"; with GPS {int((~np.isnan(lats)).sum())}")
    print(f"CLI --by events: first run {first_run:.1f} s (fingerprints + headers), re-run {rerun:.1f} s"
          + ("" if again.returncode == 0 else " (FAILED)"))
    print(f"header read per JPEG: read_capture {ours_ms:.3f} ms, Pillow open+getexif {pillow_ms:.3f} ms")
    print("F1 of events mode by hours (rows) and km (columns):")
    print("        " + "".join(f" {km:>6}" for km in KMS))
    for hours in HOURS:
        print(f"  {hours:>4} h" + "".join(f" {sweep[hours, km]:6.3f}" for km in KMS))
    print("F1 by content join sim: " + ", ".join(f"{'off' if j is None else j}: {f:.3f}" for j, f in joins.items()))
    print(f"{'method':<44} precision recall     F1")
    for name, (p, r, f) in rows.items():
        print(f"{name:<44} {p:9.3f} {r:6.3f} {f:6.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
