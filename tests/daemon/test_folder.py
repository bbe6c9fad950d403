"""``daemon._folder``: path rules, change handlers and store work of one library (real files, real store)."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

from imagecluster.daemon._folder import (
    LibraryFolder,
    file_sig,
    folder_identity,
    in_cluster_tree,
    is_hidden,
    match_moves,
    normalised,
)
from imagecluster.daemon._pending import PendingPhotos
from imagecluster.images import STORE_DIRNAME, TREE_MARKER
from imagecluster.store import Store

pytestmark = pytest.mark.mockbus

MODEL = "lite0"
DATA = Path(__file__).parents[1] / "data"


def unit(seed, dim=1280):
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def photo(path, data=b"\xff\xd8 not decoded here"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    return LibraryFolder(root=root, store=Store(root), model=MODEL, available=True, grace=60.0)


def store_as_is(folder, *rels):
    """Put each photo into the store with its current (size, mtime); the mirror follows."""
    items = [(rel, *file_sig(folder.root / rel), unit(i)) for i, rel in enumerate(rels)]
    folder.store.put(MODEL, items)
    folder.set_known(folder.store.entries(MODEL))


def test_file_sig_is_for_regular_files_only(tmp_path):
    f = photo(tmp_path / "a.jpg")
    os.symlink(f, tmp_path / "link.jpg")
    assert file_sig(f) == (f.stat().st_size, f.stat().st_mtime_ns)
    assert file_sig(tmp_path / "link.jpg") is None and file_sig(tmp_path) is None
    assert file_sig(tmp_path / "missing.jpg") is None and file_sig("bad\0name") is None


def test_folder_identity_changes_when_the_folder_is_replaced(tmp_path):
    (tmp_path / "lib").mkdir()
    first = folder_identity(tmp_path / "lib")
    (tmp_path / "lib").rename(tmp_path / "old")
    (tmp_path / "lib").mkdir()
    assert first is not None and folder_identity(tmp_path / "lib") not in (None, first)
    assert folder_identity(photo(tmp_path / "file")) is None and folder_identity(tmp_path / "none") is None


def test_hidden_and_excluded_paths():
    assert is_hidden("/lib", [STORE_DIRNAME, "x.jpg"], ())
    assert is_hidden("/lib", ["a", ".cache", "x.jpg"], ())
    assert is_hidden("/lib", ["clusters", "x.jpg"], ("/lib/clusters",))
    assert not is_hidden("/lib", ["clusters2", "x.jpg"], ("/lib/clusters",))


def test_everything_below_a_cluster_tree_marker(tmp_path):
    photo(tmp_path / "tree" / TREE_MARKER, b"{}")
    assert in_cluster_tree(tmp_path, ["tree", "cluster_with_2", "cluster_0"])
    assert not in_cluster_tree(tmp_path, ["photos", "2024"])


def test_normalised_as_the_store_keeps_it():
    v = normalised(np.array([3.0, 4.0]), np.float16)
    assert v.dtype == np.float32 and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    assert normalised(np.zeros(3), np.float16).tolist() == [0.0, 0.0, 0.0]


def test_match_moves_is_one_to_one():
    known = {"a/x.jpg": (10, 1), "a/y.jpg": (20, 2), "b/y.jpg": (20, 2)}
    todo = [("c/x.jpg", 10, 1), ("c/y.jpg", 20, 2)]
    assert match_moves(todo, ["a/x.jpg", "a/y.jpg", "b/y.jpg"], known) == [("a/x.jpg", "c/x.jpg")]  # y: ambiguous


def test_relative_follows_the_path_rules(folder):
    root = os.fspath(folder.root)
    assert folder.relative(root) == "" and folder.relative(f"{root}/a/b.jpg") == "a/b.jpg"
    assert folder.relative(f"{root}/.hidden/b.jpg") is None and folder.relative(f"{root}2/b.jpg") is None


def test_a_new_photo_settles_a_folder_is_walked(folder):
    pending, walks = PendingPhotos(0.0), []
    photo(folder.root / "a" / "1.jpg")
    folder.on_touched("a/1.jpg", False, pending, walks)
    folder.on_touched("a", True, pending, walks)
    assert set(pending.settling) == {(folder.root, "a/1.jpg")} and walks == [(folder, "a")]


def test_a_photo_inside_a_cluster_tree_is_not_queued(folder):
    pending = PendingPhotos(0.0)
    photo(folder.root / "clusters" / TREE_MARKER, b"{}")
    photo(folder.root / "clusters" / "c" / "1.jpg")
    folder.on_touched("clusters/c/1.jpg", False, pending, [])
    assert len(pending) == 0


def test_a_deleted_photo_is_kept_for_its_grace_then_removed(folder):
    photo(folder.root / "a.jpg")
    store_as_is(folder, "a.jpg")
    pending = PendingPhotos(0.0)
    assert folder.on_deleted("a.jpg", False, pending) == []
    assert "a.jpg" not in folder.known and "a.jpg" in folder.gone and folder.next_expiry() > time.monotonic()
    assert folder.expire() == []  # grace not over
    folder.gone["a.jpg"] = (folder.gone["a.jpg"][0], time.monotonic() - 1)
    assert folder.expire() == [("remove", ["a.jpg"])] and folder.gone == {}


def test_a_deletion_with_a_waiting_twin_is_a_move(folder):
    photo(folder.root / "a" / "x.jpg")
    store_as_is(folder, "a/x.jpg")
    sig = tuple(folder.known["a/x.jpg"])
    pending = PendingPhotos(0.0)
    pending.consider((folder.root, "b/x.jpg"), sig, None)  # the creation came first
    assert folder.on_deleted("a/x.jpg", False, pending) == [("move", [("a/x.jpg", "b/x.jpg")])]
    assert folder.known == {"b/x.jpg": sig} and len(pending) == 0


def test_a_gone_photo_claimed_by_a_settled_twin(folder):
    photo(folder.root / "a" / "x.jpg")
    store_as_is(folder, "a/x.jpg")
    sig = tuple(folder.known["a/x.jpg"])
    folder.on_deleted("a/x.jpg", False, PendingPhotos(0.0))
    assert folder.claim("c/x.jpg", (1, 1)) is None  # another version: no
    assert folder.claim("c/x.jpg", sig) == [("move", [("a/x.jpg", "c/x.jpg")])]
    assert folder.gone == {} and "c/x.jpg" in folder.known


def test_moves_of_a_file_and_of_a_folder(folder):
    for rel in ("a/1.jpg", "a/2.jpg"):
        photo(folder.root / rel)
    store_as_is(folder, "a/1.jpg", "a/2.jpg")
    pending, walks = PendingPhotos(0.0), []
    (folder.root / "a").rename(folder.root / "b")
    ops = folder.on_moved("a", "b", True, pending, walks)
    assert ops == [("move", [("a/1.jpg", "b/1.jpg"), ("a/2.jpg", "b/2.jpg")])] and walks == [(folder, "b")]
    (folder.root / "b" / "1.jpg").rename(folder.root / "1.jpg")
    assert folder.on_moved("b/1.jpg", "1.jpg", False, pending, walks) == [("move", [("b/1.jpg", "1.jpg")])]
    assert set(folder.known) == {"1.jpg", "b/2.jpg"}


def test_a_move_into_a_cluster_tree_is_a_deletion(folder):
    photo(folder.root / "1.jpg")
    store_as_is(folder, "1.jpg")
    photo(folder.root / "tree" / TREE_MARKER, b"{}")
    assert folder.on_moved("1.jpg", "tree/1.jpg", False, PendingPhotos(0.0), []) == []
    assert "1.jpg" in folder.gone


def test_reconcile_keeps_a_moved_photos_fingerprint_and_removes_the_gone(folder):
    for rel in ("a/1.jpg", "a/2.jpg"):
        photo(folder.root / rel, rel.encode())
    store_as_is(folder, "a/1.jpg", "a/2.jpg")
    kept = folder.store.fingerprints(MODEL, ["a/1.jpg"])[1][0]
    (folder.root / "b").mkdir()
    os.rename(folder.root / "a/1.jpg", folder.root / "b/1.jpg")  # while the daemon was stopped
    (folder.root / "a/2.jpg").unlink()
    photo(folder.root / "new.jpg")
    todo, entries = folder.reconcile_sync()
    assert [t[0] for t in todo] == ["new.jpg"] and set(entries) == {"b/1.jpg"}
    assert np.array_equal(folder.store.fingerprints(MODEL, ["b/1.jpg"])[1][0], kept)


def test_put_stores_only_the_version_sent_and_marks_the_unreadable(folder):
    a, b, c = (photo(folder.root / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    sent = {p.name: file_sig(p) for p in (a, b, c)}
    photo(b, b"changed meanwhile, and longer")
    entries = folder.put_sync([("a.jpg", sent["a.jpg"], unit(1)), ("b.jpg", sent["b.jpg"], unit(2))],
                              [("c.jpg", sent["c.jpg"], "cannot identify image file")])
    assert set(entries) == {"a.jpg"}
    assert "c.jpg" in folder.store.unreadable(MODEL)


def test_read_sync_only_for_the_stored_version(folder):
    photo(folder.root / "a.jpg")
    store_as_is(folder, "a.jpg")
    sig = tuple(folder.known["a.jpg"])
    vector = folder.read_sync("a.jpg", sig)
    assert vector.dtype == np.float32 and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)
    assert folder.read_sync("a.jpg", (sig[0] + 1, sig[1])) is None and folder.read_sync("b.jpg", sig) is None


def test_walk_finds_photos_by_the_path_rules(folder):
    photo(folder.root / "a" / "1.jpg")
    photo(folder.root / "a" / ".hidden" / "2.jpg")
    photo(folder.root / "a" / "notes.txt")
    assert [rel for rel, _ in folder.walk_sync("a")] == ["a/1.jpg"]
    assert folder.walk_sync("missing") == [] and folder.walk_sync(".hidden") == []


def test_apply_runs_moves_and_removals_in_order(folder):
    for rel in ("1.jpg", "2.jpg"):
        photo(folder.root / rel)
    store_as_is(folder, "1.jpg", "2.jpg")
    entries = folder.apply_sync([("move", [("1.jpg", "3.jpg")]), ("remove", ["2.jpg"])])
    assert set(entries) == {"3.jpg"}
