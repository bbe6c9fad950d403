"""``daemon._libraries``: checking the folders given, finding a photo's library, routing watcher changes."""

import os

import numpy as np
import pytest

from imagecluster import InvalidParameter, NotAnImage, NotInLibrary, PhotoNotFound
from imagecluster.daemon._folder import file_sig
from imagecluster.daemon._libraries import Libraries, check_libraries
from imagecluster.daemon._pending import PendingPhotos
from imagecluster.daemon._watch import PathChange
from imagecluster.images import STORE_DIRNAME

pytestmark = pytest.mark.mockbus

MODEL = "lite0"


def photo(path, data=b"jpeg bytes"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def libs(tmp_path):
    roots = check_libraries([tmp_path / "one", tmp_path / "two"])
    for root in roots:
        root.mkdir()
    libraries = Libraries(roots, MODEL, (), grace=60.0)
    for lib in libraries:
        lib.available = True
    return libraries


def test_check_libraries_resolves_and_deduplicates(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert check_libraries([tmp_path / "real", tmp_path / "link"]) == (tmp_path / "real",)
    assert check_libraries(str(tmp_path / "real")) == (tmp_path / "real",)


@pytest.mark.parametrize("bad", [[], [""], [42], ["/a", "/a/b"]])
def test_check_libraries_refuses(bad):
    with pytest.raises(InvalidParameter):
        check_libraries(bad)


def test_resolve_finds_the_library_and_refuses_the_rest(libs, tmp_path):
    one = tmp_path / "one"
    photo(one / "a" / "1.jpg")
    photo(one / STORE_DIRNAME / "x.jpg")
    photo(tmp_path / "outside.jpg")
    assert libs.resolve(os.fspath(one / "a" / "1.jpg")) == (one, "a/1.jpg")
    assert libs.resolve(os.fspath(one / "a" / ".." / "a" / "1.jpg")) == (one, "a/1.jpg")
    for path, error in [("relative.jpg", InvalidParameter), ("", InvalidParameter), (42, InvalidParameter),
                        (os.fspath(tmp_path / "outside.jpg"), NotInLibrary),
                        (os.fspath(one / "missing.jpg"), PhotoNotFound), (os.fspath(one / "a"), NotAnImage),
                        (os.fspath(one / STORE_DIRNAME / "x.jpg"), NotAnImage)]:
        with pytest.raises(error):
            libs.resolve(path)


def test_a_symlink_cannot_lead_out_of_a_library(libs, tmp_path):
    photo(tmp_path / "secret.jpg")
    os.symlink(tmp_path / "secret.jpg", tmp_path / "one" / "link.jpg")
    with pytest.raises(NotInLibrary):
        libs.resolve(os.fspath(tmp_path / "one" / "link.jpg"))


def test_routing_a_new_photo_and_a_new_folder(libs, tmp_path):
    one = tmp_path / "one"
    photo(one / "1.jpg")
    (one / "sub").mkdir()
    pending = PendingPhotos(0.0)
    operations, walks, lost = libs.route([
        PathChange("created", one / "1.jpg"), PathChange("created", one / "sub", is_directory=True),
        PathChange("created", tmp_path / "elsewhere.jpg"),
    ], pending)
    assert set(pending.settling) == {(one, "1.jpg")} and walks == [(libs[one], "sub")] and lost == []


def test_a_move_across_libraries_is_a_deletion_and_a_creation(libs, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    photo(one / "1.jpg")
    libs[one].store.put(MODEL, [("1.jpg", *file_sig(one / "1.jpg"), np.ones(1280, np.float32))])
    libs[one].set_known(libs[one].store.entries(MODEL))
    os.rename(one / "1.jpg", two / "1.jpg")
    pending = PendingPhotos(0.0)
    operations, walks, lost = libs.route([PathChange("moved", one / "1.jpg", two / "1.jpg")], pending)
    assert "1.jpg" in libs[one].gone and set(pending.settling) == {(two, "1.jpg")}


def test_a_removed_library_is_lost(libs, tmp_path):
    _, _, lost = libs.route([PathChange("deleted", tmp_path / "two", is_directory=True)], PendingPhotos(0.0))
    assert lost == [libs[tmp_path / "two"]]


def test_changes_during_a_reconciliation_wait_in_its_backlog(libs, tmp_path):
    one = tmp_path / "one"
    libs[one].reconciling = True
    change = PathChange("created", one / "1.jpg")
    pending = PendingPhotos(0.0)
    libs.route([change], pending)
    assert libs[one].backlog == [change] and len(pending) == 0


def test_a_settled_photo_that_was_a_gone_one_is_a_move(libs, tmp_path):
    one = tmp_path / "one"
    photo(one / "a" / "1.jpg")
    libs[one].store.put(MODEL, [("a/1.jpg", *file_sig(one / "a" / "1.jpg"), np.ones(1280, np.float32))])
    libs[one].set_known(libs[one].store.entries(MODEL))
    sig = tuple(libs[one].known["a/1.jpg"])
    pending = PendingPhotos(0.0)
    libs.route([PathChange("deleted", one / "a" / "1.jpg")], pending)  # the deletion came first
    pending.ready[(one, "b/1.jpg")] = sig
    operations = libs.settled([(one, "b/1.jpg")], pending)
    assert operations[libs[one]] == [("move", [("a/1.jpg", "b/1.jpg")])] and pending.ready == {}
