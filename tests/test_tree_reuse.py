"""A tree rewrite carries unchanged folders over: the same tree as a fresh write, at the cost of what changed."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from imagecluster import write_tree
from imagecluster.images import TREE_MARKER
from imagecluster.tree import write_event_tree


def links(tree):
    """{relative link: target} of every symlink below ``tree``; plus every other file, as None."""
    found = {}
    for dirpath, _, files in os.walk(tree):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.dirname(path) == os.fspath(tree) and name.startswith(".imagecluster"):
                continue
            found[os.path.relpath(path, tree)] = os.readlink(path) if os.path.islink(path) else None
    return found


def folder_inodes(tree):
    return {os.path.relpath(d, tree): os.lstat(d).st_ino for d, _, _ in os.walk(tree) if d != os.fspath(tree)}


@pytest.fixture
def clusters(tmp_path):
    """Ten clusters of made-up photos (the tree never reads them), two of one name."""
    lib = tmp_path / "lib"
    groups = [[os.fspath(lib / f"{k:02d}" / f"IMG_{j}.jpg") for j in range(size)]
              for k, size in enumerate([4, 3, 3, 2, 2, 2, 1, 1, 1, 1])]
    groups[1].append(os.fspath(lib / "other" / "IMG_0.jpg"))  # shown as "IMG_0 (2).jpg"
    return sorted(groups, key=len, reverse=True)


def test_a_rewrite_moves_unchanged_folders_and_equals_a_fresh_write(clusters, tmp_path):
    out = tmp_path / "tree"
    write_tree(clusters, out, info={"sim": 0.7})
    before = folder_inodes(out)
    changed = [list(g) for g in clusters]
    changed[2].append(os.fspath(tmp_path / "new.jpg"))  # 3 -> 4 photos: cluster_with_4/cluster_2
    changed.insert(0, [os.fspath(tmp_path / "alone.jpg")])  # the first single: the others renumbered
    changed.sort(key=len, reverse=True)
    write_tree(changed, out, info={"sim": 0.7})

    fresh = tmp_path / "fresh"
    write_tree(changed, fresh, info={"sim": 0.7})
    assert links(out) == links(fresh)
    after = folder_inodes(out)
    # the unchanged leaf folders were moved (same inode), the singles to a new number
    assert {f for f, i in after.items() if i in before.values()} == {
        "cluster_with_4/cluster_0", "cluster_with_4/cluster_1", "cluster_with_2/cluster_0",
        "cluster_with_2/cluster_1", "cluster_with_2/cluster_2", "cluster_with_1/cluster_1",
        "cluster_with_1/cluster_2", "cluster_with_1/cluster_3", "cluster_with_1/cluster_4"}
    assert after["cluster_with_1/cluster_1"] == before["cluster_with_1/cluster_0"]
    assert sorted(os.listdir(tmp_path)) == ["fresh", "tree"]  # nothing left beside
    marker = json.loads((out / TREE_MARKER).read_text())
    assert marker["clusters"] == len(changed) and marker["digest"]


def test_folders_a_person_changed_are_written_afresh_and_their_files_kept(clusters, tmp_path):
    out = tmp_path / "tree"
    write_tree(clusters, out)
    mine = out / "cluster_with_4" / "cluster_0" / "my notes.txt"
    mine.write_text("mine")
    os.unlink(out / "cluster_with_3" / "cluster_0" / "IMG_0.jpg")  # a link taken out by hand
    before = folder_inodes(out)
    write_tree(clusters + [[os.fspath(tmp_path / "new.jpg")]], out)
    fresh = tmp_path / "fresh"
    write_tree(clusters + [[os.fspath(tmp_path / "new.jpg")]], fresh)
    assert links(out) == links(fresh)
    after = folder_inodes(out)
    assert after["cluster_with_4/cluster_0"] != before["cluster_with_4/cluster_0"]
    assert after["cluster_with_3/cluster_0"] != before["cluster_with_3/cluster_0"]
    assert after["cluster_with_2/cluster_0"] == before["cluster_with_2/cluster_0"]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("tree.kept-")]
    assert len(kept) == 1 and (kept[0] / "cluster_with_4" / "cluster_0" / "my notes.txt").read_text() == "mine"


def test_an_index_naming_folders_outside_the_tree_moves_nothing_of_theirs(clusters, tmp_path):
    out = tmp_path / "tree"
    write_tree(clusters, out)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "IMG_0.jpg").write_text("a file of the user")
    index = json.loads((out / ".imagecluster-folders").read_text())
    key = next(k for k, v in index["folders"].items() if v == "cluster_with_1/cluster_0")
    index["folders"][key] = "../outside"
    (out / ".imagecluster-folders").write_text(json.dumps(index))
    write_tree(clusters + [[os.fspath(tmp_path / "new.jpg")]], out)
    assert (outside / "IMG_0.jpg").read_text() == "a file of the user"


def test_a_folder_of_real_files_or_one_reached_through_a_link_is_never_moved(clusters, tmp_path):
    # Whatever the index says: a person's photos are never moved, even named as the links would be.
    out = tmp_path / "tree"
    write_tree(clusters, out)
    single = out / "cluster_with_1" / "cluster_0"
    (link,) = os.listdir(single)
    os.unlink(single / link)
    (single / link).write_bytes(b"a real photo in place of the link")
    mine = tmp_path / "mine"  # a folder of the user's, put in place of a size folder
    mine.mkdir()
    for name in os.listdir(out / "cluster_with_2" / "cluster_0"):
        (mine / name).write_bytes(b"a photo of mine")
    old_size_folder = tmp_path / "size-2-before"
    os.rename(out / "cluster_with_2", old_size_folder)
    os.symlink(mine, out / "cluster_with_2")
    (mine / "cluster_0").mkdir()
    for name in os.listdir(old_size_folder / "cluster_0"):
        os.symlink(os.readlink(old_size_folder / "cluster_0" / name), mine / "cluster_0" / name)
    write_tree(clusters + [[os.fspath(tmp_path / "new.jpg")]], out)
    assert sorted(os.listdir(mine / "cluster_0")) == sorted(os.listdir(old_size_folder / "cluster_0"))
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("tree.kept-")]
    assert len(kept) == 1 and (kept[0] / "cluster_with_1" / "cluster_0" / link).read_bytes().startswith(b"a real")
    fresh = tmp_path / "fresh"
    write_tree(clusters + [[os.fspath(tmp_path / "new.jpg")]], fresh)
    assert links(out) == links(fresh)


def test_a_tree_without_an_index_or_with_a_broken_one_is_rewritten_whole(clusters, tmp_path):
    out = tmp_path / "tree"
    fresh = tmp_path / "fresh"
    for index_text in (None, "{not json", json.dumps({"version": 99, "folders": {}})):
        write_tree(clusters, out)
        if index_text is None:
            os.unlink(out / ".imagecluster-folders")  # as trees written before the index
        else:
            (out / ".imagecluster-folders").write_text(index_text)
        before = folder_inodes(out)
        clusters = clusters + [[os.fspath(tmp_path / f"new{len(clusters)}.jpg")]]
        write_tree(clusters, out)
        write_tree(clusters, fresh)
        assert links(out) == links(fresh)
        assert not set(folder_inodes(out).values()) & set(before.values())
        assert sorted(os.listdir(tmp_path)) == ["fresh", "tree"]


def test_a_failed_rewrite_puts_the_moved_folders_back(clusters, tmp_path, monkeypatch):
    from imagecluster import _tree_fs, tree

    out = tmp_path / "tree"
    write_tree(clusters, out)
    old_links = links(out)

    def disk_full(staging, out):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tree, "swap_in", disk_full)
    with pytest.raises(OSError):
        write_tree(clusters + [[os.fspath(tmp_path / "new.jpg")]], out)
    monkeypatch.setattr(tree, "swap_in", _tree_fs.swap_in)
    assert links(out) == old_links  # every folder is back
    assert json.loads((out / TREE_MARKER).read_text())["digest"] is None  # no longer claimed complete
    assert sorted(os.listdir(tmp_path)) == ["tree"]
    write_tree(clusters, out)  # the same clusters as before: written again, not taken as done
    fresh = tmp_path / "fresh"
    write_tree(clusters, fresh)
    assert links(out) == links(fresh)


def test_an_old_tree_that_cannot_be_cleared_leaves_the_new_tree_whole(clusters, tmp_path, monkeypatch, caplog):
    from imagecluster import _tree_fs

    out = tmp_path / "tree"
    write_tree(clusters, out)
    grown = clusters + [[os.fspath(tmp_path / "new.jpg")]]

    def cannot(root):
        raise PermissionError(13, "Permission denied", os.fspath(root))

    monkeypatch.setattr(_tree_fs, "remove_tree", cannot)
    write_tree(grown, out)  # the swap happened: no error, nothing moved back
    monkeypatch.undo()
    fresh = tmp_path / "fresh"
    write_tree(grown, fresh)
    assert links(out) == links(fresh)
    assert "the old one could not be cleared" in caplog.text
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".tree.new-")]
    assert len(left) == 1 and json.loads((left[0] / TREE_MARKER).read_text())["digest"] is None


def test_a_writer_killed_while_carrying_over_leaves_a_tree_the_next_write_mends(clusters, tmp_path):
    """A real process dies (os._exit) after moving three folders; no clean-up of its own runs."""
    out = tmp_path / "tree"
    write_tree(clusters, out)
    grown = clusters + [[os.fspath(tmp_path / "new.jpg")]]
    script = textwrap.dedent(f"""
        import os, sys
        from imagecluster import _tree_reuse, write_tree
        real_move, moves = _tree_reuse.Carry.move, []
        def move(self, staging, relative):
            if len(moves) == 3:
                os._exit(9)
            moves.append(relative)
            return real_move(self, staging, relative)
        _tree_reuse.Carry.move = move
        write_tree({grown!r}, {os.fspath(out)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    gone = sum(map(len, clusters[:3]))  # the first three folders (largest first) went with the writer
    assert len(links(out)) == sum(map(len, clusters)) - gone
    staging = [p for p in tmp_path.iterdir() if p.name.startswith(".tree.new-")]
    assert len(staging) == 1

    write_tree(clusters, out)  # the old clusters again: not taken for the half-emptied tree
    fresh = tmp_path / "fresh"
    write_tree(clusters, fresh)
    assert links(out) == links(fresh)
    assert sorted(os.listdir(tmp_path)) == ["fresh", "tree"]  # the dead writer's staging is cleared


def test_a_staging_folder_of_a_running_writer_is_left_alone(clusters, tmp_path):
    out = tmp_path / "tree"
    other = tmp_path / ".tree.new-0000"
    other.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from imagecluster._tree_fs import write_marker

        write_marker(other, {"written_by": "imagecluster"})
        marker = json.loads((other / TREE_MARKER).read_text())
        marker["writer"][1] = sleeper.pid
        (other / TREE_MARKER).write_text(json.dumps(marker))
        os.symlink("/nowhere", other / "link")
        write_tree(clusters, out)
        assert os.path.islink(other / "link")
    finally:
        sleeper.kill()
        sleeper.wait()
    write_tree(clusters + [[os.fspath(tmp_path / "new.jpg")]], out)
    assert not other.exists()  # its writer is gone now


def test_an_events_tree_carries_its_unchanged_clusters(tmp_path):
    lib = tmp_path / "lib"
    photos = [os.fspath(lib / f"IMG_{k}.jpg") for k in range(8)]
    events = [("2024-05 Rome", photos[:5], [photos[:3], photos[3:5]]), ("2024-06 Home", photos[5:], [])]
    out = tmp_path / "events-tree"
    write_event_tree(events, out)
    before = folder_inodes(out)
    grown = [("2024-05 Rome", photos[:5], [photos[:3], photos[3:5]]),
             ("2024-06 Home", photos[5:] + [os.fspath(lib / "IMG_9.jpg")], [])]
    write_event_tree(grown, out)
    fresh = tmp_path / "fresh"
    write_event_tree(grown, fresh)
    assert links(out) == links(fresh)
    after = folder_inodes(out)
    assert after["events/2024-05 Rome/cluster_0"] == before["events/2024-05 Rome/cluster_0"]
    assert after["events/2024-06 Home"] != before["events/2024-06 Home"]
