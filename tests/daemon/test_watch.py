"""The library watcher: real folders, real inotify events, filtered by name in watchdog's threads."""

import dataclasses
import os
import queue
import shutil
import time
from pathlib import Path

import pytest

from imagecluster import LibraryNotFound, write_tree
from imagecluster.daemon import LibraryWatcher, PathChange
from imagecluster.daemon._watch import is_ignored_name
from imagecluster.images import STORE_DIRNAME

DATA = Path(__file__).parent.parent / "data"


class Recorder:
    """A thread-safe sink; ``until(path)`` collects changes until one names ``path``."""

    def __init__(self):
        self.queue = queue.Queue()

    def __call__(self, change):
        self.queue.put(change)

    def until(self, path, timeout=20.0):
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                change = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no change for {path} within {timeout} s; saw {seen}") from None
            seen.append(change)
            if Path(path) in (change.path, change.dest):
                return seen


@pytest.fixture
def watched(tmp_path):
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    recorder = Recorder()
    watcher = LibraryWatcher([lib], recorder, exclude=[lib / "out"])
    watcher.start()
    yield lib, recorder, watcher
    watcher.stop()


def kinds(changes, path):
    return [c.kind for c in changes if c.path == Path(path) or c.dest == Path(path)]


def test_reports_file_changes_as_frozen_records(watched):
    lib, rec, _ = watched
    photo = lib / "sub" / "a.jpg"
    shutil.copy(DATA / "cat.jpg", photo)
    seen = rec.until(photo)
    assert seen[-1] == PathChange("created", photo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[-1].kind = "deleted"
    assert hash(seen[-1]) == hash(PathChange("created", photo))

    with open(photo, "ab") as f:
        f.write(b"\0")
    assert "modified" in kinds(rec.until(photo), photo)
    os.utime(photo, ns=(0, 10**18))  # a new modification time alone (as touch does)
    assert kinds(rec.until(photo), photo) == ["modified"]

    moved = lib / "b.jpg"
    os.rename(photo, moved)
    assert rec.until(moved)[-1] == PathChange("moved", photo, moved)
    os.unlink(moved)
    assert rec.until(moved)[-1] == PathChange("deleted", moved)


def test_filters_by_name_only(watched):
    lib, rec, _ = watched
    ignored = [
        lib / "x.jpg.part", lib / "y.jpg.crdownload", lib / "z.jpg.tmp", lib / "w.jpg.download",
        lib / ".hidden.jpg", lib / "notes.txt", lib / STORE_DIRNAME / "p.jpg", lib / ".cache" / "q.jpg",
        lib / "out" / "r.jpg",
    ]
    for path in ignored:
        path.parent.mkdir(exist_ok=True)
        shutil.copy(DATA / "cat.jpg", path)
    marker = lib / "marker.jpg"
    shutil.copy(DATA / "dog.jpg", marker)
    seen = rec.until(marker)
    reported = {c.path for c in seen} | {c.dest for c in seen}
    assert not reported & set(ignored), seen
    assert all(c.path.parent == lib for c in seen), seen  # no folder-modified noise either

    # a partial download renamed to its final name is a photo created, and the reverse a deletion
    final = lib / "x.jpg"
    os.rename(lib / "x.jpg.part", final)
    assert rec.until(final)[-1] == PathChange("created", final)
    os.rename(final, lib / ".x.jpg")
    assert rec.until(final)[-1] == PathChange("deleted", final)


def test_folders_moved_in_within_and_out(watched, tmp_path):
    lib, rec, _ = watched
    outside = tmp_path / "outside" / "trip"
    outside.mkdir(parents=True)
    for name in ("1.jpg", "2.jpg"):
        shutil.copy(DATA / "cat.jpg", outside / name)
    trip = lib / "trip"
    os.rename(outside, trip)
    assert rec.until(trip)[-1] == PathChange("created", trip, None, True)
    # watchdog also reports what the folder holds
    seen = rec.until(trip / "2.jpg")
    assert PathChange("created", trip / "2.jpg") in seen

    renamed = lib / "sub" / "trip-2024"
    os.rename(trip, renamed)
    assert rec.until(renamed)[-1] == PathChange("moved", trip, renamed, True)
    os.rename(renamed, tmp_path / "gone")
    seen = rec.until(renamed)
    assert seen[-1] == PathChange("deleted", renamed, None, True)


def test_library_removed_then_watched_again(watched):
    lib, rec, watcher = watched
    assert watcher.watched == (lib,)
    shutil.rmtree(lib)
    assert rec.until(lib)[-1] == PathChange("deleted", lib, None, True)
    with pytest.raises(LibraryNotFound):
        watcher.watch(lib)
    assert watcher.watched == ()

    lib.mkdir()
    watcher.watch(lib)
    photo = lib / "back.jpg"
    shutil.copy(DATA / "cat.jpg", photo)
    assert rec.until(photo)[-1] == PathChange("created", photo)

    watcher.unwatch(lib)
    watcher.unwatch(lib)  # nothing watched: nothing happens
    shutil.copy(DATA / "cat.jpg", lib / "unseen.jpg")
    with pytest.raises(AssertionError, match="no change"):
        rec.until(lib / "unseen.jpg", timeout=0.5)


def test_keeps_watching_while_a_cluster_tree_is_replaced_in_place(watched):
    # write_tree swaps the new tree in with renameat2(RENAME_EXCHANGE), which
    # stock watchdog 7.1 mis-tracks until its reader thread dies of a KeyError
    lib, rec, watcher = watched
    photos = [lib / "a.jpg", lib / "b.jpg"]
    for photo in photos:
        shutil.copy(DATA / "cat.jpg", photo)
    for groups in ([photos], [photos], [photos[:1], photos[1:]], [photos]):
        write_tree(groups, lib / "clusters")
    late = lib / "sub" / "late.jpg"
    shutil.copy(DATA / "dog.jpg", late)
    assert rec.until(late)[-1] == PathChange("created", late)
    watcher.stop()  # and stopping works


def _inotify_watches():
    """How many inotify watches this process holds (its inotify fds' fdinfo)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    count += sum(line.startswith("inotify wd:") for line in info)
        except OSError:
            continue  # closed meanwhile
    return count


def test_a_cluster_tree_is_not_watched(watched):
    # A tree of thousands of cluster folders would otherwise take a watch each, at
    # every Cluster call, out of the user's inotify limit.
    lib, rec, watcher = watched
    photos = [lib / f"p{i:03d}.jpg" for i in range(40)]
    for photo in photos:
        shutil.copy(DATA / "cat.jpg", photo)
    (lib / "trip").mkdir()
    assert rec.until(photos[-1])
    before = _inotify_watches()
    for _ in range(2):
        write_tree([photos[i:i + 2] for i in range(0, len(photos), 2)], lib / "clusters")  # 20 clusters
    late = lib / "trip" / "late.jpg"
    shutil.copy(DATA / "dog.jpg", late)
    assert rec.until(late)[-1] == PathChange("created", late)  # still watching
    assert _inotify_watches() <= before + 2  # the tree's root at most, not its 21 folders


def test_start_skips_missing_roots_and_runs_once(tmp_path):
    present = tmp_path / "present"
    present.mkdir()
    watcher = LibraryWatcher([tmp_path / "missing", present], lambda change: None)
    with pytest.raises(RuntimeError):
        watcher.watch(present)  # not started
    watcher.start()
    try:
        assert watcher.watched == (present,)
        with pytest.raises(RuntimeError):
            watcher.start()
    finally:
        watcher.stop()
    watcher.stop()  # twice is fine


@pytest.mark.parametrize(
    ("name", "is_directory", "ignored"),
    [
        ("IMG_1.JPG", False, False),
        ("photo.heic.part", False, True),
        ("a.crdownload", False, True),
        (".imagecluster", True, True),
        ("2024.part", True, False),  # folders are judged by hidden names only
        ("readme.md", False, True),
        (".hidden.jpg", False, True),
    ],
)
def test_is_ignored_name(name, is_directory, ignored):
    assert is_ignored_name(name, is_directory=is_directory) is ignored


def _drain(recorder, quiet=1.5):
    """Every change the recorder gets until none came for ``quiet`` seconds."""
    seen = []
    while True:
        try:
            seen.append(recorder.queue.get(timeout=quiet))
        except queue.Empty:
            return seen


def test_a_tree_swapped_in_is_one_change_not_one_per_photo(watched):
    # watchdog walks a folder moved in and queues an event for each thing inside:
    # a tree of 300 links would be 300 changes for the indexer at every Cluster call.
    lib, rec, watcher = watched
    photos = [lib / "sub" / f"p{i:03d}.jpg" for i in range(300)]
    for photo in photos:
        shutil.copy(DATA / "cat.jpg", photo)
    assert rec.until(photos[-1])
    _drain(rec, quiet=0.5)
    write_tree([photos[i:i + 3] for i in range(0, 300, 3)], lib / "clusters")
    write_tree([photos[i:i + 2] for i in range(0, 300, 2)], lib / "clusters")  # swapped in place
    changes = _drain(rec)
    # The tree's folder appearing, and its cluster_with_<N> folders going with the old
    # tree (watchdog still names them by the old path): never a photo's link.
    tree = lib / "clusters"
    assert changes and all(tree in (c.path, c.path.parent) for c in changes), changes
    assert len(changes) <= 12, changes
    # a folder of photos moved in is still walked: its photos are new to the library
    (lib / "trip").mkdir()
    elsewhere = lib.parent / "card"
    elsewhere.mkdir()
    for k in range(3):
        shutil.copy(DATA / "dog.jpg", elsewhere / f"d{k}.jpg")
    os.rename(elsewhere, lib / "trip" / "card")
    changes = _drain(rec)
    assert {lib / "trip" / "card" / f"d{k}.jpg" for k in range(3)} <= {c.path for c in changes}
