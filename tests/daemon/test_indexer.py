"""The indexer: real folders, real inotify, a real worker process with the real lite0 model.

Most tests share one warm worker (``Indexer(worker=...)``) to keep the run
short; the first test lets the indexer own and close its worker. Whether a
photo was fingerprinted again is checked by planting a marker vector in the
store (as another process could): a photo that keeps its marker was not
recomputed.
"""

import asyncio
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imagecluster import InvalidParameter, NotAnImage, NotInLibrary, PhotoNotFound, Store, write_tree
from imagecluster.daemon import Indexer, InferenceWorker
from imagecluster.images import STORE_DIRNAME

from _support.poll import until

DATA = Path(__file__).parent.parent / "data"
MODEL = "lite0"
TIMEOUT = 60.0  # an upper bound for waits, never a measurement


@pytest.fixture(scope="module")
def worker():
    """One warm worker for the module (the model loads once)."""
    shared = InferenceWorker(MODEL, idle_timeout=600, batch_size=8)
    yield shared
    asyncio.run(shared.close())


def indexer_for(libraries, worker=None, **options):
    settings = dict(settle_seconds=0.2, rescan_seconds=0.3, batch_size=8, worker=worker)
    settings.update(options)
    return Indexer(libraries, **settings)


async def eventually(predicate, what, timeout=TIMEOUT):
    """Await until ``predicate()`` is true, the event loop running meanwhile (the shared polling helper)."""
    await until(lambda: asyncio.sleep(0, predicate()), timeout, what)


def entries(library):
    """What the library's store holds, read as another process would."""
    return Store(library).entries(MODEL)


def stored(library, rel):
    paths, vectors = Store(library).fingerprints(MODEL, [rel])
    return vectors[0] if paths else None


def plant_marker(library, rel, seed):
    """Replace a photo's stored fingerprint by a random unit vector, keeping its (size, mtime)."""
    entry = entries(library)[rel]
    v = np.random.default_rng(seed).normal(size=1280).astype(np.float32)
    v /= np.linalg.norm(v)
    Store(library).put(MODEL, [(rel, entry.size, entry.mtime_ns, v)])
    return stored(library, rel)


def copy_photo(path, source="cat.jpg"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / source, path)
    return path


def test_startup_reconciles_what_changed_while_stopped(make_library, worker, no_tensorflow_here):
    lib = make_library({"a/1.jpg": "cat.jpg", "a/2.jpg": "dog.jpg", "b/3.jpg": "cat.jpg", "b/4.jpg": "dog.jpg"})
    children = set(multiprocessing.active_children())
    changes = []

    async def first_run():
        indexer = indexer_for([lib], worker_idle_seconds=30, on_change=lambda: changes.append(indexer.pending))
        await indexer.start()
        assert indexer.pending == 4 and indexer.state == "indexing"
        await indexer.wait_idle(TIMEOUT)
        assert (indexer.indexed, indexer.pending, indexer.state) == (4, 0, "idle")
        await indexer.stop()

    asyncio.run(first_run())
    assert sorted(entries(lib)) == ["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.jpg"]
    assert changes and changes[-1] == 0
    assert set(multiprocessing.active_children()) == children  # the indexer closed its own worker
    assert os.path.getsize(lib / STORE_DIRNAME / "journal.pk") == 0  # compacted on stop

    markers = {rel: plant_marker(lib, rel, i) for i, rel in enumerate(entries(lib))}
    copy_photo(lib / "a" / "1.jpg", "dog.jpg")  # changed
    (lib / "a" / "2.jpg").unlink()  # deleted
    (lib / "c").mkdir()
    os.rename(lib / "b" / "3.jpg", lib / "c" / "3.jpg")  # moved
    copy_photo(lib / "c" / "5.jpg")  # added

    async def second_run():
        indexer = indexer_for([lib], worker=worker)
        await indexer.start()
        assert indexer.pending == 2  # the changed and the added photo; nothing else
        await indexer.wait_idle(TIMEOUT)
        assert indexer.indexed == 4
        await indexer.stop()

    asyncio.run(second_run())
    assert sorted(entries(lib)) == ["a/1.jpg", "b/4.jpg", "c/3.jpg", "c/5.jpg"]
    np.testing.assert_array_equal(stored(lib, "b/4.jpg"), markers["b/4.jpg"])  # unchanged: not recomputed
    np.testing.assert_array_equal(stored(lib, "c/3.jpg"), markers["b/3.jpg"])  # moved: kept its fingerprint
    assert not np.array_equal(stored(lib, "a/1.jpg"), markers["a/1.jpg"])  # changed: recomputed
    # no_tensorflow_here: the model ran in the worker only


def test_follows_photos_added_moved_and_deleted(tmp_path, worker):
    lib = tmp_path / "photos"
    (lib / "sub").mkdir(parents=True)

    async def main():
        indexer = indexer_for([lib], worker)
        await indexer.start()
        try:
            copy_photo(lib / "new.jpg")
            await eventually(lambda: "new.jpg" in entries(lib), "a new photo stored")
            assert indexer.indexed == 1
            marker = plant_marker(lib, "new.jpg", 1)

            os.rename(lib / "new.jpg", lib / "sub" / "moved.jpg")
            await eventually(lambda: list(entries(lib)) == ["sub/moved.jpg"], "the move followed")
            np.testing.assert_array_equal(stored(lib, "sub/moved.jpg"), marker)  # not recomputed

            (lib / "sub" / "moved.jpg").unlink()
            await eventually(lambda: not entries(lib), "the deleted photo forgotten")
            await indexer.wait_idle(TIMEOUT)
            assert (indexer.indexed, indexer.pending) == (0, 0)
        finally:
            await indexer.stop()

    asyncio.run(main())


# watchdog warns, harmlessly, when a watched folder moves into a folder it does not watch yet
@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")
def test_a_move_seen_as_deletion_and_creation_keeps_the_fingerprint(make_library, worker):
    lib = make_library({"a.jpg": "cat.jpg", "b.jpg": "dog.jpg", "trip/c.jpg": "cat.jpg", "trip/d.jpg": "dog.jpg"})
    names = ["a.jpg", "b.jpg", "trip/c.jpg", "trip/d.jpg"]

    async def main():
        # settle_seconds above watchdog's 0.5 s wait for the second half of a move
        indexer = indexer_for([lib], worker, settle_seconds=1.0)
        await indexer.start()
        try:
            await indexer.wait_idle(TIMEOUT)
            markers = {rel: plant_marker(lib, rel, i) for i, rel in enumerate(names)}
            # into a folder made a moment before: inotify sees a creation, then (0.5 s later) a deletion
            os.mkdir(lib / "new")
            os.rename(lib / "a.jpg", lib / "new" / "a.jpg")
            os.rename(lib / "trip", lib / "new" / "trip")
            # deleted first, then the same file (name, size, mtime) appears elsewhere, as a cut and paste
            data = (lib / "b.jpg").read_bytes()
            mtime = (lib / "b.jpg").stat().st_mtime_ns
            (lib / "b.jpg").unlink()
            await eventually(lambda: indexer.indexed == 3, "the deletion seen")
            (lib / "pasted").mkdir()
            (lib / "pasted" / "b.jpg").write_bytes(data)
            os.utime(lib / "pasted" / "b.jpg", ns=(mtime, mtime))
            moved = ["new/a.jpg", "new/trip/c.jpg", "new/trip/d.jpg", "pasted/b.jpg"]
            await eventually(lambda: sorted(entries(lib)) == moved, "the moves followed")
            await indexer.wait_idle(TIMEOUT)
            for old, new in zip(names, ["new/a.jpg", "pasted/b.jpg", "new/trip/c.jpg", "new/trip/d.jpg"]):
                np.testing.assert_array_equal(stored(lib, new), markers[old])
        finally:
            await indexer.stop()

    asyncio.run(main())


def test_follows_folders_moved_in_within_and_out(tmp_path, worker):
    lib = tmp_path / "photos"
    lib.mkdir()
    (lib / "2024").mkdir()  # watched before a folder moves into it (see the test above for the other case)
    trip = tmp_path / "card" / "trip"
    for i in range(3):
        copy_photo(trip / f"{i}.jpg", ("cat.jpg", "dog.jpg")[i % 2])

    async def main():
        indexer = indexer_for([lib], worker)
        await indexer.start()
        try:
            os.rename(trip, lib / "trip")  # moved in
            wanted = ["trip/0.jpg", "trip/1.jpg", "trip/2.jpg"]
            await eventually(lambda: sorted(entries(lib)) == wanted, "a folder moved in indexed")
            markers = {rel: plant_marker(lib, rel, i) for i, rel in enumerate(wanted)}

            os.rename(lib / "trip", lib / "2024" / "trip")  # moved within
            moved = [f"2024/{rel}" for rel in wanted]
            await eventually(lambda: sorted(entries(lib)) == moved, "a folder moved within followed")
            await indexer.wait_idle(TIMEOUT)
            for rel in wanted:
                np.testing.assert_array_equal(stored(lib, f"2024/{rel}"), markers[rel])

            os.rename(lib / "2024", tmp_path / "elsewhere")  # moved out
            await eventually(lambda: not entries(lib), "a folder moved out forgotten")
        finally:
            await indexer.stop()

    asyncio.run(main())


def test_a_growing_file_is_fingerprinted_only_once_settled(tmp_path, worker):
    lib = tmp_path / "photos"
    lib.mkdir()
    photo = lib / "download.jpg"
    data = (DATA / "dog.jpg").read_bytes()

    async def main():
        indexer = indexer_for([lib], worker, settle_seconds=0.6)
        await indexer.start()
        try:
            # A whole JPEG first, so the file decodes at every moment; then more bytes keep coming.
            photo.write_bytes(data)
            for _ in range(20):
                await asyncio.sleep(0.05)
                with open(photo, "ab") as f:
                    f.write(b"\0" * 4096)
                assert "download.jpg" not in entries(lib), "fingerprinted while still growing"
            await eventually(lambda: "download.jpg" in entries(lib), "the settled photo stored")
            assert entries(lib)["download.jpg"].size == photo.stat().st_size == len(data) + 20 * 4096
        finally:
            await indexer.stop()

    asyncio.run(main())


def test_partial_downloads_hidden_files_store_and_trees_are_not_indexed(make_library, tmp_path, worker):
    lib = make_library({"cat.jpg": "cat.jpg", "dog.jpg": "dog.jpg"})
    out = lib / "exported"

    async def main():
        indexer = indexer_for([lib], worker, exclude=[out])
        await indexer.start()
        try:
            await indexer.wait_idle(TIMEOUT)
            write_tree([[lib / "cat.jpg", lib / "dog.jpg"]], lib / "clusters")
            copy_photo(lib / "clusters" / "cluster_with_2" / "cluster_0" / "real.jpg")  # a file in a tree
            copy_photo(lib / STORE_DIRNAME / "x.jpg")
            copy_photo(out / "y.jpg")
            for name in ("x.jpg.part", ".hidden.jpg", "z.jpg.crdownload"):
                copy_photo(lib / name)
            (lib / "notes.jpg.txt").write_text("not a photo")
            copy_photo(lib / "sync.jpg")  # written last: once it is stored, the others were seen
            await eventually(lambda: "sync.jpg" in entries(lib), "the last photo stored")
            await indexer.wait_idle(TIMEOUT)
            assert sorted(entries(lib)) == ["cat.jpg", "dog.jpg", "sync.jpg"]

            os.rename(lib / "x.jpg.part", lib / "x.jpg")  # the download finished
            await eventually(lambda: "x.jpg" in entries(lib), "the finished download stored")
            (lib / "clusters" / "cluster_with_2" / "cluster_0" / "real.jpg").unlink()
            write_tree([[lib / "x.jpg", lib / "sync.jpg"]], lib / "clusters")  # a tree replaced in place
            os.rename(lib / "sync.jpg", lib / "clusters" / "sync.jpg")  # moved into the tree: gone
            await eventually(lambda: "sync.jpg" not in entries(lib), "a photo moved into the tree forgotten")
            await indexer.wait_idle(TIMEOUT)
            assert sorted(entries(lib)) == ["cat.jpg", "dog.jpg", "x.jpg"]
        finally:
            await indexer.stop()

    asyncio.run(main())


def test_a_library_that_disappears_is_picked_up_again(make_library, tmp_path, worker, caplog):
    lib = make_library({"a.jpg": "cat.jpg", "b.jpg": "dog.jpg"})
    other = tmp_path / "other"
    copy_photo(other / "c.jpg")
    late = tmp_path / "late"  # not there at start (as an unmounted disk)

    async def main():
        indexer = indexer_for([lib, other, late], worker)
        await indexer.start()
        try:
            assert indexer.available_libraries == [lib, other]
            await indexer.wait_idle(TIMEOUT)
            assert indexer.indexed == 3

            shutil.rmtree(lib)
            await eventually(lambda: indexer.available_libraries == [other], "the removed library dropped")
            assert indexer.indexed == 1
            copy_photo(other / "d.jpg", "dog.jpg")  # the rest keeps working
            await eventually(lambda: "d.jpg" in entries(other), "a photo in another library stored")

            make_library({"a.jpg": "cat.jpg", "e.jpg": "dog.jpg"}, root=lib)
            copy_photo(late / "f.jpg")
            await eventually(lambda: sorted(entries(lib)) == ["a.jpg", "e.jpg"], "the library re-indexed")
            await eventually(lambda: list(entries(late)) == ["f.jpg"], "the late library indexed")
            assert indexer.available_libraries == [lib, other, late]
            await indexer.wait_idle(TIMEOUT)
            assert indexer.indexed == 5
        finally:
            await indexer.stop()

    import logging

    with caplog.at_level(logging.INFO, logger="imagecluster.daemon._indexer"):
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records]
    assert f"library {lib} is available again" in said  # it was there before
    assert f"library {late} is there now" in said and f"library {late} is available again" not in said


def test_resolve_refuses_what_is_not_a_photo_of_a_library(make_library, tmp_path):
    lib = make_library({"a.jpg": "cat.jpg", "sub/b.jpg": "dog.jpg"})
    outside = copy_photo(tmp_path / "outside.jpg")
    (lib / "escape.jpg").symlink_to(outside)
    (lib / "escape_dir").symlink_to(tmp_path)
    (lib / "inside.jpg").symlink_to(lib / "sub" / "b.jpg")
    (lib / "notes.txt").write_text("text")
    copy_photo(lib / STORE_DIRNAME / "x.jpg")
    write_tree([[lib / "a.jpg", lib / "sub" / "b.jpg"]], lib / "clusters")
    copy_photo(lib / "clusters" / "real.jpg")
    indexer = indexer_for([lib])

    assert indexer.resolve(str(lib / "sub" / "b.jpg")) == (lib, "sub/b.jpg")
    assert indexer.resolve(lib / "sub" / ".." / "a.jpg") == (lib, "a.jpg")
    assert indexer.resolve(str(lib / "inside.jpg")) == (lib, "sub/b.jpg")  # a symlink within is its target
    link = next((lib / "clusters").rglob("a.jpg"))
    assert indexer.resolve(str(link)) == (lib, "a.jpg")  # a tree's symlink leads to the photo
    for bad in ("", "a.jpg", "sub/../a.jpg", 42):
        with pytest.raises(InvalidParameter):
            indexer.resolve(bad)
    for escaping in (f"{lib}/../outside.jpg", f"{lib}/sub/../../outside.jpg", f"{lib}/escape.jpg",
                     f"{lib}/escape_dir/outside.jpg", str(outside), "/etc/passwd"):
        with pytest.raises(NotInLibrary):
            indexer.resolve(escaping)
    with pytest.raises(PhotoNotFound):
        indexer.resolve(f"{lib}/missing.jpg")
    not_photos = (lib / "notes.txt", lib / "sub", lib, lib / STORE_DIRNAME / "x.jpg", lib / "clusters" / "real.jpg")
    for not_photo in not_photos:
        with pytest.raises(NotAnImage):
            indexer.resolve(str(not_photo))
    with pytest.raises(NotInLibrary):
        indexer.store(tmp_path)
    assert indexer.store(lib).library == lib


def test_fingerprint_goes_ahead_of_the_queue(tmp_path, worker):
    lib = tmp_path / "photos"
    lib.mkdir()
    copy_photo(lib / "known.jpg")
    (lib / "text.jpg").write_text("not a photo")

    async def main():
        indexer = indexer_for([lib], worker, batch_size=2)
        await indexer.start()
        try:
            await eventually(lambda: "known.jpg" in entries(lib), "the first photo stored")
            marker = plant_marker(lib, "known.jpg", 7)
            vector = await indexer.fingerprint(str(lib / "known.jpg"))
            np.testing.assert_allclose(vector, marker / np.linalg.norm(marker), rtol=1e-6)  # from the store

            for i in range(24):  # a backlog of 12 batches
                copy_photo(lib / "queue" / f"{i:02}.jpg", ("cat.jpg", "dog.jpg")[i % 2])
            await eventually(lambda: indexer.pending >= 24, "the backlog queued")
            target = copy_photo(lib / "wanted.jpg", "dog.jpg")
            vector = await indexer.fingerprint(str(target))
            assert vector.shape == (1280,) and vector.dtype == np.float32
            assert abs(np.linalg.norm(vector) - 1) < 1e-5
            assert "wanted.jpg" in entries(lib) and indexer.pending > 0  # stored ahead of the backlog
            np.testing.assert_array_equal(await indexer.fingerprint(str(target)), vector)

            with pytest.raises(NotAnImage):
                await indexer.fingerprint(str(lib / "text.jpg"))
            await indexer.wait_idle(TIMEOUT)
            assert indexer.indexed == 26
            np.testing.assert_allclose(stored(lib, "wanted.jpg"), vector, rtol=1e-3, atol=1e-4)
        finally:
            await indexer.stop()

    asyncio.run(main())


def test_bad_options_are_refused(tmp_path):
    for kwargs in ({"model": "resnet"}, {"settle_seconds": -1}, {"rescan_seconds": 0}, {"batch_size": 0},
                   {"worker_idle_seconds": float("nan")}, {"on_change": 3}):
        with pytest.raises(InvalidParameter):
            Indexer([tmp_path], **kwargs)
    with pytest.raises(InvalidParameter, match="nested"):
        Indexer([tmp_path, tmp_path / "inner"])
    with pytest.raises(InvalidParameter):
        Indexer([])
    with pytest.raises(InvalidParameter):
        Indexer([tmp_path], model="lite0", worker=InferenceWorker("vgg16"))


def test_a_store_that_cannot_be_written_loses_no_photo(tmp_path, worker, monkeypatch):
    # A full disk refuses the first put: the photo is fingerprinted again after rescan_seconds, not lost.
    from imagecluster import StoreError
    from imagecluster.store import Store as RealStore

    lib = tmp_path / "photos"
    lib.mkdir()
    refusals = []
    real_put = RealStore.put

    def put(self, model, items):
        if not refusals:
            refusals.append(True)
            raise StoreError("cannot write journal.pk: [Errno 28] No space left on device")
        return real_put(self, model, items)

    monkeypatch.setattr(RealStore, "put", put)

    async def main():
        indexer = indexer_for([lib], worker, rescan_seconds=0.5)
        await indexer.start()
        try:
            copy_photo(lib / "new.jpg")
            await eventually(lambda: "new.jpg" in entries(lib), "the photo stored on the second try")
            assert refusals == [True]
            await indexer.wait_idle(TIMEOUT)
            assert (indexer.indexed, indexer.pending) == (1, 0)
        finally:
            await indexer.stop()

    asyncio.run(main())


def test_the_inotify_watch_limit_means_rescans_not_a_blind_daemon(tmp_path, worker, monkeypatch, caplog):
    # inotify_add_watch fails with ENOSPC when fs.inotify.max_user_watches is reached (injected here).
    import errno
    import logging

    from imagecluster.daemon._watch import LibraryWatcher

    def full(self, root):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(LibraryWatcher, "watch", full)
    lib = tmp_path / "photos"
    lib.mkdir()

    async def main():
        indexer = indexer_for([lib], worker, rescan_seconds=0.3)
        with caplog.at_level(logging.WARNING, logger="imagecluster.daemon._indexer"):
            await indexer.start()
        try:
            assert any("cannot watch" in r.getMessage() and "every 0.3 s" in r.getMessage() for r in caplog.records)
            copy_photo(lib / "new.jpg")  # no watch: found by the next rescan
            await eventually(lambda: "new.jpg" in entries(lib), "a new photo found by a rescan")
            (lib / "new.jpg").unlink()
            await eventually(lambda: not entries(lib), "a deleted photo forgotten by a rescan")
        finally:
            await indexer.stop()

    asyncio.run(main())


def test_a_callers_path_is_never_resolved_or_stated_in_the_event_loop(tmp_path, worker, monkeypatch):
    # On a hung network mount realpath and stat wait in the kernel: in the loop they would freeze every caller.
    import threading

    lib = tmp_path / "photos"
    lib.mkdir()
    asked = lib / "asked.jpg"
    copy_photo(asked)
    in_loop = []
    real = {"realpath": os.path.realpath, "stat": os.stat, "lstat": os.lstat}

    def spy(name):
        def call(path, *args, **kwargs):
            if threading.current_thread() is threading.main_thread() and os.fspath(path).endswith("asked.jpg"):
                in_loop.append(name)
            return real[name](path, *args, **kwargs)
        return call

    monkeypatch.setattr(os.path, "realpath", spy("realpath"))
    monkeypatch.setattr(os, "stat", spy("stat"))
    monkeypatch.setattr(os, "lstat", spy("lstat"))

    async def main():
        indexer = indexer_for([lib], worker)
        await indexer.start()
        try:
            await indexer.wait_idle(TIMEOUT)
            in_loop.clear()  # from here on only the caller's request
            vector = await indexer.fingerprint(str(asked))
            assert vector.shape == (1280,)
        finally:
            await indexer.stop()

    asyncio.run(main())
    assert in_loop == []
