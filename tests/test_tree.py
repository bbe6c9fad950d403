"""imagecluster.tree: the symlink tree is complete, swapped atomically, and never eats a file."""

import json
import os
from pathlib import Path

import pytest

from imagecluster import NotOurTree, write_tree
from imagecluster.images import TREE_MARKER


@pytest.fixture
def photos(tmp_path):
    lib = tmp_path / "lib"
    for name in ["a/IMG_1.jpg", "b/IMG_1.jpg", "a/x.png", "y.jpg", "z.jpg"]:
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"photo " + name.encode())
    return lib


def links(tree):
    found = {}
    for dirpath, _, files in os.walk(tree):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                found[os.path.relpath(p, tree)] = os.readlink(p)
    return found


def test_layout_and_absolute_targets(photos, tmp_path):
    out = tmp_path / "out"
    clusters = [[photos / "a/IMG_1.jpg", photos / "b/IMG_1.jpg", photos / "a/x.png"],
                [photos / "y.jpg", photos / "z.jpg"]]
    assert write_tree(clusters, out, info={"sim": 0.7}) == out
    assert links(out) == {
        "cluster_with_3/cluster_0/IMG_1.jpg": str(photos / "a/IMG_1.jpg"),
        "cluster_with_3/cluster_0/IMG_1 (2).jpg": str(photos / "b/IMG_1.jpg"),
        "cluster_with_3/cluster_0/x.png": str(photos / "a/x.png"),
        "cluster_with_2/cluster_0/y.jpg": str(photos / "y.jpg"),
        "cluster_with_2/cluster_0/z.jpg": str(photos / "z.jpg"),
    }
    marker = json.loads((out / TREE_MARKER).read_text())
    assert marker["sim"] == 0.7 and marker["clusters"] == 2


def test_clusters_of_one_size_are_numbered(photos, tmp_path):
    out = tmp_path / "out"
    write_tree([[photos / "y.jpg", photos / "z.jpg"], [photos / "a/x.png", photos / "a/IMG_1.jpg"]], out)
    assert sorted(os.listdir(out / "cluster_with_2")) == ["cluster_0", "cluster_1"]


def test_rewrite_replaces_old_tree_and_leaves_nothing_behind(photos, tmp_path):
    out = tmp_path / "out"
    write_tree([[photos / "y.jpg", photos / "z.jpg"]], out)
    write_tree([[photos / "a/x.png", photos / "y.jpg", photos / "z.jpg"]], out)
    assert set(links(out)) == {f"cluster_with_3/cluster_0/{n}" for n in ["x.png", "y.jpg", "z.jpg"]}
    assert sorted(os.listdir(tmp_path)) == ["lib", "out"]  # no staging or old folders left
    assert all(p.read_bytes().startswith(b"photo") for p in photos.rglob("*.*"))


def test_refuses_a_folder_it_did_not_write(photos, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(NotOurTree, match="not written by imagecluster"):
        write_tree([[photos / "y.jpg", photos / "z.jpg"]], out)
    assert os.listdir(out) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["lib", "mine"]


def test_refuses_a_file(photos, tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(NotOurTree):
        write_tree([[photos / "y.jpg"]], out)
    assert out.read_text() == "x"


def test_empty_folder_is_accepted(photos, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    write_tree([[photos / "y.jpg", photos / "z.jpg"]], out)
    assert len(links(out)) == 2


def test_files_put_into_an_old_tree_are_kept(photos, tmp_path):
    out = tmp_path / "out"
    write_tree([[photos / "y.jpg", photos / "z.jpg"]], out)
    precious = out / "cluster_with_2" / "cluster_0" / "copied.jpg"
    precious.write_bytes(b"a real photo the user copied in")
    write_tree([[photos / "a/x.png", photos / "z.jpg"]], out)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.kept-")]
    assert len(kept) == 1
    assert (kept[0] / "cluster_with_2" / "cluster_0" / "copied.jpg").read_bytes() == b"a real photo the user copied in"
    assert set(links(out)) == {"cluster_with_2/cluster_0/x.png", "cluster_with_2/cluster_0/z.jpg"}


def test_check_tree_folder_inside_a_library_wants_a_new_empty_or_own_folder(photos, tmp_path):
    from imagecluster import InvalidParameter
    from imagecluster.tree import check_tree_folder

    assert check_tree_folder(photos / "clusters", libraries=[photos]) == photos / "clusters"  # new
    (photos / "empty").mkdir()
    assert check_tree_folder(photos / "empty", libraries=[photos]) == photos / "empty"
    write_tree([[photos / "y.jpg", photos / "z.jpg"]], photos / "groups")
    assert check_tree_folder(photos / "groups", libraries=[photos]) == photos / "groups"  # ours
    for folder in (photos / "a", photos, photos / "y.jpg"):  # photos, the library itself, a photo
        with pytest.raises(InvalidParameter, match="inside the library .* not written by imagecluster"):
            check_tree_folder(folder, libraries=[photos])
    os.symlink(photos / "a", tmp_path / "lib-a")  # reached through a symlink: still inside
    with pytest.raises(InvalidParameter, match="inside the library"):
        check_tree_folder(tmp_path / "lib-a", libraries=[tmp_path / "elsewhere", photos])
    # outside every library: the rule of write_tree
    (tmp_path / "albums").mkdir()
    (tmp_path / "albums" / "keep.txt").write_text("mine")
    with pytest.raises(NotOurTree):
        check_tree_folder(tmp_path / "albums", libraries=[photos])
    assert check_tree_folder("~/nowhere-new", libraries=[photos]) == Path(os.path.expanduser("~/nowhere-new"))
    with pytest.raises(InvalidParameter):
        check_tree_folder("", libraries=[photos])


def test_the_same_clusters_again_rewrite_nothing(tmp_path):
    photos = [tmp_path / f"p{k}.jpg" for k in range(4)]
    for p in photos:
        p.write_bytes(b"x")
    out = tmp_path / "tree"
    write_tree([photos[:2], photos[2:]], out, info={"sim": 0.7})
    first = (out.stat().st_ino, (out / ".imagecluster-tree").read_text())
    write_tree([photos[:2], photos[2:]], out, info={"sim": 0.7})  # a repeated Cluster call
    assert (out.stat().st_ino, (out / ".imagecluster-tree").read_text()) == first
    write_tree([photos[:3]], out, info={"sim": 0.7})  # other clusters: a new tree
    assert out.stat().st_ino != first[0]
    assert sorted(p.name for p in out.rglob("*.jpg")) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    write_tree([photos[:3]], out, info={"sim": 0.6})  # the same clusters made otherwise: the marker says so
    assert '"sim": 0.6' in (out / ".imagecluster-tree").read_text()
