"""Indexing a library into its store and clustering it, end to end with the real default model."""

import os

import pytest

import imagecluster
from imagecluster import Store, cluster_folder, index_library
from imagecluster._pipeline import LazyModel


def names(clusters):
    return sorted(sorted(p.name for p in group) for group in clusters)


def test_index_then_rerun_fingerprints_only_what_changed(burst_library):
    lib = burst_library
    (lib / "notes.jpg").write_text("not a photo")
    first = index_library(lib)
    assert (first.found, first.added, first.unchanged) == (7, 6, 0)
    assert [os.path.basename(f.path) for f in first.failures] == ["notes.jpg"]
    assert "not an image" in first.failures[0].reason

    paths, fps = Store(lib).fingerprints("lite0")
    assert sorted(paths) == sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*_?.jpg"))
    assert fps.shape == (6, 1280)

    lazy = LazyModel("lite0")
    again = index_library(lib, model=lazy)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 6)
    assert not lazy.is_loaded  # nothing new: TensorFlow was never needed

    dog = lib / "2023/05/dog_1.jpg"
    cat_bytes = (lib / "2024/01/cat_1.jpg").read_bytes()
    dog.write_bytes(cat_bytes)  # same name, new content
    os.utime(dog, ns=(1_000_000_000, 1_000_000_000))
    (lib / "2024/cat_3.jpg").unlink()
    third = index_library(lib)
    assert (third.added, third.updated, third.unchanged, third.removed) == (0, 1, 4, 1)
    paths, fps = Store(lib).fingerprints("lite0")
    assert len(paths) == 5


def test_a_photo_that_breaks_loses_its_old_fingerprint(burst_library):
    lib = burst_library
    index_library(lib)
    (lib / "2024/cat_3.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = index_library(lib)
    assert [os.path.basename(f.path) for f in report.failures] == ["cat_3.jpg"]
    assert "2024/cat_3.jpg" not in Store(lib).entries("lite0")


def test_an_unreadable_file_is_not_tried_again_until_it_changes(burst_library):
    lib = burst_library
    bad = lib / "2024/broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff this is no photo")
    first = index_library(lib)
    assert [os.path.basename(f.path) for f in first.failures] == ["broken.jpg"]
    assert list(Store(lib).unreadable("lite0")) == ["2024/broken.jpg"]

    lazy = LazyModel("lite0")
    again = index_library(lib, model=lazy)
    assert not again.failures and [os.path.basename(f.path) for f in again.known_failures] == ["broken.jpg"]
    assert "not an image" in again.known_failures[0].reason or "damaged" in again.known_failures[0].reason
    assert not lazy.is_loaded  # the known-bad file woke nothing

    bad.write_bytes((lib / "2024/01/cat_1.jpg").read_bytes())  # it changed: tried again, and now it reads
    os.utime(bad, ns=(2_000_000_000, 2_000_000_000))
    third = index_library(lib)
    assert third.added == 1 and not third.failures and not third.known_failures
    assert Store(lib).unreadable("lite0") == {}
    bad.unlink()
    index_library(lib)
    assert "2024/broken.jpg" not in Store(lib).entries("lite0")


def test_cluster_folder_groups_shots_of_one_subject(burst_library):
    lib = burst_library
    clusters = cluster_folder(lib, sim=0.7)
    assert names(clusters) == [["cat_1.jpg", "cat_2.jpg", "cat_3.jpg"], ["dog_1.jpg", "dog_2.jpg", "dog_3.jpg"]]
    assert all(p.is_absolute() and p.is_file() for group in clusters for p in group)
    tree = lib / "clusters"
    by_folder = {}
    for link in tree.rglob("*.jpg"):
        by_folder.setdefault(link.parent.relative_to(tree).as_posix(), []).append(link.name)
    assert sorted(by_folder) == ["cluster_with_3/cluster_0", "cluster_with_3/cluster_1"]
    assert sorted(sorted(v) for v in by_folder.values()) == names(clusters)
    assert all(p.is_symlink() and os.path.isabs(os.readlink(p)) for p in tree.rglob("*.jpg"))

    # The tree (symlinks to the same photos) is never indexed as new photos.
    report = index_library(lib)
    assert (report.found, report.added) == (6, 0)


def test_sim_one_keeps_different_shots_apart(burst_library):
    assert cluster_folder(burst_library, sim=1.0, write=False) == []


def test_store_compacted_after_a_run(burst_library):
    cluster_folder(burst_library, write=False)
    store_dir = burst_library / ".imagecluster"
    assert (store_dir / "fingerprints.pk").stat().st_size > 6 * 1280
    journal = store_dir / "journal.pk"
    assert not journal.exists() or journal.stat().st_size == 0


def test_fingerprints_building_block(burst_library, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    photos = sorted(burst_library.rglob("*.jpg")) + [broken]
    fps = imagecluster.fingerprints(photos)
    assert list(fps) == photos[:-1]
    groups = imagecluster.cluster.cluster(list(fps.values()), sim=0.7)
    assert len(groups) == 2


def test_other_model_keeps_its_own_fingerprints(burst_library):
    from imagecluster.models import load_model

    index_library(burst_library)
    vgg = load_model("vgg16", weights="random")
    report = index_library(burst_library, model=vgg)
    assert report.added == 6
    store = Store(burst_library)
    assert store.fingerprints("lite0")[1].shape == (6, 1280)
    assert store.fingerprints("vgg16")[1].shape == (6, 4096)


def test_missing_library(tmp_path):
    with pytest.raises(imagecluster.LibraryNotFound):
        cluster_folder(tmp_path / "nowhere")
