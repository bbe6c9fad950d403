"""The gallery's Python side: merges that cut like ``cluster``, thumbnails, the folder, the page, the dendrogram."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import _gallery_lib as lib
import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from imagecluster import NotOurTree, Store, index_library
from imagecluster._edges import similarity_edges, unit_rows
from imagecluster._pipeline import LazyModel
from imagecluster.cluster import cluster_graph
from imagecluster.gallery import (
    GALLERY_MARKER,
    ThumbnailCache,
    cut_merges,
    library_merges,
    library_thumbnails,
    make_thumbnail,
    plot_dendrogram,
    write_gallery,
)
from imagecluster.gallery._dendrogram import SIM_LINE_RGB


def _bursty(n, dim, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 6, dim)).astype(np.float32)
    noise = rng.uniform(0.2, 1.3, (n, 1)).astype(np.float32)
    return centres[rng.integers(0, len(centres), n)] + noise * rng.standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("dense_budget", [1 << 30, 0], ids=["dense", "bounded"])
def test_replaying_the_merges_cuts_exactly_like_cluster_at_any_sim(dense_budget):
    unit = unit_rows(_bursty(400, 32, seed=3))
    edges = similarity_edges(unit, 0.5 - 1e-6)
    merges = library_merges(unit, edges, 0.5, dense_budget=dense_budget)
    assert len(merges) > 100
    assert np.all(np.diff(merges.sim) <= 0)  # most similar first, monotone
    heights = merges.sim[:: max(1, len(merges) // 15)].tolist()  # values equal to merge heights: the tie rule
    for sim in [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, *heights]:
        assert cut_merges(merges, len(unit), sim) == cluster_graph(unit, edges, sim, 2), sim


def test_thumbnails_are_small_upright_cached_and_pruned(tmp_path):
    names = lib.make_gallery_library(tmp_path / "photos", count=6, hostile=False)
    root = tmp_path / "photos"
    sideways = root / "2023/shot_01.jpg"  # stored 360 x 480 with orientation 6: upright it is 480 x 360
    with Image.open(sideways) as im:
        assert im.size == (360, 480)
    assert make_thumbnail(sideways, 256).size == (256, 192)
    cache = ThumbnailCache(tmp_path / "cache")
    stats = [(n, (root / n).stat().st_size, (root / n).stat().st_mtime_ns) for n in names]
    first = cache.ensure(root, stats, workers=2)
    assert cache.made == len(names) and all(t and max(t[1], t[2]) == 256 for t in first)
    assert cache.ensure(root, stats) == first and cache.made == 0  # the second time: all from the cache
    changed = [stats[0][:2] + (stats[0][2] + 1,)] + stats[1:]  # one photo touched: a new thumbnail
    cache.ensure(root, changed)
    assert cache.made == 1
    cache.prune([cache.name(*s) for s in changed[:3]])
    assert sorted(p.name for p in cache.folder.glob("*.jpg")) == sorted(cache.name(*s) for s in changed[:3])


def test_a_prune_leaves_a_fresh_thumbnail_no_gallery_listed_yet(tmp_path):
    """The daemon's worker writes a new photo's thumbnail before storing the photo: a gallery must not delete it."""
    names = lib.make_gallery_library(tmp_path / "photos", count=4, hostile=False)
    root = tmp_path / "photos"
    cache = ThumbnailCache(tmp_path / "cache")
    stats = [(n, (root / n).stat().st_size, (root / n).stat().st_mtime_ns) for n in names]
    cache.ensure(root, stats[:2], workers=1)  # listed: a kept photo's, and a photo deleted since
    kept, deleted = (cache.folder / cache.name(*s) for s in stats[:2])
    workers = cache.sink(root, stats[2:])  # unlisted: the worker's, for photos not (yet) in the store
    for rel, _, _ in stats[2:]:
        workers.add(root / rel, Image.new("RGB", (64, 48)))
    stale, fresh = (cache.folder / cache.name(*s) for s in stats[2:])
    os.utime(stale, (time.time() - 3600,) * 2)  # written an hour ago: its photo never got stored
    assert cache.prune([kept.name], written_before=time.time() - 60) == 2
    assert kept.exists() and fresh.exists() and not deleted.exists() and not stale.exists()
    assert cache.prune([kept.name]) == 1 and not fresh.exists()  # no cutoff: every unlisted file goes


class _MeanColour224:
    """A model without TensorFlow that wants 224 px, as ours do: a photo's mean colour."""

    name = "mean-colour"
    input_size = 224

    def fingerprint(self, batch):
        return batch.reshape(len(batch), -1, 3).mean(axis=1).astype(np.float32) + 1.0


def test_indexing_for_a_gallery_decodes_each_new_photo_once(tmp_path, monkeypatch):
    """The fingerprint's decode also makes the thumbnail: a first gallery opens each photo once, not twice."""
    root = tmp_path / "photos"
    names = lib.make_gallery_library(root, count=8, hostile=False)
    shutil.rmtree(Store(root).folder)  # photos nobody has fingerprinted yet
    decoded = []  # every JPEG decode sets its draft scale first (the capture reader reads headers only)
    real_draft = JpegImageFile.draft
    monkeypatch.setattr(JpegImageFile, "draft", lambda im, *a: decoded.append(im.filename) or real_draft(im, *a))
    store = Store(root)
    report = index_library(root, model=LazyModel(_MeanColour224()), store=store, thumbnails=library_thumbnails(store))
    assert report.added == len(names) and len(decoded) == len(names)
    gallery = write_gallery(root, tmp_path / "gallery", model="mean-colour", store=store)
    assert gallery.thumbnails_made == 0 and len(decoded) == len(names)  # no second decode
    thumbs = library_thumbnails(store)
    for name in names:  # as a thumbnail made on its own: 256 px, upright (shot_01 is stored sideways)
        with Image.open(thumbs.folder / thumbs.name(name, *_stat(root / name))) as im:
            assert im.size == make_thumbnail(root / name).size == (256, 192)


def _stat(path):
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def test_gallery_refuses_a_folder_it_did_not_write_and_touches_nothing(tmp_path):
    lib.make_gallery_library(tmp_path / "photos", count=4, hostile=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(NotOurTree):
        write_gallery(tmp_path / "photos", mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    out = write_gallery(tmp_path / "photos", tmp_path / "gallery").index.parent
    assert (out / GALLERY_MARKER).is_file()
    write_gallery(tmp_path / "photos", out)  # its own folder: rewritten


def _page_data(index):
    text = index.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', text, re.S).group(1)
    return text, json.loads(block)


def test_the_page_is_self_contained_and_names_cannot_end_its_data_block(tmp_path):
    names = lib.make_gallery_library(tmp_path / "photos", count=6)
    gallery = write_gallery(tmp_path / "photos", tmp_path / "gallery", sim=0.8)
    text, data = _page_data(gallery.index)
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # no CDN, nothing from the network
    assert text.count("</script>") == 2 and "<img" not in text.split("<body>")[1].split("<script")[0]
    assert len(data["names"]) == len(names) and data["sim"] == 0.8
    assert "odd/caf\\xe9 latin-1.jpg" in data["names"] and "odd/new\\nline.jpg" in data["names"]
    assert "file://" + str(tmp_path / "photos/odd/caf%E9%20latin-1.jpg") in data["urls"]
    thumbs = gallery.index.parent / ".thumbs"
    assert sorted(p.name for p in thumbs.iterdir()) == sorted(data["thumbs"])
    # A photo that goes loses its thumbnail here and in the cache.
    gone = tmp_path / "photos/2024/shot_00.jpg"
    gone.unlink()
    Store(tmp_path / "photos").remove(["2024/shot_00.jpg"])
    again = write_gallery(tmp_path / "photos", gallery.index.parent)
    _, after = _page_data(again.index)
    assert len(after["names"]) == len(names) - 1 and len(list(thumbs.iterdir())) == len(names) - 1
    cache = Store(tmp_path / "photos").folder / "thumbs-256"
    assert len(list(cache.glob("*.jpg"))) == len(names) - 1


def test_show_writes_the_gallery_of_the_clusters_cluster_writes(tmp_path):
    lib.make_gallery_library(tmp_path / "photos", count=12)
    run = subprocess.run(
        [sys.executable, "-m", "imagecluster", "show", str(tmp_path / "photos"), "--sim", "0.75", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    index = tmp_path / "photos/clusters-gallery/index.html"
    assert f"{index}" in run.stdout and index.is_file()
    assert "tensorflow" not in run.stderr.lower()
    bad = subprocess.run(
        [sys.executable, "-m", "imagecluster", "show", str(tmp_path / "photos"), "--sim", "0.3"],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "0.5" in bad.stderr and "Traceback" not in bad.stderr


def test_cluster_html_writes_the_gallery_beside_the_tree_from_one_decode(burst_library):
    """``cluster --html`` with the real model: the tree, its gallery, and thumbnails kept by the indexing."""
    run = subprocess.run([sys.executable, "-m", "imagecluster", "cluster", str(burst_library), "--html", "-q"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    index = burst_library / "clusters-gallery" / "index.html"
    assert f"gallery: {index}" in run.stdout and (burst_library / "clusters" / ".imagecluster-tree").is_file()
    _, data = _page_data(index)
    assert len(data["names"]) == 6 and all(data["thumbs"]) and min(data["tw"]) > 0
    assert {len(c) for c in _tree_clusters(burst_library / "clusters")} == {3}  # the dogs and the cats
    again = write_gallery(burst_library, index.parent)
    assert again.thumbnails_made == 0 and sorted(map(sorted, again.clusters)) == _tree_clusters(
        burst_library / "clusters")


def _tree_clusters(tree):
    """The clusters of a written tree: sorted lists of library-relative paths."""
    library = tree.parent
    return sorted(sorted(os.path.relpath(os.path.realpath(link), library) for link in folder.iterdir())
                  for folder in tree.glob("cluster_with_*/cluster_*"))


def _png_pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), im.size


def test_the_dendrogram_png_has_its_size_and_the_sim_line(tmp_path):
    rng = np.random.default_rng(1)
    fps = _bursty(40, 16, seed=1)
    names = [f"photo_{k:02d}.jpg" for k in range(len(fps))]
    drawn = plot_dendrogram(names, fps, tmp_path / "d.png", sim=0.7)
    pixels, size = _png_pixels(tmp_path / "d.png")
    assert drawn.level == "photos" and drawn.leaves == 40 and size == drawn.size
    assert (tmp_path / "d.png").stat().st_size > 10_000
    red = np.all(np.abs(pixels.astype(int) - SIM_LINE_RGB) < 40, axis=2)
    x0, x1 = drawn.x_range
    rows = red[drawn.sim_line_y - 2 : drawn.sim_line_y + 3, x0:x1].any(axis=0)
    assert rows.mean() > 0.5  # a dashed line across the plot at sim's height
    assert red[: drawn.sim_line_y - 10].sum() + red[drawn.sim_line_y + 10 :].sum() < 0.05 * red.sum() + 200
    many = plot_dendrogram([f"p{k}.jpg" for k in range(400)], rng.standard_normal((400, 16)), tmp_path / "m.png",
                           sim=0.5, max_leaves=300)
    assert many.level == "clusters" and many.leaves <= 300


def test_the_dendrogram_command_says_when_it_draws_clusters_instead(tmp_path):
    lib.make_gallery_library(tmp_path / "photos", count=8)
    env = dict(os.environ)
    run = subprocess.run(
        [sys.executable, "-m", "imagecluster", "dendrogram", str(tmp_path / "photos"), "--png", str(tmp_path / "d.png"),
         "--sim", "0.8", "-q"], capture_output=True, text=True, timeout=120, env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "dendrogram of 12 photos" in run.stdout and (tmp_path / "d.png").stat().st_size > 0


def test_a_small_dendrogram_shows_each_photo_under_its_leaf(tmp_path):
    root = tmp_path / "photos"
    lib.make_gallery_library(root, count=6, hostile=False)
    names, fps = Store(root).fingerprints("lite0")
    drawn = plot_dendrogram(names, fps, tmp_path / "t.png", sim=0.7, photos=[root / n for n in names])
    pixels, size = _png_pixels(tmp_path / "t.png")
    assert size == drawn.size and size[1] > 700
    band = pixels[drawn.size[1] - 240 - 95 : drawn.size[1] - 240, drawn.x_range[0] : drawn.x_range[1]]
    colourful = (band.max(axis=2).astype(int) - band.min(axis=2)) > 40  # photos, not black text on white
    assert colourful.mean() > 0.2
