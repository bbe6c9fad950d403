"""The store's matrices mapped from its snapshot file, and kept out of resident memory on request.

Real files; resident memory is read from ``/proc/self/smaps`` for the one
mapping that holds a matrix, so other allocations of the test process do not
matter.
"""

import logging
import pickle
import subprocess
import sys

import numpy as np
import pytest

from imagecluster import store as store_module
from imagecluster._mapped import _malloc_trim, file_backed_empty, mapping_of, release, trim_heap
from imagecluster.store import Entry, Store

DIM = 64
ROWS = 2000  # 250 KB of float16: many pages


def items(n, *, start=0):
    rng = np.random.default_rng(start)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [(f"d/{i:05d}.jpg", 100 + i, 10_000 + i, vectors[i - start]) for i in range(start, start + n)]


def snapshot(lib):
    return lib / ".imagecluster" / "fingerprints.pk"


def resident_kb(array):
    """Resident kB of the mapping (VMA) that holds ``array``'s first byte."""
    address = array.ctypes.data
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                low, high = (int(x, 16) for x in head[0].split("-"))
                inside = low <= address < high
            elif inside and head[0] == "Rss:":
                return int(head[1])
    raise AssertionError("no mapping holds the array")


@pytest.fixture
def big_library(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(ROWS))
    store.compact()
    return tmp_path


def test_a_loaded_matrix_is_the_snapshot_file_mapped_read_only(big_library):
    store = Store(big_library)
    paths, matrix, _ = store.view("m")
    assert mapping_of(matrix) is not None and not matrix.flags.writeable
    assert len(paths) == ROWS
    by_path = {p: v for p, _, _, v in items(ROWS)}
    np.testing.assert_array_equal(matrix[5], np.float16(by_path[paths[5]]))


def test_changes_copy_the_mapped_matrix_and_views_keep_what_they_showed(big_library):
    store = Store(big_library)
    paths, before, _ = store.view("m")
    kept = before.copy()
    store.put("m", items(1, start=ROWS))  # appends: a copy with room to grow
    store.remove([paths[0]])  # moves the last row into row 0
    np.testing.assert_array_equal(before, kept)
    after = Store(big_library)
    assert len(after.entries("m")) == ROWS and paths[0] not in after.entries("m")
    assert store.fingerprints("m")[1].tobytes() == after.fingerprints("m")[1].tobytes()


def test_a_version_1_store_is_read_and_rewritten_as_version_2(tmp_path):
    """Stores written before the matrices moved out of the pickle: the matrix inline as ``data``."""
    folder = tmp_path / ".imagecluster"
    folder.mkdir()
    vectors = np.float16([[0.5, -0.25], [1.0, 0.0], [0.0, 1.0]])
    model = {"dim": 2, "dtype": "float16", "paths": ["a.jpg", "b.jpg", "c.jpg"], "sizes": [1, 2, 3],
             "mtimes": [4, 5, 6], "data": vectors.astype("<f2").tobytes()}
    snapshot(tmp_path).write_bytes(pickle.dumps(
        {"format": "imagecluster-store", "version": 1, "token": b"t", "models": {"m": model},
         "failed": {"m": {"paths": ["bad.jpg"], "sizes": [7], "mtimes": [8], "reasons": ["truncated"]}}},
        protocol=5))
    store = Store(tmp_path)
    store.put("m", [("d.jpg", 9, 10, np.float32([0.6, 0.8]))])
    before = store.fingerprints("m"), store.entries("m"), store.unreadable("m")
    store.compact()
    header = pickle.loads(snapshot(tmp_path).read_bytes())
    assert header["version"] == 2 and "data" not in header["models"]["m"]
    again = Store(tmp_path)
    assert again.entries("m") == before[1] and again.unreadable("m") == before[2]
    assert again.fingerprints("m")[0] == before[0][0] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    np.testing.assert_array_equal(again.fingerprints("m")[1], before[0][1])
    assert again.entries("m")["a.jpg"] == Entry(1, 4)


def test_several_models_each_in_their_own_aligned_region(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(3))
    store.put("n", [(p, s, t, v[:5]) for p, s, t, v in items(7, start=50)])
    expected = {name: store.fingerprints(name) for name in ("m", "n")}
    store.compact()
    header = pickle.loads(snapshot(tmp_path).read_bytes())
    assert header["models"]["m"]["offset"] == 0 and header["models"]["n"]["offset"] == 4096
    again = Store(tmp_path)
    for name, (paths, fps) in expected.items():
        assert again.fingerprints(name)[0] == paths
        np.testing.assert_array_equal(again.fingerprints(name)[1], fps)


@pytest.mark.parametrize("damage", ["cut in the matrix", "offset past the end", "negative offset", "non-finite"])
def test_a_damaged_matrix_region_sets_the_store_aside(big_library, damage, caplog):
    data = bytearray(snapshot(big_library).read_bytes())
    header = pickle.loads(bytes(data))
    start = len(data) - ROWS * DIM * 2
    if damage == "cut in the matrix":
        data = data[: start + 1000]
    elif damage == "non-finite":
        data[start + 2 * 77 : start + 2 * 78] = np.float16(np.inf).tobytes()
    else:
        header["models"]["m"]["offset"] = 4096 if damage == "offset past the end" else -4096
        blob = pickle.dumps(header, protocol=5)
        assert -(-len(blob) // 4096) * 4096 == start  # the same layout, another offset
        data = blob + data[len(blob) :]
    snapshot(big_library).write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        store = Store(big_library)
        assert store.models() == []  # read without a crash (no read past the end of the file)
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert list((big_library / ".imagecluster").glob("damaged-*/fingerprints.pk"))


def test_release_memory_drops_the_snapshot_pages_and_they_read_back(big_library):
    store = Store(big_library)
    _, matrix, _ = store.view("m")
    total = float(matrix.astype(np.float32).sum())  # every page read
    assert resident_kb(matrix) >= ROWS * DIM * 2 // 1024 - 4
    store.release_memory()
    assert resident_kb(matrix) == 0
    assert float(matrix.astype(np.float32).sum()) == total


def test_a_file_backed_store_keeps_its_changed_matrix_in_a_file_and_loses_nothing_on_release(
        big_library, monkeypatch):
    from imagecluster import _store_matrix

    monkeypatch.setattr(store_module, "FILE_BACKED_MIN_BYTES", 0)
    monkeypatch.setattr(_store_matrix, "MAX_DIRTY", 0)
    store = Store(big_library, file_backed=True)
    _, loaded, _ = store.view("m")
    assert resident_kb(loaded) == 0  # checked at loading, then released
    path, size, mtime, vector = items(1)[0]
    store.put("m", [(path, size + 1, mtime, -vector)])  # too many changed rows: a copy, in an unlinked temporary file
    store.put("m", items(3, start=ROWS))
    _, changed, _ = store.view("m")
    assert mapping_of(changed) is not None and mapping_of(changed) is not mapping_of(loaded)
    assert resident_kb(changed) > 0
    expected = store.fingerprints("m")
    store.release_memory()
    assert resident_kb(changed) == 0
    assert store.fingerprints("m")[1].tobytes() == expected[1].tobytes()  # the written rows were kept
    assert Store(big_library).fingerprints("m")[1].tobytes() == expected[1].tobytes()
    assert sorted(p.name for p in (big_library / ".imagecluster").iterdir()) == [
        "fingerprints.pk", "journal.pk", "lock"]  # the temporary file has no name
    store.compact()  # the same content, mapped from the new snapshot: the temporary file is let go
    _, compacted, _ = store.view("m")
    assert mapping_of(compacted) is not mapping_of(changed) and not compacted.flags.writeable


def test_a_file_backed_store_loaded_with_puts_in_its_journal_is_not_left_resident(big_library, monkeypatch):
    monkeypatch.setattr(store_module, "FILE_BACKED_MIN_BYTES", 0)
    writer = Store(big_library)
    writer.put("m", items(2, start=ROWS))  # in the journal: replayed into the spare rows
    writer.put("m", [(p, s + 1, t, -v) for p, s, t, v in items(1)])  # and a changed row, in place
    store = Store(big_library, file_backed=True)
    _, matrix, _ = store.view("m")
    assert len(matrix) == ROWS + 2 and mapping_of(matrix) is not None
    assert resident_kb(matrix) == 8  # the changed row's page and the one the appended rows start in: private
    assert store.fingerprints("m")[1].tobytes() == writer.fingerprints("m")[1].tobytes()


def test_new_photos_after_loading_take_spare_rows_without_a_copy(big_library):
    before = snapshot(big_library).read_bytes()
    store = Store(big_library, file_backed=True)
    store.entries("m")  # loads it (hands out no view)
    m = store._state.models["m"]
    loaded = m.matrix
    store.put("m", items(5, start=ROWS))
    store.remove([f"d/{ROWS + 1:05d}.jpg"])  # an appended row, and no view shows it: changed in place
    assert m.matrix is loaded and m.frozen == ROWS
    _, shown, _ = store.view("m")
    kept = shown.copy()
    store.put("m", items(1, start=ROWS + 5))  # after the rows the view shows: still no copy
    assert m.matrix is loaded
    np.testing.assert_array_equal(shown, kept)
    written = items(ROWS) + items(5, start=ROWS) + items(1, start=ROWS + 5)
    expected = {p: np.float16(v) for p, _, _, v in written if p != f"d/{ROWS + 1:05d}.jpg"}
    store.release_memory()  # must keep the appended rows: they are in no file
    assert resident_kb(loaded) == 4  # the snapshot's pages were released, but the one the appended rows start in
    paths, matrix = store.fingerprints("m")
    np.testing.assert_array_equal(matrix, np.float32([expected[p] for p in paths]))
    assert snapshot(big_library).read_bytes() == before  # private: the snapshot file never changes
    reread = Store(big_library)
    assert reread.fingerprints("m")[1].tobytes() == matrix.tobytes()


def test_appending_beyond_the_spare_rows_copies(big_library):
    store = Store(big_library)
    _, loaded, _ = store.view("m")
    m = store._state.models["m"]
    spare = len(m.matrix) - ROWS
    assert 16 <= spare <= ROWS // 8 + 16
    store.put("m", items(spare, start=ROWS))
    assert mapping_of(store.view("m").matrix) is mapping_of(loaded)
    store.put("m", items(1, start=ROWS + spare))
    assert m.frozen == 0 and mapping_of(m.matrix) is None
    written = items(ROWS) + items(spare, start=ROWS) + items(1, start=ROWS + spare)
    expected = {p: np.float16(v) for p, _, _, v in written}
    paths, matrix = store.fingerprints("m")
    np.testing.assert_array_equal(matrix, np.float32([expected[p] for p in paths]))


def test_a_loaded_row_changes_in_private_memory_and_views_keep_what_they_showed(big_library):
    before = snapshot(big_library).read_bytes()
    store = Store(big_library)
    _, loaded, _ = store.view("m")
    kept = loaded.copy()
    path, size, mtime, vector = items(1)[0]
    store.put("m", [(path, size, mtime + 1, -vector)])  # a view shows the row: the snapshot is mapped again
    m = store._state.models["m"]
    assert m.frozen == ROWS and m.dirty == {0}
    assert mapping_of(m.matrix) is not None and mapping_of(m.matrix) is not mapping_of(loaded)
    store.remove(["d/00005.jpg"])  # no view since: in place, the last row moved into row 5
    assert m.dirty == {0, 5} and m.used == ROWS - 1
    np.testing.assert_array_equal(loaded, kept)
    np.testing.assert_array_equal(store.fingerprints("m", [path])[1][0], -np.float16(vector))
    store.release_memory()  # keeps the two changed rows' pages
    reread = Store(big_library).fingerprints("m")
    assert store.fingerprints("m")[1].tobytes() == reread[1].tobytes()
    assert snapshot(big_library).read_bytes() == before


def test_a_new_photo_after_removing_the_last_rows_takes_a_loaded_rows_place(big_library):
    """The place of a removed last row is a loaded row's: written in private memory, kept when memory is released."""
    store = Store(big_library)
    store.remove([f"d/{i:05d}.jpg" for i in range(ROWS - 1, ROWS - 101, -1)])  # the last first: nothing moves
    store.put("m", items(1, start=ROWS))
    m = store._state.models["m"]
    assert m.frozen == ROWS and m.dirty == {ROWS - 100}
    store.release_memory()
    expected = np.float16(items(1, start=ROWS)[0][3])
    np.testing.assert_array_equal(store.fingerprints("m", [f"d/{ROWS:05d}.jpg"])[1][0], expected)


@pytest.mark.parametrize("last", ["appended", "loaded"])
def test_a_new_photo_in_a_removed_last_rows_place_leaves_a_held_view_alone(big_library, last):
    store = Store(big_library)
    if last == "appended":
        store.put("m", items(2, start=ROWS))
    view = store.view("m")
    shown = view.matrix.copy()
    store.remove([view.paths[-1]])  # the last row: nothing moves, the place is free
    store.put("m", items(1, start=ROWS + 10))  # goes into that place
    np.testing.assert_array_equal(view.matrix, shown)
    assert len(store.fingerprints("m")[0]) == len(view.paths)


@pytest.mark.parametrize("seed", range(6))
def test_random_changes_on_a_loaded_store_match_a_plain_dict(big_library, monkeypatch, seed):
    """Puts, removes, moves, views held, memory released, compactions: the store always holds what a dict would.

    ``MAX_DIRTY`` is small, so the copy made after too many changed rows happens in the middle.
    """
    from imagecluster import _store_matrix

    monkeypatch.setattr(_store_matrix, "MAX_DIRTY", 40)
    rng = np.random.default_rng(seed)
    truth = {p: np.float16(v) for p, _, _, v in items(ROWS)}
    store = Store(big_library, file_backed=bool(seed % 2))
    store.entries("m")  # loads it
    held = []  # views handed out, with what they showed then
    fresh = iter(range(10_000, 20_000))
    for step in range(400):
        op = rng.choice(["new", "update", "remove", "move", "view", "release", "check"],
                        p=[.25, .2, .25, .1, .1, .05, .05])
        paths = list(truth)
        if op == "new" or (op != "new" and not paths):
            k = next(fresh)
            v = rng.standard_normal(DIM).astype(np.float32)
            store.put("m", [(f"n/{k}.jpg", k, k, v)])
            truth[f"n/{k}.jpg"] = np.float16(v)
        elif op == "update":
            p = paths[rng.integers(len(paths))]
            v = rng.standard_normal(DIM).astype(np.float32)
            store.put("m", [(p, 1, step, v)])
            truth[p] = np.float16(v)
        elif op == "remove":
            picked = rng.choice(len(paths), min(len(paths), int(rng.integers(1, 4))), replace=False)
            victims = [paths[i] for i in picked]
            if rng.random() < 0.5:  # the last rows first: no row moves into a hole
                victims = sorted(victims, key=store._state.models["m"].rows.get, reverse=True)
            store.remove(victims)
            for p in victims:
                del truth[p]
        elif op == "move":
            p, new = paths[rng.integers(len(paths))], f"moved/{next(fresh)}.jpg"
            store.move(p, new)
            truth[new] = truth.pop(p)
        elif op == "view":
            view = store.view("m")
            held.append((view.matrix, view.matrix.copy()))
        elif op == "release":
            store.release_memory()
        if op == "check" or step % 50 == 49:
            paths, matrix = store.fingerprints("m")
            assert sorted(truth) == paths
            np.testing.assert_array_equal(matrix, np.float32([truth[p] for p in paths]))
            for shown, copy in held:
                np.testing.assert_array_equal(shown, copy)
            if step % 100 == 99:
                store.compact()
    store.release_memory()
    again = Store(big_library)
    paths, matrix = again.fingerprints("m")
    assert sorted(truth) == paths
    np.testing.assert_array_equal(matrix, np.float32([truth[p] for p in paths]))


def test_without_spare_rows_the_first_new_photo_copies_as_before(big_library, monkeypatch):
    from imagecluster import _mapped

    monkeypatch.setattr(_mapped, "_libc_mmap", lambda: None)
    store = Store(big_library)
    _, loaded, _ = store.view("m")
    assert len(store._state.models["m"].matrix) == ROWS
    store.put("m", items(1, start=ROWS))
    assert mapping_of(store.view("m").matrix) is None and store._state.models["m"].frozen == 0
    assert len(store.fingerprints("m")[0]) == ROWS + 1


def test_release_keeps_private_pages_only_when_told(tmp_path):
    """Why ``keep``: dropping a private page loses what was written to it (it reads back from the file)."""
    from imagecluster._mapped import map_region_growable

    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 64)  # 4 pages
    with open(path, "rb") as f:
        grown = map_region_growable(f.fileno(), 4096, 3 * 4096 - 100, 8192)
    array = np.frombuffer(grown, np.uint8)
    array[3 * 4096 - 100 :] = 7
    array[5000] = 9  # the file's second page, written
    release(array, keep=[(5000, 5001), (3 * 4096 - 100, len(array))])
    assert (array[3 * 4096 - 100 :] == 7).all() and array[5000] == 9
    assert array[:10].tolist() == list(range(10)) and array[-200:-100].tolist() == [7] * 100
    release(array)
    assert (array[3 * 4096 :] == 0).all() and array[5000] == 5000 % 256  # lost: as the file has them


@pytest.mark.parametrize("store_before", ["none", "journal only", "damaged"])
def test_a_file_backed_store_started_without_a_snapshot_grows_in_a_file(tmp_path, monkeypatch, store_before):
    monkeypatch.setattr(store_module, "FILE_BACKED_MIN_BYTES", 0)
    if store_before == "journal only":
        Store(tmp_path).put("m", items(3))
    elif store_before == "damaged":
        snapshot(tmp_path).parent.mkdir()
        snapshot(tmp_path).write_bytes(b"not a store")
    store = Store(tmp_path, file_backed=True)
    store.put("m", items(5, start=3))
    assert mapping_of(store.view("m").matrix) is not None


def test_without_file_backed_a_copied_matrix_is_ordinary_memory(big_library, monkeypatch):
    from imagecluster import _store_matrix

    monkeypatch.setattr(_store_matrix, "MAX_DIRTY", 0)  # the first change of a loaded row copies
    store = Store(big_library)
    store.put("m", [(p, s, t + 1, -v) for p, s, t, v in items(1)])
    assert mapping_of(store.view("m").matrix) is None
    store.release_memory()  # does nothing to ordinary memory
    assert len(store.fingerprints("m")[0]) == ROWS


def test_a_temporary_file_that_cannot_be_made_falls_back_to_memory(tmp_path):
    assert file_backed_empty((4, 4), np.float16, tmp_path / "missing") is None
    assert file_backed_empty((0, 4), np.float16, tmp_path) is None
    matrix = file_backed_empty((4, 4), np.float16, tmp_path)
    matrix[:] = 1
    release(matrix)
    assert matrix.sum() == 16 and list(tmp_path.iterdir()) == []


def test_a_file_system_that_cannot_map_files_is_read_instead(big_library, monkeypatch):
    from imagecluster import _mapped

    def refuse(fd, start, length):
        raise OSError(19, "No such device")

    expected = Store(big_library).fingerprints("m")
    monkeypatch.setattr(_mapped, "map_region", refuse)
    store = Store(big_library)
    assert mapping_of(store.view("m").matrix) is None
    assert store.fingerprints("m")[1].tobytes() == expected[1].tobytes()


def test_trim_heap_gives_freed_blocks_back(tmp_path):
    if _malloc_trim() is None:
        pytest.skip("not glibc: no malloc_trim")
    script = (
        "import numpy as np\n"
        "from imagecluster._mapped import trim_heap\n"
        "def anon():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon'))\n"
        "blocks = [np.ones(12_000) for _ in range(2000)]  # 96 kB each: heap blocks, below mmap's threshold\n"
        "last = blocks[-1]\n"
        "del blocks  # 190 MB freed below the heap's top, which the last block holds\n"
        "before = anon()\n"
        "trim_heap()\n"
        "print(before, anon())\n"
    )
    before, after = map(int, subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                            check=True).stdout.split())
    assert before - after > 150_000, (before, after)  # kB
    trim_heap()  # and in this process, harmless
