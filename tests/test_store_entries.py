"""The store's entries as columns: snapshots that never change, handed out without copies (real stores in tmp_path)."""

import pickle
import random
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from imagecluster import InvalidParameter
from imagecluster.daemon._folder import Mirror
from imagecluster.store import Entries, Entry, Store

DIM = 8


def put(store, names, *, size=100, mtime=10_000):
    rng = np.random.default_rng(len(names))
    store.put("m", [(p, size + k, mtime + k, rng.standard_normal(DIM)) for k, p in enumerate(names)])


def test_entries_handed_out_never_change(tmp_path):
    store = Store(tmp_path)
    put(store, ["a.jpg", "b.jpg", "c.jpg"])
    before = store.entries("m")
    view = store.view("m")
    store.remove(["a.jpg"])  # moves the last row into row 0
    store.move("b.jpg", "d.jpg")
    put(store, ["b.jpg", "e.jpg"], size=7, mtime=8)
    assert before == {"a.jpg": Entry(100, 10_000), "b.jpg": Entry(101, 10_001), "c.jpg": Entry(102, 10_002)}
    assert dict(view.entries) == before and view.paths == ["a.jpg", "b.jpg", "c.jpg"]
    assert store.entries("m") == {"c.jpg": Entry(102, 10_002), "d.jpg": Entry(101, 10_001),
                                  "b.jpg": Entry(7, 8), "e.jpg": Entry(8, 9)}
    assert Store(tmp_path).entries("m") == store.entries("m")  # and the same after the journal's replay


def test_view_entries_by_row_follow_the_paths(tmp_path):
    store = Store(tmp_path)
    put(store, [f"{k:03d}.jpg" for k in range(40)])
    store.remove(["003.jpg", "017.jpg"])
    store.move("039.jpg", "x/039.jpg")
    store.compact()
    put(Store(tmp_path), ["003.jpg"], size=5, mtime=6)
    view = Store(tmp_path).view("m")
    sizes, mtimes = view.entries.by_row()
    assert [tuple(view.entries[p]) for p in view.paths] == list(zip(sizes.tolist(), mtimes.tolist()))
    assert len(sizes) == len(view.paths) == 39


def test_entries_compare_as_mappings(tmp_path):
    a = Entries.from_items({"x.jpg": (1, 2), "y.jpg": (3, 4)})
    b = Entries.from_items([("y.jpg", (3, 4)), ("x.jpg", (1, 2))])
    assert a == b and a == {"x.jpg": Entry(1, 2), "y.jpg": Entry(3, 4)} and {"y.jpg": (3, 4), "x.jpg": (1, 2)} == a
    assert a != Entries.from_items({"x.jpg": (1, 2), "y.jpg": (3, 5)}) and a != {"x.jpg": (1, 2)}
    assert a.get("z.jpg") is None and "x.jpg" in a and list(a) == ["x.jpg", "y.jpg"] and len(Entries()) == 0
    assert isinstance(a["x.jpg"], Entry) and pickle.loads(pickle.dumps(dict(a))) == a
    with pytest.raises(KeyError):
        a["z.jpg"]
    with pytest.raises(TypeError):
        a["x.jpg"] = (5, 6)  # read-only
    with pytest.raises(ValueError, match="duplicate"):
        Entries.from_items([("x.jpg", (1, 2)), ("x.jpg", (1, 2))])


def test_handing_out_entries_copies_nothing(tmp_path):
    """The daemon asks for the entries after every store call: a million photos must not be copied each time."""
    store = Store(tmp_path)
    put(store, [f"a/{k:05d}.jpg" for k in range(20_000)])
    store.entries("m"), store.view("m")
    tracemalloc.start()
    try:
        kept = [store.entries("m") for _ in range(10)] + [store.view("m").entries for _ in range(10)]
        grown = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == 20 and grown < 200_000, f"{grown} bytes for 20 hand-outs of 20,000 entries"


def test_sizes_and_times_beyond_64_bits_are_refused(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(InvalidParameter, match="64 bits"):
        store.put("m", [("a.jpg", 1 << 63, 0, np.ones(DIM))])
    with pytest.raises(InvalidParameter, match="64 bits"):
        store.mark_unreadable("m", [("a.jpg", 1, -(1 << 63) - 1, "broken")])
    assert store.entries("m") == {} and store.unreadable("m") == {}


def test_a_journal_record_beyond_64_bits_is_damage_not_a_crash(tmp_path, caplog):
    store = Store(tmp_path)
    put(store, ["a.jpg"])
    payload = pickle.dumps(("put", "m", "b.jpg", 1 << 64, 0, "float16", np.ones(DIM, np.float16).tobytes()))
    with open(tmp_path / ".imagecluster" / "journal.pk", "ab") as f:
        f.write(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    assert list(Store(tmp_path).entries("m")) == ["a.jpg"]  # the good part is kept
    assert "damaged" in caplog.text


def test_the_mirror_behaves_as_a_dict_over_entries():
    """Random changes on a Mirror and on a dict, from the same entries, agree at every step."""
    rnd = random.Random(5)
    base = {f"{k}.jpg": Entry(k, k) for k in range(30)}
    mirror, model = Mirror(Entries.from_items(base)), dict(base)
    for step in range(600):
        rel = f"{rnd.randrange(45)}.jpg"
        action = rnd.choice("set del pop get")
        if action == "set":
            mirror[rel] = model[rel] = Entry(step, -step)
        elif action == "del" and rel in model:
            del mirror[rel]
            del model[rel]
        elif action == "pop":
            assert mirror.pop(rel, None) == model.pop(rel, None)
        assert (rel in mirror) == (rel in model) and mirror.get(rel) == model.get(rel)
        assert len(mirror) == len(model) and sorted(mirror) == sorted(model)
    assert dict(mirror) == model and mirror == model
    with pytest.raises(KeyError):
        del mirror["none.jpg"]
