"""RAW + JPEG from one shot are one photo: in clusters, in the tree, for the CLI and the daemon's config."""

from pathlib import Path

import pytest
from PIL import Image

from imagecluster import InvalidParameter, cluster_folder
from imagecluster._pairs import one_per_shot, similar_shots
from imagecluster.daemon._config import Config, ConfigError

from _dng import write_dng


def P(*names):
    return [Path("/lib") / n for n in names]


def test_one_entry_per_shot_and_the_jpeg_by_default():
    groups = [P("a/IMG_1.CR2", "a/IMG_1.JPG", "a/IMG_2.CR2", "a/IMG_2.jpg", "a/IMG_3.JPG"), P("b/x.nef", "b/x.jpg")]
    assert one_per_shot(groups) == [P("a/IMG_1.JPG", "a/IMG_2.jpg", "a/IMG_3.JPG")]  # b: one shot, no cluster
    assert one_per_shot(groups, link="raw") == [P("a/IMG_1.CR2", "a/IMG_2.CR2", "a/IMG_3.JPG")]
    assert one_per_shot(groups, min_size=1) == [P("a/IMG_1.JPG", "a/IMG_2.jpg", "a/IMG_3.JPG"), P("b/x.jpg")]


def test_only_a_raw_and_a_non_raw_of_one_name_in_one_folder_are_a_pair():
    not_pairs = [
        P("a/IMG_1.jpg", "a/IMG_1.png"),  # two photos that share a name
        P("a/IMG_1.CR2", "b/IMG_1.JPG"),  # other folder
        P("a/IMG_1.CR2", "a/IMG_10.JPG"),
        P("a/IMG_1.CR2", "a/IMG_1.dng"),  # two RAW files
    ]
    assert one_per_shot(not_pairs) == not_pairs
    # an iPhone's ProRAW DNG and its HEIC are a pair too
    assert one_per_shot([P("a/IMG_5.DNG", "a/IMG_5.HEIC", "a/IMG_6.HEIC")]) == [P("a/IMG_5.HEIC", "a/IMG_6.HEIC")]


def test_clusters_keep_their_order_by_size_after_pairs_are_merged():
    groups = [P("a.cr2", "a.jpg", "b.cr2", "b.jpg"), P("c.jpg", "d.jpg", "e.jpg")]
    assert [len(g) for g in one_per_shot(groups)] == [3, 2]


def test_similar_lists_shots_and_not_the_other_file_of_the_own_shot():
    matches = [("/l/a.CR2", 0.99), ("/l/b.jpg", 0.9), ("/l/b.cr2", 0.92), ("/l/c.jpg", 0.8), ("/l/c.png", 0.7)]
    assert similar_shots(matches, "/l/a.jpg") == [("/l/b.jpg", 0.92), ("/l/c.jpg", 0.8), ("/l/c.png", 0.7)]
    assert similar_shots(matches, "/l/a.jpg", link="raw")[0] == ("/l/b.cr2", 0.92)
    assert similar_shots(matches, "/l/a.dng")[0] == ("/l/a.CR2", 0.99)  # two RAW files are two shots
    assert similar_shots([("/m/a.CR2", 0.99)], "/l/a.jpg") == [("/m/a.CR2", 0.99)]  # other folder, other shot


@pytest.fixture
def raw_plus_jpeg_library(burst_library):
    """The burst shot as RAW + JPEG: every JPEG gets a DNG of the same name beside it; and one lone pair."""
    for jpeg in sorted(burst_library.rglob("*.jpg")):
        with Image.open(jpeg) as im:
            write_dng(jpeg.with_suffix(".DNG"), im, preview=jpeg.stem.endswith("1"))
    lone = Image.new("RGB", (320, 240), (20, 90, 200))
    lone.save(burst_library / "sky.jpg")
    write_dng(burst_library / "sky.dng", lone)
    return burst_library


@pytest.mark.parametrize(("link", "suffix"), [("jpeg", ".jpg"), ("raw", ".DNG")])
def test_a_library_shot_raw_plus_jpeg_clusters_by_shot(raw_plus_jpeg_library, link, suffix):
    lib = raw_plus_jpeg_library
    clusters = cluster_folder(lib, sim=0.7, pair_link=link)
    assert sorted(sorted(p.name for p in group) for group in clusters) == [
        [f"cat_{k}{suffix}" for k in (1, 2, 3)],
        [f"dog_{k}{suffix}" for k in (1, 2, 3)],
    ]  # the lone RAW + JPEG of the sky is one photo, not a cluster
    links = sorted(p.name for p in (lib / "clusters").rglob("*") if p.is_symlink())
    assert links == sorted(p.name for group in clusters for p in group)


def test_pair_link_is_checked(tmp_path):
    with pytest.raises(InvalidParameter, match="pair_link"):
        cluster_folder(tmp_path, pair_link="tiff")
    with pytest.raises(ConfigError, match="pair_link"):
        Config(libraries=("/tmp",), pair_link="tiff")
    assert Config(libraries=("/tmp",)).pair_link == "jpeg"
