"""Events and trips (issue 14 part 2 and the CLI of part 3): the rules over arrays, and the tree on real photos.

The rules are tested on the pure functions (times, positions, fingerprints as
arrays); the CLI test writes real JPEGs with EXIF times and GPS (piexif) and
runs ``imagecluster cluster --by events`` in a subprocess (the model runs
there, never in pytest's own process).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _exif_photos import PARIS, TURIN, exif_photo, two_cities

from imagecluster import InvalidParameter
from imagecluster.events import cluster_events, event_label, find_events, haversine_km

H = 3600.0


def events_of(times, positions, **kw):
    lats = [np.nan if p is None else p[0] for p in positions]
    lons = [np.nan if p is None else p[1] for p in positions]
    return [list(map(int, e)) for e in find_events(np.array(times) * H, lats, lons, **kw)]


def test_a_gap_longer_than_hours_splits():
    times = [0, 1, 2, 20, 21]
    assert events_of(times, [TURIN] * 5, hours=12) == [[0, 1, 2], [3, 4]]
    assert events_of(times, [TURIN] * 5, hours=24) == [[0, 1, 2, 3, 4]]


def test_photos_far_apart_at_the_same_time_are_two_events():
    """Two cameras of one family on the same day in two cities: times interleave, places do not."""
    times = [0, 0.5, 1, 1.5, 2, 2.5]
    places = [TURIN, PARIS, TURIN, PARIS, TURIN, PARIS]
    assert events_of(times, places, km=50) == [[0, 2, 4], [1, 3, 5]]
    assert haversine_km(*TURIN, *PARIS) > 500
    assert events_of(times, places, km=1000) == [list(range(6))]


def test_photos_without_gps_join_the_event_nearest_in_time():
    times = [0, 1, 1.2, 2, 8, 9, 9.5, 30]
    places = [TURIN, TURIN, None, TURIN, PARIS, PARIS, None, None]
    # 1.2 h is beside Turin's photos; 9.5 h beside Paris'; 30 h is far from everything: an event of its own.
    assert events_of(times, places, hours=12, km=50) == [[0, 1, 2, 3], [4, 5, 6], [7]]


def test_photos_without_gps_chain_into_events_by_time_alone():
    times = [0, 3, 6, 40, 43]
    assert events_of(times, [None] * 5, hours=12) == [[0, 1, 2], [3, 4]]


def test_photos_without_a_time_are_in_no_event():
    assert events_of([0, np.nan, 1], [TURIN, TURIN, None]) == [[0, 2]]


def test_content_joins_what_a_long_night_split():
    times = [0, 1, 30, 31]
    fps = np.array([[1, 0, 0], [0.9, 0.1, 0], [0.95, 0.05, 0], [0, 0, 1]], dtype=np.float32)
    assert events_of(times, [TURIN] * 4, hours=12) == [[0, 1], [2, 3]]
    assert events_of(times, [TURIN] * 4, hours=12, fingerprints=fps, join_sim=0.9) == [[0, 1, 2, 3]]
    # ... but never across places
    places = [TURIN, TURIN, PARIS, PARIS]
    assert events_of(times, places, hours=12, fingerprints=fps, join_sim=0.9) == [[0, 1], [2, 3]]


def test_content_clusters_inside_each_event():
    times = np.array([0, 1, 2, 3, 100, 101]) * H
    lats, lons = np.full(6, TURIN[0]), np.full(6, TURIN[1])
    fps = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [1, 0], [0.99, 0.1]], dtype=np.float32)
    events = cluster_events(times, lats, lons, fps, sim=0.9, hours=12)
    assert [e.members for e in events] == [[0, 1, 2, 3], [4, 5]]
    assert sorted(map(sorted, events[0].clusters)) == [[0, 1], [2, 3]]
    assert events[1].clusters == [[4, 5]]
    assert events[0].lat == pytest.approx(TURIN[0])


def test_bad_parameters():
    for kw in ({"hours": 0}, {"hours": float("nan")}, {"km": -1}, {"km": "far"}):
        with pytest.raises(InvalidParameter):
            find_events([0.0], [0.0], [0.0], **kw)
    with pytest.raises(InvalidParameter):
        find_events([0.0, 1.0], [0.0], [0.0])


def test_event_labels():
    wall = (np.datetime64("2024-05-01T10:00") - np.datetime64("1970-01-01T00:00")) / np.timedelta64(1, "s")
    assert event_label(float(wall), 45.0712, -7.6912, 3) == "2024-05-01_45.07N_7.69W"
    assert event_label(float(wall), None, None, 3) == "2024-05-01_003"


# --------------------------------------------------------------- the CLI


def run(*args):
    return subprocess.run([sys.executable, "-m", "imagecluster", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_cluster_by_events_writes_the_events_tree(tmp_path):
    lib = tmp_path / "photos"
    expected = two_cities(lib)
    no_exif = lib / "scan.jpg"
    before = {p: p.read_bytes() for p in lib.rglob("*.jpg")}
    result = run("cluster", lib, "--by", "events", "-q", "--sim", "0.5")
    assert result.returncode == 0, result.stderr
    tree = lib / "clusters"
    events = sorted(p.name for p in (tree / "events").iterdir())
    assert events == expected
    turin = tree / "events" / "2024-05-01_45.07N_7.69E"
    assert sorted(p.name for p in turin.iterdir() if p.is_symlink()) == ["1.jpg", "2.jpg", "3.jpg"]
    assert {os.readlink(p) for p in turin.iterdir() if p.is_symlink()} == {
        str(lib / "turin" / n) for n in ("1.jpg", "2.jpg", "3.jpg")}
    assert (turin / "cluster_0").is_dir() and (turin / "cluster_0" / "1.jpg").is_symlink()
    single = tree / "events" / "2027-01-15_003"
    assert [p.name for p in single.iterdir()] == ["scan.jpg"] and os.readlink(single / "scan.jpg") == str(no_exif)
    assert "3 events with 6 photos" in result.stdout
    assert "48.86N 2.35E" in result.stdout and "1 from file time" in result.stdout
    marker = json.loads((tree / ".imagecluster-tree").read_text())
    assert marker["by"] == "events" and marker["events"] == 3
    assert {p: p.read_bytes() for p in lib.rglob("*.jpg") if not p.is_symlink()} == before  # photos untouched
    # The capture data is in the store: a second run reads no header again (and changes nothing).
    from imagecluster import Store

    assert len(Store(lib).captures()) == 6
    again = run("cluster", lib, "--by", "events", "-q", "--sim", "0.5", "--time-from", "original")
    assert again.returncode == 0, again.stderr
    assert "1 photo without a capture time from original: in no event" in again.stdout


def test_the_events_tree_never_replaces_a_folder_it_did_not_write(tmp_path):
    lib = tmp_path / "photos"
    exif_photo(lib, "a.jpg", "dog.jpg", 1, "2024:05:01 10:00:00", TURIN)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run("cluster", lib, "--by", "events", "--out", out, "-q")
    assert result.returncode == 1 and "not written by imagecluster" in result.stderr
    assert (out / "notes.txt").read_text() == "mine" and sorted(os.listdir(out)) == ["notes.txt"]
    bad = run("cluster", lib, "--by", "events", "--hours", "0")
    assert bad.returncode == 2 and "hours must be more than 0" in bad.stderr


def test_photos_indexed_before_get_their_capture_data_read_once(tmp_path):
    """A store without capture data (written before it existed): the first events run reads headers, once."""
    from imagecluster import Store
    from imagecluster._library_events import library_events

    lib = tmp_path / "photos"
    two_cities(lib)
    store = Store(lib)
    rng = np.random.default_rng(0)
    items = []
    for path in sorted(lib.rglob("*.jpg")):
        st = path.stat()
        items.append((path.relative_to(lib).as_posix(), st.st_size, st.st_mtime_ns, rng.normal(size=8)))
    store.put("lite0", items)
    assert store.captures() == {}
    events, undated = library_events(lib, store, "lite0", sim=0.99)
    assert [e.name for e in events] == ["2024-05-01_45.07N_7.69E", "2024-05-01_48.86N_2.35E", "2027-01-15_003"]
    assert undated == [] and len(Store(lib).captures()) == 6
    journal = lib / ".imagecluster" / "journal.pk"
    size = journal.stat().st_size
    library_events(lib, store, "lite0", sim=0.99)
    assert journal.stat().st_size == size  # nothing read or written the second time
    # A time source list without the file time leaves the scan without EXIF in no event.
    events, undated = library_events(lib, store, "lite0", sim=0.99, sources=("original",))
    assert [p.name for p in undated] == ["scan.jpg"] and len(events) == 2


def test_a_photo_without_gps_during_two_trips_joins_the_one_like_it():
    times = [0, 0.5, 1, 1.5, 1.2]
    places = [TURIN, PARIS, TURIN, PARIS, None]
    fps = np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1], [0.05, 1]], dtype=np.float32)
    assert events_of(times, places) == [[0, 2, 4], [1, 3]]  # nearest in time: Turin's photo at 1 h
    assert events_of(times, places, fingerprints=fps) == [[0, 2], [1, 4, 3]]  # most like Paris' photos
