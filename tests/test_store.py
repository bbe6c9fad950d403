"""Tests for imagecluster.store: real files in tmp_path, no mocks."""

import logging
import math
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from imagecluster import InvalidParameter, LibraryNotFound, StoreCorrupt, StoreLocked
from imagecluster.store import Entry, Store, Unreadable

DIM = 8


def vec(seed, dim=DIM):
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def items(n, *, start=0, dim=DIM, prefix="a"):
    return [(f"{prefix}/{i:04d}.jpg", 100 + i, 10_000 + i, vec(i, dim)) for i in range(start, start + n)]


def as16(v):
    return np.asarray(v, np.float16).astype(np.float32)


def state(store):
    """Everything a store holds, for comparisons."""
    out = {}
    for model in store.models():
        paths, fps = store.fingerprints(model)
        out[model] = (store.entries(model), paths, fps.tobytes())
    return out


def journal(lib):
    return lib / ".imagecluster" / "journal.pk"


def snapshot(lib):
    return lib / ".imagecluster" / "fingerprints.pk"


def records(lib):
    """Decode the journal by hand (also checks its documented framing)."""
    data, pos, out = journal(lib).read_bytes(), 0, []
    while pos < len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        payload = data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(payload) == crc
        out.append(pickle.loads(payload))
        pos += 8 + length
    return out


def frame(obj):
    payload = pickle.dumps(obj, protocol=5)
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


class Evil:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


# ------------------------------------------------------------------ basics


def test_round_trip_in_new_store_object(tmp_path):
    batch = items(3)
    Store(tmp_path).put("m", batch)
    fresh = Store(tmp_path)
    assert fresh.entries("m") == {p: Entry(s, t) for p, s, t, _ in batch}
    paths, fps = fresh.fingerprints("m")
    assert paths == [p for p, *_ in batch]
    assert fps.dtype == np.float32 and fps.shape == (3, DIM)
    np.testing.assert_array_equal(fps, np.stack([as16(v) for *_, v in batch]))
    assert fresh.models() == ["m"] and len(fresh) == 3


def test_float32_store_keeps_full_precision(tmp_path):
    batch = items(2)
    Store(tmp_path, dtype="float32").put("m", batch)
    _, fps = Store(tmp_path, dtype="float32").fingerprints("m")
    np.testing.assert_array_equal(fps, np.stack([v for *_, v in batch]))
    _, fps16 = Store(tmp_path).fingerprints("m")  # a float16 store reads it too
    np.testing.assert_array_equal(fps16, np.stack([as16(v) for *_, v in batch]))


def test_put_is_one_small_append_with_documented_records(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(5))
    store.compact()
    snap_stat = snapshot(tmp_path).stat()
    store.put("m", items(1, start=7))
    assert journal(tmp_path).stat().st_size < 200
    assert snapshot(tmp_path).stat().st_mtime_ns == snap_stat.st_mtime_ns
    (kind, _), put = records(tmp_path)
    assert kind == "base"
    assert put[:6] == ("put", "m", "a/0007.jpg", 107, 10_007, "float16")
    np.testing.assert_array_equal(np.frombuffer(put[6], "<f2"), np.float16(vec(7)))


def test_snapshot_holds_builtins_only(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(4))
    store.compact()
    data = snapshot(tmp_path).read_bytes()
    ops = {op.name for op, _, _ in pickletools.genops(data)}  # the header, up to its STOP
    assert not ops & {"GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}
    obj = pickle.loads(data)  # the header: the matrix follows it, raw, from the next multiple of 4096
    model = obj["models"]["m"]
    assert (obj["format"], obj["version"], model["dim"], model["dtype"]) == ("imagecluster-store", 2, DIM, "float16")
    assert model["paths"] == sorted(model["paths"]) and model["offset"] == 0
    start = -(-len(pickle.dumps(obj, protocol=5)) // 4096) * 4096
    assert len(data) == start + 4 * DIM * 2
    raw = np.frombuffer(data[start:], "<f2").reshape(4, DIM)
    np.testing.assert_array_equal(raw, np.float16([vec(i) for i in range(4)]))


def test_fingerprints_subset_keeps_order_and_skips_unknown(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(4))
    paths, fps = store.fingerprints("m", ["a/0002.jpg", "nope.jpg", "./a/0000.jpg"])
    assert paths == ["a/0002.jpg", "a/0000.jpg"]
    np.testing.assert_array_equal(fps, np.stack([as16(vec(2)), as16(vec(0))]))
    paths, fps = store.fingerprints("other")
    assert paths == [] and fps.shape == (0, 0) and fps.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_fingerprints_of_many_rows_in_and_out_of_row_order(tmp_path, dtype):
    """Thousands of rows are converted in chunks on every core: each row must land in its place."""
    n = 5000  # several chunks of 1024 rows, the last one short
    store = Store(tmp_path, dtype=dtype)
    rng = np.random.default_rng(7)
    vectors = {f"p/{i:05d}.jpg": rng.standard_normal(DIM).astype(np.float32) for i in range(n)}
    order = list(vectors)
    rng.shuffle(order)  # rows in another order than the sorted paths
    store.put("m", [(p, 1, 1, vectors[p]) for p in order])
    store.remove(order[:300:3])  # the last rows move into the removed ones' places
    kept = sorted(set(vectors) - set(order[:300:3]))
    cast = (lambda v: as16(v)) if dtype == "float16" else (lambda v: v)

    paths, fps = store.fingerprints("m")  # sorted: out of row order
    assert paths == kept and fps.dtype == np.float32 and fps.flags.writeable
    np.testing.assert_array_equal(fps, np.stack([cast(vectors[p]) for p in kept]))

    in_rows = store.view("m").paths  # row order: converted without gathering
    paths, fps = store.fingerprints("m", in_rows)
    assert paths == in_rows
    np.testing.assert_array_equal(fps, np.stack([cast(vectors[p]) for p in in_rows]))


def test_put_replaces_and_rows_are_reused(tmp_path):
    store = Store(tmp_path)
    for i in range(40):  # grows the matrix several times
        store.put("m", items(1, start=i))
    store.remove([f"a/{i:04d}.jpg" for i in range(0, 40, 2)])
    store.put("m", [("a/0001.jpg", 1, 2, vec(99)), ("b.jpg", 3, 4, vec(98))])
    for s in (store, Store(tmp_path)):
        entries = s.entries("m")
        assert len(entries) == 21 and entries["a/0001.jpg"] == Entry(1, 2)
        paths, fps = s.fingerprints("m")
        expected = {p: as16(v) for p, _, _, v in items(40) if p not in {f"a/{i:04d}.jpg" for i in range(0, 40, 2)}}
        expected.update({"a/0001.jpg": as16(vec(99)), "b.jpg": as16(vec(98))})
        assert paths == sorted(expected)
        np.testing.assert_array_equal(fps, np.stack([expected[p] for p in paths]))


def test_unreadable_files_are_remembered_until_put_removed_or_moved(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(2))
    store.mark_unreadable("m", [("bad.jpg", 10, 20, "not an image"), ("worse.png", 1, 2, "truncated")])
    store.mark_unreadable("other", [("bad.jpg", 10, 20, "x")])
    assert Store(tmp_path).unreadable("m") == {"bad.jpg": Unreadable(10, 20, "not an image"),
                                               "worse.png": Unreadable(1, 2, "truncated")}
    store.compact()  # kept in the snapshot too
    fresh = Store(tmp_path)
    assert set(fresh.unreadable("m")) == {"bad.jpg", "worse.png"} and set(fresh.unreadable("other")) == {"bad.jpg"}
    fresh.put("m", [("bad.jpg", 11, 21, vec(5))])  # it was fixed: readable now
    fresh.move("worse.png", "moved/worse.png")
    assert Store(tmp_path).unreadable("m") == {"moved/worse.png": Unreadable(1, 2, "truncated")}
    fresh.remove(["moved/worse.png", "bad.jpg"], model="other")
    assert Store(tmp_path).unreadable("m") == {"moved/worse.png": Unreadable(1, 2, "truncated")}
    assert Store(tmp_path).unreadable("other") == {}
    fresh.remove(["moved/worse.png"])
    assert Store(tmp_path).unreadable("m") == {} and len(Store(tmp_path)) == 3


def test_models_do_not_mix(tmp_path):
    store = Store(tmp_path)
    store.put("big", items(3, dim=8))
    store.put("small", items(2, dim=4))
    fresh = Store(tmp_path)
    assert fresh.models() == ["big", "small"] and len(fresh) == 5
    assert fresh.fingerprints("big")[1].shape == (3, 8)
    assert fresh.fingerprints("small")[1].shape == (2, 4)
    fresh.remove(["a/0000.jpg"], model="big")
    assert "a/0000.jpg" in Store(tmp_path).entries("small")
    assert "a/0000.jpg" not in Store(tmp_path).entries("big")
    fresh.remove(["a/0001.jpg"])
    assert "a/0001.jpg" not in Store(tmp_path).entries("small")
    assert "a/0001.jpg" not in Store(tmp_path).entries("big")


def test_move_and_remove(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(3))
    store.put("n", items(1, dim=4))
    store.move("a/0000.jpg", "b/x.jpg")
    store.move_many([("a/0001.jpg", "tmp"), ("a/0002.jpg", "a/0001.jpg"), ("tmp", "a/0002.jpg")])  # swap
    fresh = Store(tmp_path)
    assert sorted(fresh.entries("m")) == ["a/0001.jpg", "a/0002.jpg", "b/x.jpg"]
    assert list(fresh.entries("n")) == ["b/x.jpg"]
    np.testing.assert_array_equal(fresh.fingerprints("m", ["b/x.jpg", "a/0001.jpg"])[1], [as16(vec(0)), as16(vec(2))])
    assert fresh.entries("m")["a/0002.jpg"] == Entry(101, 10_001)

    size = journal(tmp_path).stat().st_size
    fresh.move("missing.jpg", "other.jpg")  # no-op, nothing written
    fresh.remove(["missing.jpg"])
    assert journal(tmp_path).stat().st_size == size

    fresh.move("a/0001.jpg", "b/x.jpg")  # replaces the target, also in "n" which lacks the source
    fresh.remove(["a/0002.jpg"])
    assert Store(tmp_path).entries("m") == {"b/x.jpg": Entry(102, 10_002)}
    assert Store(tmp_path).models() == ["m"]


# ------------------------------------------------------------ validation


@pytest.mark.parametrize("path", ["/abs/x.jpg", "../x.jpg", "a/../../x.jpg", "", ".", 3, b"x.jpg"])
def test_bad_paths_rejected(tmp_path, path):
    with pytest.raises(InvalidParameter):
        Store(tmp_path).put("m", [(path, 1, 2, vec(0))])
    assert not (tmp_path / ".imagecluster").exists()


def test_paths_are_normalised(tmp_path):
    from pathlib import PurePosixPath

    store = Store(tmp_path)
    store.put("m", [("./a//b.jpg", 1, 2, vec(0)), (PurePosixPath("c/d.jpg"), 3, 4, vec(1))])
    assert sorted(store.entries("m")) == ["a/b.jpg", "c/d.jpg"]


@pytest.mark.parametrize(
    "fingerprint",
    [np.array([1.0, np.nan]), np.array([np.inf, 0.0]), np.array([1e6, 0.0]), np.zeros((2, 2)), np.array([]), "ab"],
)
def test_bad_fingerprints_rejected(tmp_path, fingerprint):
    with pytest.raises(InvalidParameter):
        Store(tmp_path).put("m", [("x.jpg", 1, 2, fingerprint)])


def test_dtype_option_accepts_numpy_names(tmp_path):
    assert Store(tmp_path, dtype=np.float32).dtype == "float32"
    assert Store(tmp_path, dtype=np.dtype("float16")).dtype == "float16"


def test_other_bad_arguments_rejected(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(1))
    with pytest.raises(InvalidParameter, match="stores 8 values"):
        store.put("m", items(1, dim=4, start=5))
    with pytest.raises(InvalidParameter, match="one length"):
        store.put("m", items(1, dim=4) + items(1, dim=8))
    for bad in ([("x.jpg", -1, 2, vec(0))], [("x.jpg", 1.5, 2, vec(0))], [("x.jpg", 1, 2)], "x.jpg"):
        with pytest.raises(InvalidParameter):
            store.put("m", bad)
    with pytest.raises(InvalidParameter):
        store.put("", items(1))
    with pytest.raises(InvalidParameter):
        Store(tmp_path, dtype="float64")
    with pytest.raises(InvalidParameter):
        Store(tmp_path, lock_timeout=-1)
    assert len(Store(tmp_path)) == 1


def test_put_into_missing_library(tmp_path):
    with pytest.raises(LibraryNotFound):
        Store(tmp_path / "nope").put("m", items(1))


def test_reading_a_library_without_store_creates_no_folder(tmp_path):
    store = Store(tmp_path)
    assert store.entries("m") == {} and store.models() == [] and len(store) == 0
    assert store.fingerprints("m")[0] == []
    store.compact()
    store.remove(["x.jpg"])  # nothing to remove
    store.move("x.jpg", "y.jpg")
    store.put("m", [])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------ journal and crashes


def test_journal_replayed_over_snapshot(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(3))
    store.compact()
    store.put("m", items(2, start=3))
    store.remove(["a/0000.jpg"])
    store.move("a/0001.jpg", "z.jpg")
    assert journal(tmp_path).stat().st_size > 0
    expected = state(store)
    assert sorted(expected["m"][0]) == ["a/0002.jpg", "a/0003.jpg", "a/0004.jpg", "z.jpg"]
    assert state(Store(tmp_path)) == expected


def test_compact_empties_journal_and_keeps_state(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(5))
    store.put("n", items(2, dim=3))
    store.remove(["a/0003.jpg"], model="m")
    before = state(store)
    store.compact()
    assert journal(tmp_path).stat().st_size == 0
    assert state(store) == before
    assert state(Store(tmp_path)) == before
    store.put("m", items(1, start=10))  # appends after compaction work
    assert "a/0010.jpg" in Store(tmp_path).entries("m")
    assert not list((tmp_path / ".imagecluster").glob("*.tmp"))


def test_compact_with_a_min_journal_share_waits_until_the_journal_has_grown(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(64))
    store.compact()
    snapshot = (tmp_path / ".imagecluster" / "fingerprints.pk").stat()
    store.put("m", items(1, start=100))
    store.compact(min_journal_share=0.25)  # one photo in the journal against 64 in the snapshot: left to replay
    assert (tmp_path / ".imagecluster" / "fingerprints.pk").stat().st_ino == snapshot.st_ino
    assert journal(tmp_path).stat().st_size > 0
    assert "a/0100.jpg" in Store(tmp_path).entries("m")  # replayed from the journal
    store.put("m", items(20, start=200))
    store.compact(min_journal_share=0.25)  # 21 against 64: now rewritten
    assert journal(tmp_path).stat().st_size == 0
    assert len(Store(tmp_path).entries("m")) == 85
    for bad in (-0.1, math.nan, math.inf, "0.5", True):
        with pytest.raises(InvalidParameter, match="min_journal_share"):
            store.compact(min_journal_share=bad)


def test_torn_last_record_is_skipped_and_cut_on_next_write(tmp_path, caplog):
    Store(tmp_path).put("m", items(2))
    Store(tmp_path).put("m", items(1, start=2))
    with open(journal(tmp_path), "r+b") as f:
        f.truncate(journal(tmp_path).stat().st_size - 3)
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        store = Store(tmp_path)
        assert sorted(store.entries("m")) == ["a/0000.jpg", "a/0001.jpg"]
    assert any("torn" in r.getMessage() for r in caplog.records)
    store.put("m", items(1, start=5))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        assert sorted(Store(tmp_path).entries("m")) == ["a/0000.jpg", "a/0001.jpg", "a/0005.jpg"]
    assert not caplog.records


def test_bad_record_in_the_middle_stops_replay(tmp_path, caplog):
    store = Store(tmp_path)
    for i in range(3):
        store.put("m", items(1, start=i))
    data = bytearray(journal(tmp_path).read_bytes())
    base_len = 8 + struct.unpack_from("<I", data, 0)[0]
    first_len = 8 + struct.unpack_from("<I", data, base_len)[0]
    data[base_len + first_len + 20] ^= 0xFF  # inside the second put's payload
    journal(tmp_path).write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        fresh = Store(tmp_path)
        assert list(fresh.entries("m")) == ["a/0000.jpg"]
    assert any("checksum" in r.getMessage() for r in caplog.records)
    fresh.put("m", items(1, start=9))
    assert sorted(Store(tmp_path).entries("m")) == ["a/0000.jpg", "a/0009.jpg"]


def test_crash_between_snapshot_replace_and_journal_truncate(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(3))
    store.compact()
    # A sequence that replaying over the new snapshot would get wrong (b would take a's new print):
    store.move("a/0000.jpg", "b.jpg")
    store.put("m", [("a/0000.jpg", 1, 1, vec(50))])
    store.remove(["a/0001.jpg"])
    old_journal = journal(tmp_path).read_bytes()
    before = state(store)
    store.compact()
    journal(tmp_path).write_bytes(old_journal)  # as if the truncate never happened
    fresh = Store(tmp_path)
    assert state(fresh) == before
    np.testing.assert_array_equal(fresh.fingerprints("m", ["b.jpg"])[1][0], as16(vec(0)))
    fresh.put("m", items(1, start=7))  # cuts the stale journal, then appends
    after = Store(tmp_path)
    assert sorted(after.entries("m")) == ["a/0000.jpg", "a/0002.jpg", "a/0007.jpg", "b.jpg"]
    assert records(tmp_path)[0][0] == "base" and len(records(tmp_path)) == 2


# --------------------------------------------------------- hostile files


def damaged_folders(lib):
    return sorted((lib / ".imagecluster").glob("damaged-*"))


def assert_set_aside(lib, caplog, damaged_bytes):
    """The damaged snapshot was moved to damaged-<time>/ (byte for byte), said once, and the store rebuilds."""
    (aside,) = damaged_folders(lib)
    assert (aside / "fingerprints.pk").read_bytes() == damaged_bytes
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0] and str(aside) in warnings[0]
    store = Store(lib)
    before = set(store.entries("m"))
    store.put("m", items(2, start=30))
    assert set(Store(lib).entries("m")) == before | {"a/0030.jpg", "a/0031.jpg"}


def test_tampered_snapshot_does_not_run_code_and_is_set_aside(tmp_path, caplog):
    sentinel = tmp_path / "SENTINEL"
    store = Store(tmp_path)
    store.put("m", items(1))
    store.compact()
    snapshot(tmp_path).write_bytes(pickle.dumps({"format": "imagecluster-store", "models": Evil(sentinel)}))
    damaged = snapshot(tmp_path).read_bytes()
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        assert Store(tmp_path).entries("m") == {}  # never trusted, never blocking
        store.put("m", items(1, start=1))  # the old object catches up with the rebuilt store
    assert not sentinel.exists()
    assert sorted(Store(tmp_path).entries("m")) == ["a/0001.jpg"]
    assert_set_aside(tmp_path, caplog, damaged)


def test_a_damaged_store_in_a_read_only_folder_is_reported(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    (tmp_path / ".imagecluster").mkdir()
    snapshot(tmp_path).write_bytes(b"garbage")
    (tmp_path / ".imagecluster").chmod(0o555)
    try:
        with pytest.raises(StoreCorrupt, match="cannot be moved aside"):
            Store(tmp_path).models()
    finally:
        (tmp_path / ".imagecluster").chmod(0o755)


def test_tampered_journal_record_does_not_run_code(tmp_path, caplog):
    sentinel = tmp_path / "SENTINEL"
    store = Store(tmp_path)
    store.put("m", items(1))
    with open(journal(tmp_path), "ab") as f:
        f.write(frame(Evil(sentinel)))
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        assert list(Store(tmp_path).entries("m")) == ["a/0000.jpg"]
    assert not sentinel.exists()
    assert any("os.system" in r.getMessage() or "posix.system" in r.getMessage() for r in caplog.records)


def test_non_finite_journal_record_stops_replay(tmp_path, caplog):
    store = Store(tmp_path)
    store.put("m", items(1))
    record = ("put", "m", "nan.jpg", 1, 2, "float16", np.array([np.nan] * DIM, "<f2").tobytes())
    with open(journal(tmp_path), "ab") as f:
        f.write(frame(record) + frame(("del", None, "a/0000.jpg")))
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        assert list(Store(tmp_path).entries("m")) == ["a/0000.jpg"]
    assert any("non-finite" in r.getMessage() for r in caplog.records)


def _model(**over):
    m = {"dim": 2, "dtype": "float16", "paths": ["a.jpg"], "sizes": [1], "mtimes": [2], "data": bytes(4)}
    m.update(over)
    return m


def _snap(**models):
    return {"format": "imagecluster-store", "version": 1, "token": b"t", "models": models}


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"format": "something-else"},
        {**_snap(), "version": 3},
        {**_snap(), "version": True},
        {**_snap(), "version": 2, "models": {"m": {k: v for k, v in _model().items() if k != "data"}}},
        {**_snap(), "version": 2, "models": {"m": {**_model(), "offset": 0}}},  # no matrix after the header
        {**_snap(), "models": []},
        _snap(m=_model(data=bytes(3))),
        _snap(m=_model(paths="a.jpg")),
        _snap(m=_model(paths=["/etc/passwd"])),
        _snap(m=_model(paths=["../up.jpg"])),
        _snap(m=_model(paths=["a.jpg", "a.jpg"], sizes=[1, 1], mtimes=[2, 2], data=bytes(8))),
        _snap(m=_model(sizes=["1"])),
        _snap(m=_model(dim=0)),
        _snap(m=_model(dtype="float64")),
        _snap(m=_model(dtype=["unhashable"])),
        _snap(m=_model(data=np.array([np.inf, 0], "<f2").tobytes())),
    ],
)
def test_wrong_structure_snapshot_is_set_aside(tmp_path, obj, caplog):
    (tmp_path / ".imagecluster").mkdir()
    snapshot(tmp_path).write_bytes(pickle.dumps(obj, protocol=5))
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        assert Store(tmp_path).models() == []
    assert_set_aside(tmp_path, caplog, pickle.dumps(obj, protocol=5))


@pytest.mark.parametrize("damage", ["garbage", "random", "truncated", "empty"])
def test_damaged_snapshot_is_set_aside(tmp_path, caplog, damage):
    store = Store(tmp_path)
    store.put("m", items(20))
    store.compact()
    data = snapshot(tmp_path).read_bytes()
    damaged = {"garbage": b"\x80\x05not a pickle at all", "random": np.random.default_rng(0).bytes(4000),
               "truncated": data[: len(data) // 2], "empty": b""}[damage]
    snapshot(tmp_path).write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        assert Store(tmp_path).models() == []
    assert_set_aside(tmp_path, caplog, damaged)


def test_garbage_inside_the_journal_keeps_what_came_before_and_a_copy(tmp_path, caplog):
    store = Store(tmp_path)
    for i in range(3):
        store.put("m", items(1, start=i))
    with open(journal(tmp_path), "ab") as f:
        f.write(np.random.default_rng(1).bytes(300))
    damaged = journal(tmp_path).read_bytes()
    with caplog.at_level(logging.WARNING, logger="imagecluster.store"):
        fresh = Store(tmp_path)
        assert sorted(fresh.entries("m")) == ["a/0000.jpg", "a/0001.jpg", "a/0002.jpg"]
        fresh.entries("m")  # read again: copied once, said once
    (aside,) = damaged_folders(tmp_path)
    assert (aside / "journal.pk").read_bytes() == damaged
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_valid_handwritten_snapshot(tmp_path):
    (tmp_path / ".imagecluster").mkdir()
    data = np.array([[0.5, -0.25]], "<f2").tobytes()
    snapshot(tmp_path).write_bytes(pickle.dumps(_snap(m=_model(data=data)), protocol=5))
    store = Store(tmp_path)
    assert store.entries("m") == {"a.jpg": Entry(1, 2)}
    np.testing.assert_array_equal(store.fingerprints("m")[1], [[0.5, -0.25]])


# ---------------------------------------------------- several processes


LOCKER = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
    "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()"
)


def test_lock_held_by_another_process(tmp_path):
    store = Store(tmp_path, lock_timeout=0.2)
    store.put("m", items(1))
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(tmp_path / ".imagecluster" / "lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLocked, match=f"another imagecluster process is writing to {tmp_path}"):
            store.put("m", items(1, start=1))
        with pytest.raises(StoreLocked):
            store.compact()
        assert list(store.entries("m")) == ["a/0000.jpg"]  # nothing changed: reads need no lock
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    store.put("m", items(1, start=1))
    assert len(Store(tmp_path)) == 2


def test_writes_from_another_process_are_seen(tmp_path):
    store = Store(tmp_path)
    store.put("m", items(1))
    assert len(store) == 1
    code = (
        "import sys, numpy as np; from imagecluster.store import Store;"
        "s = Store(sys.argv[1]); s.put('m', [('other.jpg', 5, 6, np.ones(8))]); s.remove(['a/0000.jpg'])"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=repo)
    assert store.entries("m") == {"other.jpg": Entry(5, 6)}


def test_two_store_objects_see_each_others_writes(tmp_path):
    one, two = Store(tmp_path), Store(tmp_path)
    assert len(one) == 0 and len(two) == 0
    one.put("m", items(2))
    assert sorted(two.entries("m")) == ["a/0000.jpg", "a/0001.jpg"]
    two.remove(["a/0000.jpg"])
    assert list(one.entries("m")) == ["a/0001.jpg"]
    two.compact()
    assert list(one.entries("m")) == ["a/0001.jpg"]
    one.put("m", items(1, start=5))  # first append after the other's compaction
    two.put("m", items(1, start=6))
    assert state(one) == state(two) == state(Store(tmp_path))
    assert sorted(one.entries("m")) == ["a/0001.jpg", "a/0005.jpg", "a/0006.jpg"]
    one.compact()
    two.move("a/0001.jpg", "b.jpg")
    assert "b.jpg" in one.entries("m")


def test_threads_and_store_objects_share_one_library(tmp_path):
    import threading

    stores = [Store(tmp_path), Store(tmp_path)]
    errors = []

    def work(k):
        try:
            for i in range(10):
                stores[k % 2].put("m", items(1, start=100 * k + i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(stores[0]) == len(stores[1]) == len(Store(tmp_path)) == 40
    assert state(stores[0]) == state(stores[1])


def test_deleted_store_folder_reads_as_empty(tmp_path):
    import shutil

    store = Store(tmp_path)
    store.put("m", items(2))
    shutil.rmtree(tmp_path / ".imagecluster")
    assert store.entries("m") == {} and len(store) == 0
    store.put("m", items(1, start=3))
    assert list(Store(tmp_path).entries("m")) == ["a/0003.jpg"]
